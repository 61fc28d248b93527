// Connections verify and repair read through, the source's WAL position, how far the sink has
// applied a source, and the pace that bounds the load on each side.
import postgres, { type Sql } from "postgres";
import { type Config, connectionOptions, type PgSourceConfig } from "../config.ts";
import { Stopped } from "../errors.ts";
import { openAnalytics } from "../sink/database.ts";
import { quoteIdent } from "../sink/schema.ts";
import { SESSION_SETTINGS } from "./sql.ts";

/** A source connection for verify and repair: read-only, the canonical session settings, no slot. */
export function openVerifySource(c: PgSourceConfig, max = 2): Sql {
  const { url, options } = connectionOptions(c);
  const connection = { ...SESSION_SETTINGS, application_name: `cdc-sink-verify:${c.name}`, default_transaction_read_only: "on" };
  const o = { ...options, max, onnotice: () => {}, idle_timeout: 30, fetch_types: false, connection };
  return (url ? postgres(url, o as never) : postgres(o as never)) as Sql;
}

/** The analytics connection verify reads (and repair writes) through, with the canonical settings. */
export function openVerifyAnalytics(c: Config["postgres"], max = 3): Sql {
  return openAnalytics(c, max, { idle_timeout: 30, connection: { ...SESSION_SETTINGS, application_name: "cdc-sink-verify" } });
}

/**
 * The source's WAL position now: the insert position on a primary (every transaction that commits
 * later has a larger commit LSN), the replayed position on a standby.
 */
export async function walPosition(src: Sql): Promise<bigint> {
  const [r] = await src.unsafe(
    `SELECT ((CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_insert_lsn() END) - '0/0'::pg_lsn)::text AS lsn`,
  );
  return BigInt(r!.lsn as string);
}

export const formatLsn = (n: bigint) => `${(n >> 32n).toString(16).toUpperCase()}/${(n & 0xffffffffn).toString(16).toUpperCase()}`;

/** How far the sink has applied one PostgreSQL source. */
export interface SinkProgress {
  /** end LSN of the last transaction applied (the checkpoint row), -1 when none */
  checkpoint: bigint;
  /** the slot's confirmed flush LSN (confirmed only after the analytics commit), -1 when there is no slot */
  flushed: bigint;
  /** a walsender streams the slot */
  active: boolean;
  slotExists: boolean;
}

export async function sinkProgress(analytics: Sql, stateSchema: string, src: Sql, stream: string, part: string, slot: string): Promise<SinkProgress> {
  const [cp, sl] = await Promise.all([
    analytics.unsafe(`SELECT position::text AS p FROM ${quoteIdent(stateSchema)}.checkpoints WHERE stream = $1 AND part = $2`, [stream, part]).catch(() => []),
    src.unsafe(`SELECT active, (confirmed_flush_lsn - '0/0'::pg_lsn)::text AS f FROM pg_replication_slots WHERE slot_name = $1`, [slot]),
  ]);
  const c = cp[0] as { p: string } | undefined;
  const s = sl[0] as { active: boolean; f: string | null } | undefined;
  return { checkpoint: c ? BigInt(c.p) : -1n, flushed: s?.f ? BigInt(s.f) : -1n, active: s?.active ?? false, slotExists: s !== undefined };
}

/** Waits `ms`; an abort ends the wait with Stopped. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(new Stopped());
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(t);
      reject(new Stopped());
    };
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, Math.max(0, ms));
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * At most `rate` rows per second, on average since the start: each read is charged its rows after
 * it returned, and the next one waits until the average is back under the rate.
 */
export class Pace {
  #start = 0;
  #rows = 0;
  constructor(
    readonly rate: number,
    readonly signal?: AbortSignal,
    readonly now: () => number = () => performance.now(),
  ) {}

  /** Charges `rows`; resolves when the next read may start. */
  async take(rows: number): Promise<void> {
    if (!this.#start) this.#start = this.now();
    this.#rows += rows;
    const due = this.#start + (this.#rows / this.rate) * 1000;
    const wait = due - this.now();
    if (wait > 1) await sleep(wait, this.signal);
    else if (this.signal?.aborted) throw new Stopped();
  }

  /** Milliseconds the next read would wait after charging `rows` (for tests). */
  delayAfter(rows: number): number {
    const start = this.#start || this.now();
    return Math.max(0, start + ((this.#rows + rows) / this.rate) * 1000 - this.now());
  }
}
