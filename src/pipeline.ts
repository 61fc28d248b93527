// source -> decode -> batch -> apply -> checkpoint, in one loop.
// The loop reads only while no batch is being applied: the source's own bounded prefetch is the
// only buffer, so memory stays bounded under any backlog and a slow database pauses the source.
import { Batch, type BatchLimits } from "./batch.ts";
import { errorInfo, type Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import { type Applier, type ApplyResult, isConnectionError } from "./sink/apply.ts";

export interface Source {
  readonly kind: string;
  start(): Promise<void>;
  /** Adds what is available to the batch, waiting up to `waitMs` for the first record; returns records read. */
  read(batch: Batch, waitMs: number): Promise<number>;
  /** The batch's transaction committed: acknowledge upstream (commit offsets / confirm the LSN). */
  committed(result: ApplyResult): Promise<void>;
  /** Source connected: partitions assigned, or slots streaming. */
  ready(): boolean;
  close(): Promise<void>;
}

export interface PipelineDeps {
  source: Source;
  applier: Applier;
  limits: BatchLimits;
  retry: { initialMs: number; maxMs: number };
  metrics: Metrics;
  log: Logger;
  /** called on every loop turn: liveness */
  heartbeat?: () => void;
}

export class Stopped extends Error {
  override name = "Stopped";
}

export function createPipeline(deps: PipelineDeps) {
  const { source, applier, metrics, log } = deps;
  let stopping = false;
  let dbUp = true;
  let wake: (() => void) | undefined;
  let lastApplyError: string | undefined;

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        wake = undefined;
        resolve();
      }, ms);
      wake = () => {
        clearTimeout(t);
        wake = undefined;
        resolve();
      };
    });

  async function applyWithRetry(batch: Batch): Promise<ApplyResult> {
    let delay = deps.retry.initialMs;
    for (let attempt = 1; ; attempt++) {
      const t0 = performance.now();
      try {
        const r = await applier.apply(batch);
        metrics.applyDuration.observe({}, (performance.now() - t0) / 1000);
        if (!dbUp) log.info("analytics database reachable", attempt > 1 ? { attempts: attempt } : undefined);
        dbUp = true;
        lastApplyError = undefined;
        metrics.dbUp.set({}, 1);
        return r;
      } catch (e) {
        const info = errorInfo(e);
        const code = String(info.code ?? (e as Error).name ?? "UNKNOWN");
        metrics.errors.inc({ stage: "apply", code });
        if (isConnectionError(e)) {
          dbUp = false;
          metrics.dbUp.set({}, 0);
        }
        lastApplyError = String(info.error);
        if (stopping) throw new Stopped("shutdown while retrying a batch; it was not committed");
        metrics.retries.inc({ stage: "apply" });
        const wait = Math.round(delay / 2 + Math.random() * (delay / 2));
        log.error("applying batch failed; retrying", { ...info, attempt, retryInMs: wait, events: batch.events });
        await sleep(wait);
        if (stopping) throw new Stopped("shutdown while retrying a batch; it was not committed");
        delay = Math.min(delay * 2, deps.retry.maxMs);
      }
    }
  }

  /** Applies, records and acknowledges one batch; false when shutdown abandoned it uncommitted. */
  async function commit(batch: Batch): Promise<boolean> {
    let result: ApplyResult;
    try {
      result = await applyWithRetry(batch);
    } catch (e) {
      if (e instanceof Stopped) {
        log.warn(e.message, { events: batch.events });
        return false;
      }
      throw e;
    }
    const committedAt = Date.now();
    metrics.batches.inc();
    metrics.batchSize.observe({}, batch.events);
    metrics.lastCheckpoint.set({}, committedAt / 1000);
    for (const [t, n] of batch.ignoredTruncates) {
      metrics.truncatesIgnored.inc({ table: t.table.name }, n);
      log.warn("truncate event ignored (mapping truncate = \"ignore\")", { table: t.table.name, events: n });
    }
    for (const st of batch.tables.values())
      for (const c of st.pending.values()) if (c.sourceTs > 0) metrics.endToEndLag.observe({}, Math.max(0, committedAt - c.sourceTs) / 1000);
    try {
      await source.committed(result);
    } catch (e) {
      // the checkpoint table already holds the position; upstream acknowledgement is a mirror
      metrics.errors.inc({ stage: "checkpoint", code: String(errorInfo(e).code ?? "UNKNOWN") });
      log.warn("acknowledging upstream failed (position is safe in the checkpoint table)", errorInfo(e));
    }
    log.debug("batch committed", { events: batch.events, applied: result.applied, skipped: result.skipped, deadLetters: result.deadLetters });
    return true;
  }

  return {
    get lastError() {
      return lastApplyError;
    },

    /**
     * Runs until stop(); resolves after the last committed batch is acknowledged.
     * The next batch is read and decoded while the previous one commits (two batches at most);
     * a batch is applied only after its predecessor committed, so checkpoints never skip events.
     */
    async run(): Promise<void> {
      await source.start();
      let inflight: Promise<boolean> | undefined;
      while (!stopping) {
        const batch = new Batch(deps.limits);
        while (!stopping) {
          deps.heartbeat?.();
          // with events pending, only take what is already there: a dry queue flushes at once
          const n = await source.read(batch, batch.events ? 0 : inflight ? 5 : 500);
          // flush when the source has nothing more right now, or the batch is full or due
          if (batch.full(Date.now()) || (batch.events && n === 0)) break;
          if (inflight && !batch.events && n === 0) break;
        }
        if (inflight && !(await inflight)) break;
        inflight = undefined;
        if (batch.events) inflight = commit(batch);
      }
      if (inflight) await inflight;
      await source.close();
    },

    /** Stops reading; the batch in flight finishes (or, while retrying, is abandoned uncommitted). */
    stop(): void {
      stopping = true;
      wake?.();
    },
  };
}

export type Pipeline = ReturnType<typeof createPipeline>;
