// Verify in the daemon: with [verify] interval set, every table is verified in the background,
// one table at a time, each side read at most rows_per_second; results go to metrics and logs.
// With repair = true the differences found are mended (repair.ts); otherwise only reported.
import { type Config, parseDuration } from "../config.ts";
import { errorCode, errorInfo, Stopped } from "../errors.ts";
import type { Logger } from "../log.ts";
import { Counter, Gauge, Histogram, type Registry } from "../metrics.ts";
import { repairTable } from "./repair.ts";
import { showKey } from "./report.ts";
import { sleep } from "./session.ts";
import { compareTable, Connections, runStatus, subjectsOrThrow, type TableReport, withTable } from "./verify.ts";

export interface VerifyMetrics {
  rowsDifferent: Gauge<"table">;
  lastRun: Gauge;
  rowsCompared: Counter<"table">;
  duration: Histogram;
  errors: Counter<"table">;
  rowsRepaired: Counter<"table">;
}

const registered = new WeakMap<Registry, VerifyMetrics>();

/** Registers the verify metrics in the daemon's registry (once per registry). */
export function registerVerifyMetrics(registry: Registry): VerifyMetrics {
  let m = registered.get(registry);
  if (m) return m;
  m = {
    rowsDifferent: registry.register(new Gauge("cdc_sink_verify_rows_different", "Keys found different (missing, extra or changed) in the last verify run, per table.", ["table"])),
    lastRun: registry.register(new Gauge("cdc_sink_verify_last_run_timestamp_seconds", "Unix time the last verify run finished.")),
    rowsCompared: registry.register(new Counter("cdc_sink_verify_rows_compared_total", "Source rows compared by verify, per table.", ["table"])),
    duration: registry.register(new Histogram("cdc_sink_verify_duration_seconds", "Time one verify run took (every table).", [1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200])),
    errors: registry.register(new Counter("cdc_sink_verify_errors_total", "Tables verify could not compare or confirm, per table.", ["table"])),
    rowsRepaired: registry.register(new Counter("cdc_sink_verify_rows_repaired_total", "Rows mended by repair (verify repair = true), per table.", ["table"])),
  };
  m.lastRun.init();
  m.duration.init();
  registered.set(registry, m);
  return m;
}

export interface VerifyLoopDeps {
  /** the daemon's metrics (its registry gets the verify metrics) */
  metrics: { registry: Registry };
  log: Logger;
  /** aborted when the daemon stops: the run in progress ends at its next read */
  signal: AbortSignal;
  /** first run this long after start (default: the interval, at most one minute) */
  firstDelayMs?: number;
}

/** One background run over every table: metrics and logs per table; returns the run's status. */
export async function verifyOnce(config: Config, deps: VerifyLoopDeps): Promise<0 | 1 | 2> {
  const m = registerVerifyMetrics(deps.metrics.registry);
  const log = deps.log.child({ component: "verify" });
  const t0 = performance.now();
  const conns = new Connections(config);
  const reports: TableReport[] = [];
  const opts = { signal: deps.signal, log };
  try {
    for (const subject of subjectsOrThrow(config)) {
      if (subject.skip) continue;
      let repaired = 0;
      const report = await withTable(conns, subject, opts, async (session) => {
        if (!config.verify.repair) return compareTable(session, config, opts);
        const r = await repairTable(session, config, opts);
        repaired = r.mended.applied;
        if (r.mended.actions.length)
          log.info("verify repaired rows", { table: subject.table, applied: r.mended.applied, kept: r.mended.kept, keys: r.mended.actions.slice(0, 20).map((a) => `${a.action} ${showKey(a.key)}`) });
        return r.found;
      });
      reports.push(report);
      record(m, report, repaired, log);
    }
  } finally {
    await conns.close();
  }
  const secs = (performance.now() - t0) / 1000;
  m.duration.observe({}, secs);
  m.lastRun.set({}, Math.round(Date.now() / 1000));
  const status = runStatus(reports);
  log.info("verify run done", { tables: reports.length, status, seconds: Math.round(secs * 10) / 10 });
  return status;
}

function record(m: VerifyMetrics, r: TableReport, repaired: number, log: Logger): void {
  const different = r.missing.length + r.extra.length + r.different.length;
  m.rowsCompared.inc({ table: r.table }, r.sourceRows);
  if (r.status === "error" || r.status === "unconfirmed") m.errors.inc({ table: r.table });
  if (r.status !== "error") m.rowsDifferent.set({ table: r.table }, different);
  if (repaired) m.rowsRepaired.inc({ table: r.table }, repaired);
  const ctx = {
    table: r.table,
    status: r.status,
    chunks: r.chunks,
    sourceRows: r.sourceRows,
    analyticsRows: r.analyticsRows,
    missing: r.missing.slice(0, 20).map((d) => showKey(d.key)),
    extra: r.extra.slice(0, 20).map((d) => showKey(d.key)),
    different: r.different.slice(0, 20).map((d) => `${showKey(d.key)}: ${d.columns?.join(", ")}`),
    counts: { missing: r.missing.length, extra: r.extra.length, different: r.different.length, unconfirmed: r.unconfirmed.length },
    reason: r.reason,
    ms: r.elapsedMs,
  };
  if (r.status === "equal") log.info("verify: table equal to its source", ctx);
  else log.warn(r.status === "different" ? "verify: table differs from its source" : "verify: table could not be compared", ctx);
}

/**
 * Runs verify every `[verify] interval` until `signal` aborts (resolves then). Does nothing when no
 * interval is set. A run never overlaps the next: the interval counts from a run's end.
 */
export async function startVerifyLoop(config: Config, deps: VerifyLoopDeps): Promise<void> {
  const interval = config.verify.interval ? parseDuration(config.verify.interval) : undefined;
  if (!interval) return;
  const m = registerVerifyMetrics(deps.metrics.registry);
  let wait = deps.firstDelayMs ?? Math.min(interval, 60_000);
  for (;;) {
    try {
      await sleep(wait, deps.signal);
      await verifyOnce(config, deps);
    } catch (e) {
      if (e instanceof Stopped || deps.signal.aborted) return;
      m.errors.inc({ table: "" });
      deps.log.error("verify run failed", { ...errorInfo(e), code: errorCode(e) });
    }
    wait = interval;
  }
}
