import { expect, test } from "bun:test";
import { createHttpApp } from "./http.ts";
import { createMetrics } from "./metrics.ts";

test("/metrics serves the Prometheus text format with every known series present from start", async () => {
  const m = createMetrics();
  m.rowsApplied.inc({ table: "fact_orders", op: "upsert" }, 3);
  m.applyDuration.observe({}, 0.02);
  const app = createHttpApp({ metrics: () => m.registry.render(), liveness: () => null, readiness: () => [] });
  const r = await app.request("/metrics");
  expect(r.status).toBe(200);
  expect(r.headers.get("content-type")).toStartWith("text/plain; version=0.0.4");
  const body = await r.text();
  expect(body).toContain('cdc_sink_rows_applied_total{table="fact_orders",op="upsert"} 3');
  expect(body).toContain("# TYPE cdc_sink_apply_duration_seconds histogram");
  expect(body).toContain('cdc_sink_apply_duration_seconds_bucket{le="0.02"} 1');
  expect(body).toContain('cdc_sink_apply_duration_seconds_bucket{le="+Inf"} 1');
  for (const series of ["cdc_sink_batches_total 0", "cdc_sink_database_up 0", "cdc_sink_source_connected 0", 'cdc_sink_retries_total{stage="apply"} 0', "cdc_sink_end_to_end_lag_seconds_count 0", "process_resident_memory_bytes", "process_cpu_seconds_total"])
    expect(body).toContain(series);
  for (const line of body.split("\n").filter((l) => l && !l.startsWith("#"))) expect(line).toMatch(/^(cdc_sink_|process_)[a-z_]+(\{.*\})? [-+0-9.eInf]+$/);
});

test("/healthz reflects liveness only; /readyz lists why the instance is not ready", async () => {
  let live: string | null = null;
  let reasons: string[] = ["no partitions assigned", "analytics database not reachable"];
  const app = createHttpApp({ metrics: () => "", liveness: () => live, readiness: () => reasons });
  expect((await app.request("/healthz")).status).toBe(200);
  const notReady = await app.request("/readyz");
  expect(notReady.status).toBe(503);
  expect(await notReady.json()).toEqual({ status: "not ready", reasons });
  reasons = [];
  expect((await app.request("/readyz")).status).toBe(200);
  live = "processing loop stalled for 130 s";
  const dead = await app.request("/healthz");
  expect(dead.status).toBe(503);
  expect(await dead.json()).toEqual({ status: "fail", reason: live });
  expect((await app.request("/nope")).status).toBe(404);
});
