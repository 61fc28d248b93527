// The replication connection of one source: START_REPLICATION, CopyData framing, standby status
// updates, flow control (the COPY stream pauses while the reader's queue is full: TCP backpressure
// holds the rest on the server) and reconnects with backoff from the last acknowledged position.
import type { Sql } from "postgres";
import { Backoff, sleep, type RetryPolicy } from "../../backoff.ts";
import type { PgSourceConfig } from "../../config.ts";
import { type CopyData, formatLsn, parseCopyData, standbyStatus } from "../../decode/pgoutput.ts";
import { errorCode, errorInfo } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import type { Metrics } from "../../metrics.ts";
import { quoteIdent } from "../../sink/schema.ts";
import { openSource, publicationName, slotName } from "./setup.ts";

type CopyStream = NodeJS.ReadableStream & NodeJS.WritableStream & { pause(): void; resume(): void };

export interface StreamDeps {
  cfg: PgSourceConfig;
  retry: RetryPolicy;
  metrics: Metrics;
  log: Logger;
  onData(d: CopyData): void;
  /** (re)started at `from`: what was queued from the previous connection is sent again */
  onStart(from: bigint): void;
  /** the position to confirm to the server now, and where a reconnect resumes */
  flushPosition(): bigint;
  /** a keepalive or the heartbeat: the server's WAL end may have moved while nothing was sent */
  onIdle?(): void;
  /** the slot cannot be streamed any more (invalidated): reconnecting stops */
  onFatal?(e: unknown): void;
}

/** START_REPLICATION on a slot the server invalidated (PostgreSQL 13-14: "can no longer get changes from replication slot", 15+: "cannot read from logical replication slot"). */
export const isSlotInvalidated = (e: unknown) => errorCode(e) === "55000" && /can no longer get changes|cannot read from logical replication slot|invalidated/i.test(errorInfo(e).error);

export function createReplicationStream(deps: StreamDeps) {
  const { cfg, metrics, log } = deps;
  const slot = slotName(cfg);
  let repl: Sql | undefined;
  let copy: CopyStream | undefined;
  let paused = false;
  let closed = false;
  let walEnd = 0n;
  // a status update every 10 s even while the stream is paused (a snapshot copying, a full queue):
  // the server ends a walsender that hears nothing for wal_sender_timeout
  const heartbeat = setInterval(() => {
    sendStatus();
    deps.onIdle?.();
  }, 10_000);
  heartbeat.unref?.();

  let lastSent = -1n;
  function sendStatus(): void {
    if (!copy) return;
    lastSent = deps.flushPosition();
    copy.write(standbyStatus(lastSent));
  }

  async function begin(conn: Sql, from: bigint): Promise<void> {
    const stream = (await conn
      .unsafe(`START_REPLICATION SLOT ${quoteIdent(slot)} LOGICAL ${formatLsn(from)} (proto_version '1', publication_names '${publicationName(cfg).replace(/'/g, "")}')`)
      .writable()) as unknown as CopyStream;
    copy = stream;
    paused = false;
    deps.onStart(from);
    metrics.up.set({}, 1);
    log.info("streaming", { slot, from: formatLsn(from) });
    stream.on("data", (d: Buffer) => {
      const m = parseCopyData(d);
      if (m.kind === "other") return;
      if (m.walEnd > walEnd) walEnd = m.walEnd;
      if (m.kind === "keepalive") {
        // a reply when asked, and whenever the position to confirm moved; an idle source checkpoints
        // the server's WAL end first (onIdle), then confirms it
        if (m.replyRequested || deps.flushPosition() !== lastSent) sendStatus();
        deps.onIdle?.();
      } else deps.onData(m);
    });
    stream.on("error", (e: Error) => log.warn("replication stream error", errorInfo(e)));
    stream.on("close", () => {
      if (copy !== stream) return;
      copy = undefined;
      if (closed) return;
      metrics.errors.inc({ stage: "source", code: "REPLICATION_CLOSED" });
      log.error("replication connection lost; reconnecting");
      void reconnect();
    });
  }

  async function reconnect(): Promise<void> {
    const backoff = new Backoff(deps.retry);
    for (let attempt = 1; !closed; attempt++) {
      await sleep(backoff.next());
      if (closed) return;
      metrics.retries.inc({ stage: "source" });
      try {
        await repl?.end({ timeout: 1 }).catch(() => {});
        repl = openSource(cfg, { replication: true });
        await begin(repl, deps.flushPosition());
        return;
      } catch (e) {
        if (isSlotInvalidated(e)) {
          deps.onFatal?.(e);
          return;
        }
        metrics.errors.inc({ stage: "source", code: errorCode(e) });
        log.error("reconnecting replication failed; retrying", { attempt, ...errorInfo(e) });
      }
    }
  }

  return {
    /** Streams from `from` on `conn`, the replication connection the slot was prepared on. */
    start(conn: Sql, from: bigint): Promise<void> {
      repl = conn;
      return begin(conn, from);
    },
    get streaming(): boolean {
      return copy !== undefined;
    },
    /** The newest end of WAL the server reported. */
    get walEnd(): bigint {
      return walEnd;
    },
    pause(): void {
      if (!paused && copy) {
        paused = true;
        copy.pause();
      }
    },
    resume(): void {
      if (paused && copy) {
        paused = false;
        copy.resume();
      }
    },
    sendStatus,
    async close(): Promise<void> {
      closed = true;
      clearInterval(heartbeat);
      sendStatus();
      copy?.end();
      await repl?.end({ timeout: 2 }).catch(() => {});
    },
  };
}

export type ReplicationStream = ReturnType<typeof createReplicationStream>;
