// cdc_sink_dead_letters_pending{table}: counted in the dead-letter table by the daemon every 15 s,
// and on a scrape when the last count is more than a second old (the scrape reads the previous one).
import type { Sql } from "postgres";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import { errorInfo } from "../errors.ts";
import { DeadLetterStore } from "./store.ts";

const EVERY_MS = 15_000;

/** Counts now and every `everyMs`; returns a stop function. A table whose dead letters are gone reads 0. */
export function startPendingGauge(deps: { sql: Sql; stateSchema: string; metrics: Metrics; log: Logger; tables: string[]; everyMs?: number }): () => void {
  const store = new DeadLetterStore(deps.sql, deps.stateSchema);
  const known = new Set(deps.tables);
  for (const t of known) deps.metrics.deadLettersPending.init({ table: t });
  let running = false;
  const count = async () => {
    if (running) return;
    running = true;
    try {
      const n = await store.pendingByTable();
      for (const t of n.keys()) known.add(t);
      for (const t of known) deps.metrics.deadLettersPending.set({ table: t }, n.get(t) ?? 0);
    } catch (e) {
      deps.log.debug("counting pending dead letters failed", errorInfo(e));
    } finally {
      running = false;
    }
  };
  let last = 0;
  let stopped = false;
  const refresh = () => {
    if (stopped || Date.now() - last < 1000) return;
    last = Date.now();
    void count();
  };
  refresh();
  const timer = setInterval(refresh, deps.everyMs ?? EVERY_MS);
  timer.unref?.();
  deps.metrics.registry.onCollect(refresh);
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
