// The operator scripts: the one-command demo, and verify-cdc against a pipeline that is not running.
import { expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import postgres from "postgres";
import { analyticsDb, ROOT } from "./support/harness.ts";
import { sharedCluster } from "./support/pg.ts";

test("scripts/demo.sh --once replicates, verifies and stops everything it started", async () => {
  const p = Bun.spawn(["bash", `${ROOT}scripts/demo.sh`, "--once"], { stdout: "pipe", stderr: "pipe" });
  const [code, out] = await Promise.all([p.exited, new Response(p.stdout).text()]);
  if (code !== 0) console.error(out, await new Response(p.stderr).text());
  expect(code).toBe(0);
  expect(out).toContain("verify-cdc: every change reached analytics");
  expect(out.match(/^ok {4}/gm)?.length).toBe(6);
  expect(out).toMatch(/Dune\s+\|\s+\d+ \|/);
  expect(readFileSync(`${ROOT}.demo/cdc-sink.log`, "utf8")).toContain('"msg":"stopped cleanly"');
  // PostgreSQL removes its pid file when it has stopped
  expect(existsSync(`${ROOT}.demo/data/postmaster.pid`)).toBe(false);
  expect(existsSync(`${ROOT}.demo/data/PG_VERSION`)).toBe(true);
}, 300_000);

test("verify-cdc fails, names the step and cleans up when changes do not arrive", async () => {
  const pg = await sharedCluster();
  const ecomUrl = await pg.createDatabase("vecom");
  const invUrl = await pg.createDatabase("vinv");
  const analyticsUrl = await pg.createDatabase("vanalytics");
  const ecom = postgres(ecomUrl, { max: 1, onnotice: () => {} });
  const inv = postgres(invUrl, { max: 1, onnotice: () => {} });
  await ecom.unsafe(readFileSync(`${ROOT}sql/ecom-ddl.sql`, "utf8"));
  await inv.unsafe(readFileSync(`${ROOT}sql/inventory-ddl.sql`, "utf8"));
  await (await analyticsDb(analyticsUrl)).end();
  const p = Bun.spawn(["bash", `${ROOT}scripts/verify-cdc.sh`, "--timeout", "1"], {
    stdout: "pipe",
    env: { ...process.env, ECOM_DB_URL: ecomUrl, INVENTORY_DB_URL: invUrl, ANALYTICS_DB_URL: analyticsUrl },
  });
  const [code, out] = await Promise.all([p.exited, new Response(p.stdout).text()]);
  expect(code).toBe(1);
  expect(out).toMatch(/FAIL {2}order insert reaches fact_orders +not seen within 1 s/);
  expect((await ecom`SELECT count(*)::int AS n FROM orders`)[0]!.n).toBe(0);
  expect((await inv`SELECT count(*)::int AS n FROM inventory`)[0]!.n).toBe(0);
  await Promise.all([ecom.end(), inv.end()]);
}, 60_000);

test("scripts/demo.sh names its modes in --help and rejects an unknown argument before starting anything", async () => {
  const help = Bun.spawnSync(["bash", `${ROOT}scripts/demo.sh`, "--help"], { stdout: "pipe" });
  expect(help.exitCode).toBe(0);
  expect(help.stdout.toString()).toContain("scripts/demo.sh --kafka");
  expect(help.stdout.toString()).toContain("--once");
  const bad = Bun.spawnSync(["bash", `${ROOT}scripts/demo.sh`, "--kafak"], { stdout: "pipe", stderr: "pipe" });
  expect(bad.exitCode).toBe(64);
  expect(bad.stderr.toString()).toContain("demo: unknown argument --kafak");
});
