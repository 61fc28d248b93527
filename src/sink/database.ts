// The analytics database: its connection pool, and its health. While it is down a prober tries a
// fresh connection every 250 ms, so a retry waiting out its backoff resumes as soon as the
// database answers again, and readiness names the cause (authentication, unreachable, …).
import postgres, { type Sql } from "postgres";
import { type Config, connectionOptions } from "../config.ts";
import { type Cause, causeOf, errorInfo, isConnectionError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";

/**
 * Seconds a pool connection waits before connecting again after it closed: postgres.js's default
 * grows to 20 s, so after an outage the pool lagged seconds behind the prober that saw the
 * database back.
 */
export const reconnectBackoff = (attempt: number) => Math.min(0.05 * 2 ** attempt, 0.5);

export function openAnalytics(c: Config["postgres"], max = 4, extra: Record<string, unknown> = {}): Sql {
  const { url, options } = connectionOptions(c);
  const opts = { ...options, max, onnotice: () => {}, idle_timeout: 60, max_lifetime: 60 * 30, backoff: reconnectBackoff, connection: { application_name: "cdc-sink" }, ...extra };
  return url ? postgres(url, opts) : postgres(opts);
}

const PROBE_MS = 250;
/**
 * When nothing succeeded on the pool for this long it is checked with SELECT 1, and a check not
 * answered within WATCH_TIMEOUT_MS marks the database down at once: a link that drops packets
 * (no error, no answer) shows in readiness within about 2 s.
 */
const WATCH_MS = 500;
const WATCH_TIMEOUT_MS = 1000;

export interface DatabaseHealth {
  /** The database failed with `e`: not ready, and probing until it answers. A statement's own error (a rejected row) counts only with `always`. */
  failed(e: unknown, always?: boolean): void;
  /** A statement succeeded. */
  ok(): void;
  /** Resolves when the database answers again (at once when it is up). */
  up(): Promise<void>;
  /** Why not ready, or undefined. */
  reason(): string | undefined;
  /** Checks the database with SELECT 1 on a connection of its own whenever nothing succeeded on `sql` for WATCH_MS. */
  watch(sql: Sql): void;
  close(): void;
}

export function createDatabaseHealth(c: Config["postgres"], metrics: Metrics, log: Logger): DatabaseHealth {
  let down: { error: unknown; cause: Cause } | undefined;
  let waiters: Array<() => void> = [];
  let probing: ReturnType<typeof setTimeout> | undefined;
  let watching: ReturnType<typeof setInterval> | undefined;
  let stopWatching: (() => void) | undefined;
  let lastOk = Date.now();
  let closed = false;

  function setUp(): void {
    lastOk = Date.now();
    if (down) {
      log.info("analytics database reachable again");
      metrics.dependencyDown.remove({ dependency: "analytics", cause: down.cause });
    }
    down = undefined;
    metrics.dbUp.set({}, 1);
    for (const w of waiters.splice(0)) w();
  }

  /** SELECT 1 on a fresh connection with a short timeout (the pool's may be stale): the error, or undefined. */
  async function tryOnce(): Promise<unknown> {
    const sql = openAnalytics(c, 1, { connect_timeout: Math.min(2, c.connect_timeout), idle_timeout: 1 });
    try {
      await sql`SELECT 1`;
      return undefined;
    } catch (e) {
      return e ?? new Error("failed");
    } finally {
      void sql.end({ timeout: 0 }).catch(() => {});
    }
  }

  async function probe(): Promise<void> {
    probing = undefined;
    if (!down || closed) return;
    const e = await tryOnce();
    if (e === undefined) setUp();
    else if (down && causeOf(e) !== down.cause) record(e);
    if (down && !closed) probing = setTimeout(() => void probe(), PROBE_MS);
  }

  function record(e: unknown): void {
    const cause = causeOf(e);
    if (down && down.cause !== cause) metrics.dependencyDown.remove({ dependency: "analytics", cause: down.cause });
    down = { error: e, cause };
    metrics.dbUp.set({}, 0);
    metrics.dependencyDown.set({ dependency: "analytics", cause }, 1);
  }

  const health: DatabaseHealth = {
    failed(e, always = false) {
      if (!always && !isConnectionError(e) && causeOf(e) === "error") return;
      const first = !down;
      record(e);
      if (first) log.error("analytics database not usable", { ...errorInfo(e), cause: causeOf(e) });
      probing ??= setTimeout(() => void probe(), PROBE_MS);
    },
    ok() {
      lastOk = Date.now();
      if (down || metrics.dbUp.value() !== 1) setUp();
    },
    up() {
      return down ? new Promise((r) => waiters.push(r)) : Promise.resolve();
    },
    reason() {
      return down ? `analytics database not usable (${down.cause}): ${errorInfo(down.error).error}` : undefined;
    },
    watch() {
      // a connection of its own: a pool busy with a long apply or a snapshot's loads is not an outage
      const own = openAnalytics(c, 1, { connect_timeout: Math.min(2, c.connect_timeout) });
      stopWatching = () => void own.end({ timeout: 0 }).catch(() => {});
      let checking = false;
      watching = setInterval(() => {
        if (down || checking || Date.now() - lastOk < WATCH_MS) return;
        checking = true;
        let timer: ReturnType<typeof setTimeout> | undefined;
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(Object.assign(new Error(`no answer to SELECT 1 within ${WATCH_TIMEOUT_MS / 1000} s`), { code: "ETIMEDOUT" })), WATCH_TIMEOUT_MS);
        });
        Promise.race([own`SELECT 1`, timeout])
          // no answer is the outage; an error is checked on a fresh connection, which tells the cause
          // (a refused connection, not a pool waiting)
          .then(() => health.ok(), async (e) => health.failed((e as { code?: string }).code === "ETIMEDOUT" ? e : ((await tryOnce()) ?? e)))
          .finally(() => {
            clearTimeout(timer);
            checking = false;
          });
      }, WATCH_MS / 4);
      watching.unref?.();
    },
    close() {
      closed = true;
      if (probing) clearTimeout(probing);
      if (watching) clearInterval(watching);
      stopWatching?.();
      for (const w of waiters.splice(0)) w();
    },
  };
  return health;
}
