// source -> decode -> batch -> apply -> checkpoint, in one loop. The interfaces every stage meets
// are here; src/daemon.ts picks their implementations.
//
// The loop reads only while at most one batch is being applied: the source's own bounded prefetch
// is the only other buffer, so memory stays bounded under any backlog and a slow database pauses
// the source. The next batch is read and decoded while the previous one commits; a batch is
// applied only after its predecessor committed, so checkpoints never skip a record.
import { retry, type RetryPolicy } from "./backoff.ts";
import { ChangeBatch, type BatchLimits } from "./batch.ts";
import { errorCode, errorInfo, Stopped } from "./errors.ts";
import { failpoint } from "./failpoints.ts";
import type { Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import type { Position, SchemaChange, Target } from "./model.ts";
import type { DatabaseHealth } from "./sink/database.ts";
import { CheckpointLost, Fenced } from "./sink/fence.ts";

/** What a source hands to its decoder. */
export interface RecordSet {
  readonly count: number;
  /** bytes of record i, where records can be large (Kafka): a batch then stops at max_bytes */
  size?(i: number): number;
}

export interface SourceStatus {
  ready: boolean;
  /** why not ready: named for an operator */
  reason?: string;
  /** an unrecoverable client error: liveness fails */
  fatal?: string;
}

/** Where records come from: Kafka topics, or PostgreSQL slots. */
export interface Source<R extends RecordSet> {
  readonly kind: "kafka" | "postgres";
  /** Connects (retrying while `signal` is not aborted); throws what retrying cannot fix. */
  start(signal: AbortSignal): Promise<void>;
  /** Up to `max` records (and about `maxBytes`, where records can be large); waits up to `waitMs` for the first. */
  read(max: number, waitMs: number, maxBytes?: number): Promise<R>;
  /** Fills in the SQL types of columns a decoder found at the source. */
  describe?(change: SchemaChange): Promise<SchemaChange>;
  /** Batches were dropped uncommitted (fenced, or the database lost commits): read again from the checkpoints the database holds. */
  resync?(): Promise<void>;
  /** The analytics transaction holding these positions committed: acknowledge upstream (offsets, flush LSN). */
  acknowledge(parts: CommittedPart[]): Promise<void>;
  status(): SourceStatus;
  close(): Promise<void>;
}

/** A decoder stopped before record `at` because the analytics table must change first. */
export interface DecodeStop {
  at: number;
  request: SchemaChange;
}

/** Turns a source's records into changes in the batch; dead-letters what cannot be decoded. */
export interface Decoder<R extends RecordSet> {
  /** Decodes records [from, to); stops early only to ask for a schema change. */
  decode(records: R, batch: ChangeBatch, from: number, to: number): DecodeStop | undefined;
  /** The target of a mapping changed (columns added): use it for what follows. */
  retarget(t: Target): void;
}

export interface CommittedPart {
  stream: string;
  part: string;
  next: Position;
}

export interface ApplyResult {
  applied: number;
  skipped: number;
  deadLetters: number;
  /** checkpoint positions committed with the batch */
  parts: CommittedPart[];
}

/** Where changes go: one analytics transaction per batch, checkpoint included. */
export interface Sink {
  apply(batch: ChangeBatch): Promise<ApplyResult>;
  /** Adds columns to an analytics table; returns the target resolved again. */
  evolve(change: SchemaChange): Promise<Target>;
}

/** The positions committed with the rows: where each source part resumes. */
export interface CheckpointStore {
  /** part -> next position, for one stream */
  load(stream: string): Promise<Map<string, Position>>;
  /** Takes parts over: a new owner generation for each; part -> its position (if any) and generation. */
  claim(stream: string, parts: string[]): Promise<Map<string, { position: Position | undefined; generation: bigint }>>;
}

export interface PipelineDeps<R extends RecordSet> {
  source: Source<R>;
  decoder: Decoder<R>;
  sink: Sink;
  /** the analytics database's health: failures mark it down, a retry resumes as soon as it is back */
  database: DatabaseHealth;
  limits: BatchLimits;
  retry: RetryPolicy;
  metrics: Metrics;
  log: Logger;
  /** called on every loop turn: liveness */
  heartbeat?: () => void;
}

/** Records decoded between two turns of the event loop. */
const DECODE_SLICE = 500;
// a record this large is copied several times on its way (text, parameters, buffers)
const LARGE_RECORD_BYTES = 1 << 20;

function collectGarbage(): void {
  const g = globalThis as { Bun?: { gc(force: boolean): void }; gc?: () => void };
  if (g.Bun) g.Bun.gc(true);
  else g.gc?.();
}

export function createPipeline<R extends RecordSet>(deps: PipelineDeps<R>) {
  const { source, decoder, sink, metrics, log, database } = deps;
  const stop = new AbortController();

  /** Runs a database step until it succeeds; a failure marks the database down until it answers again. */
  function untilDone<T>(what: string, fn: () => Promise<T>, ctx: Record<string, unknown> = {}): Promise<T> {
    return retry(
      async () => {
        const r = await fn();
        database.ok();
        return r;
      },
      {
        policy: deps.retry,
        signal: stop.signal,
        wake: () => database.up(),
        onError(e, attempt, waitMs) {
          metrics.errors.inc({ stage: "apply", code: errorCode(e) });
          if (e instanceof Fenced || e instanceof CheckpointLost) throw e;
          database.failed(e);
          if (stop.signal.aborted) throw new Stopped(`shutdown while retrying (${what}); nothing was committed`);
          metrics.retries.inc({ stage: "apply" });
          log.error(`${what} failed; retrying`, { ...errorInfo(e), attempt, retryInMs: waitMs, ...ctx });
        },
      },
    );
  }

  /** Decodes records into the batch, changing analytics tables first where a decoder asks. */
  // Decoding runs in slices with a turn of the event loop between them: the batch being committed
  // meanwhile gets its statement results and its COMMIT sent without waiting for a whole read.
  // A batch ends at max_bytes even within a read (a few huge records must not make one huge
  // batch): decoding returns where it stopped, and the rest starts the next batch.
  async function decode(records: R, batch: ChangeBatch, start: number): Promise<number> {
    const maxBytes = deps.limits.maxBytes;
    for (let from = start; from < records.count; ) {
      if (batch.events && batch.bytes + (records.size?.(from) ?? 0) > maxBytes) return from;
      let to = Math.min(records.count, from + DECODE_SLICE);
      if (records.size) {
        let bytes = batch.bytes + records.size(from);
        let i = from + 1;
        for (; i < to && bytes + records.size(i) <= maxBytes; i++) bytes += records.size(i);
        to = i;
      }
      const stop = decoder.decode(records, batch, from, to);
      if (stop) {
        const request = stop.request;
        const change = source.describe ? await source.describe(request) : request;
        decoder.retarget(await untilDone("changing an analytics table", () => sink.evolve(change), { table: request.target.table.name }));
        from = stop.at;
        continue;
      }
      from = to;
      if (from < records.count) await new Promise((r) => setImmediate(r));
    }
    return records.count;
  }

  /**
   * Applies, records and acknowledges one batch: "stopped" when shutdown abandoned it uncommitted,
   * "resync" when it was dropped uncommitted and the source must read again from the checkpoints.
   */
  async function commit(batch: ChangeBatch): Promise<"committed" | "stopped" | "resync"> {
    const t0 = performance.now();
    // and before it is applied: what decoding it left behind (the record's text) is freed first
    if (batch.largest >= LARGE_RECORD_BYTES) collectGarbage();
    let result: ApplyResult;
    try {
      result = await untilDone("applying a batch", () => sink.apply(batch), { events: batch.events });
    } catch (e) {
      if (e instanceof Stopped) {
        log.warn(e.message, { events: batch.events });
        return "stopped";
      }
      if (e instanceof Fenced && source.resync) {
        // another instance owns these parts now: nothing of this batch may be committed by this one
        log.warn(e.message, { events: batch.events });
        return "resync";
      }
      if (e instanceof CheckpointLost && source.resync) {
        log.error(`${e.message}: reading again from the checkpoints it holds`, { code: e.code, events: batch.events });
        return "resync";
      }
      throw e;
    }
    const committedAt = Date.now();
    metrics.applyDuration.observe({}, (performance.now() - t0) / 1000);
    metrics.batches.inc();
    metrics.batchSize.observe({}, batch.events);
    metrics.lastCheckpoint.set({}, committedAt / 1000);
    for (const [table, n] of batch.ignoredTruncates) {
      metrics.truncatesIgnored.inc({ table }, n);
      log.warn('truncate event ignored (mapping truncate = "ignore")', { table, events: n });
    }
    for (const table of batch.tables.values())
      for (const c of table.pending.values()) if (c.sourceTs > 0) metrics.endToEndLag.observe({}, Math.max(0, committedAt - c.sourceTs) / 1000);
    failpoint("after-commit");
    try {
      await source.acknowledge(result.parts);
    } catch (e) {
      // the checkpoint table already holds the position; upstream acknowledgement is a mirror
      metrics.errors.inc({ stage: "checkpoint", code: errorCode(e) });
      log.warn("acknowledging upstream failed (the position is safe in the checkpoint table)", errorInfo(e));
    }
    log.debug("batch committed", { events: batch.events, applied: result.applied, skipped: result.skipped, deadLetters: result.deadLetters });
    // a large record leaves copies of it to the collector, which may take its time: collect now,
    // so that RSS holds one such batch at a time, not several
    if (batch.largest >= LARGE_RECORD_BYTES) collectGarbage();
    return "committed";
  }

  return {
    /** Runs until stop(); resolves after the last committed batch is acknowledged and the source closed. */
    async run(): Promise<void> {
      await source.start(stop.signal);
      let inflight: Promise<"committed" | "stopped" | "resync"> | undefined;
      // records read but left for the next batch (it reached max_bytes)
      let carry: { records: R; from: number } | undefined;
      /**
       * Waits for the batch in flight. When it was dropped, what was read meanwhile must be dropped
       * too ("dropped"): the source goes back to the checkpoints here, while no read runs, so
       * everything read after the seek comes from the checkpoints on.
       */
      const settle = async (): Promise<"committed" | "stopped" | "dropped"> => {
        const outcome = await inflight!;
        inflight = undefined;
        if (outcome !== "resync") return outcome;
        carry = undefined;
        await source.resync?.();
        return "dropped";
      };
      try {
        let inflightLargest = 0;
        while (!stop.signal.aborted) {
          // after a batch with a large record, the next is read only once that one committed and was
          // collected: memory holds one such batch, not two
          if (inflight && inflightLargest >= LARGE_RECORD_BYTES && (await settle()) === "stopped") break;
          const batch = new ChangeBatch(deps.limits);
          while (!stop.signal.aborted) {
            deps.heartbeat?.();
            // with events pending, take only what is there already: a dry source flushes at once
            const input = carry ?? { records: await source.read(Math.max(1, deps.limits.maxEvents - batch.events), batch.events ? 0 : inflight ? 5 : 500, deps.limits.maxBytes - batch.bytes), from: 0 };
            carry = undefined;
            const end = await decode(input.records, batch, input.from);
            if (end < input.records.count) {
              carry = { records: input.records, from: end };
              break;
            }
            const n = end - input.from;
            if (batch.full(Date.now()) || (batch.events && n === 0)) break;
            if (inflight && !batch.events && n === 0) break;
          }
          if (inflight) {
            const outcome = await settle();
            if (outcome === "stopped") break;
            if (outcome === "dropped") continue;
          }
          if (batch.events) {
            inflight = commit(batch);
            // its failure is thrown where it is awaited, maybe after the next read: not unhandled meanwhile
            inflight.catch(() => {});
            inflightLargest = batch.largest;
          }
        }
        if (inflight) await inflight;
      } finally {
        await source.close();
      }
    },

    /** Stops reading; the batch in flight finishes (or, while retrying, is abandoned uncommitted). */
    stop(): void {
      stop.abort();
      setImmediate(() => failpoint("during-drain"));
    },
  };
}

export type Pipeline = ReturnType<typeof createPipeline>;
