// The fault suite (issue 17), driven from outside against the built binary: `bun test/chaos/run.ts
// [--short|--long] [--seed N] [--json FILE] [SCENARIO…]`, run by scripts/chaos.sh. Prints per
// scenario what was injected, how many times, how many events, the checks and the five invariants,
// and exits non-zero when any fails. Everything it starts is stopped and removed at the end, also on
// failure or Ctrl-C (test/support/cleanup.ts).
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { failed, type Verdict } from "./checks.ts";
import { cleanupAll, onCleanup, tempDir } from "../support/cleanup.ts";
import { ensureBinary } from "../fuzz/run.ts";
import { type KafkaEnv, netnsAvailable, openKafka, type PgCluster, ROOT, Rng, startCluster } from "./env.ts";
import { failpoints, kill9Kafka, zombies } from "./kills.ts";
import { networkFaults } from "./network.ts";
import { kill9Pg } from "./pgkill.ts";
import { soak } from "./soak.ts";
import { targetFaults } from "./target.ts";
import type { Ctx, Mode, Result } from "./rig.ts";

export interface Scenario {
  name: string;
  title: string;
  long?: boolean;
  run(ctx: Ctx, args: string[]): Promise<Result>;
}

export const SCENARIOS: Scenario[] = [
  { name: "kill9", title: "kill -9, Kafka mode", run: (c) => kill9Kafka(c) },
  { name: "failpoints", title: "crashes at chosen points", run: (c, a) => failpoints(c, a.length ? a : undefined) },
  { name: "pgkill9", title: "kill -9, PostgreSQL-source mode", run: (c) => kill9Pg(c) },
  { name: "zombies", title: "zombies: SIGSTOP past the session timeout, another instance takes over, SIGCONT", run: (c) => zombies(c) },
  { name: "network", title: "network faults on both links: reset, blackhole, 1 s latency, half-open, 1 KiB/s", run: (c) => networkFaults(c) },
  { name: "target", title: "target faults: the analytics PostgreSQL stopped (-m immediate), rows locked, a 1 ms statement_timeout, deadlocks, disk full, sent back in time", run: (c, a) => targetFaults(c, a.length ? a : undefined) },
  { name: "soak", title: "soak: a steady stream, a random fault of the other scenarios at a fixed interval", run: (c) => soak(c) },
];

const verdictText = (v: Verdict | undefined) => (!v ? "-" : "na" in v ? `n/a (${v.na})` : `${v.ok ? "ok" : "FAILED"}: ${v.detail}`);

export function report(results: Result[], meta: { mode: Mode; seed: number; commit: string; date: string; kafka: string; seconds: number }): { text: string; failures: string[] } {
  const out: string[] = [];
  const failures: string[] = [];
  out.push(`cdc-sink fault suite, ${meta.mode} mode, seed ${meta.seed}, commit ${meta.commit}, ${meta.date}, Kafka: ${meta.kafka}; ${meta.seconds.toFixed(0)} s`);
  out.push("");
  out.push(`${"scenario".padEnd(12)} ${"injected".padStart(8)} ${"events".padStart(10)} ${"time".padStart(7)}  result`);
  for (const r of results) {
    const bad = !!r.error || r.checks.some((c) => !c.ok) || Object.values(r.invariants).some(failed);
    out.push(`${r.name.padEnd(12)} ${String(r.count).padStart(8)} ${String(r.events).padStart(10)} ${`${r.seconds.toFixed(0)} s`.padStart(7)}  ${bad ? "FAILED" : "ok"}`);
  }
  for (const r of results) {
    out.push("");
    out.push(`== ${r.name}: ${r.title}`);
    if (r.injected) out.push(`injected: ${r.injected}`);
    out.push(`how many: ${r.count}${r.countDetail ? ` (${r.countDetail})` : ""}; events: ${r.events}; ${r.seconds.toFixed(0)} s`);
    if (r.error) {
      out.push(`ERROR: ${r.error}`);
      failures.push(`${r.name}: ${r.error.split("\n")[0]}`);
    }
    for (const c of r.checks) {
      out.push(`  ${c.ok ? "ok    " : "FAILED"} ${c.what}: ${c.detail}`);
      if (!c.ok) failures.push(`${r.name}: ${c.what}: ${c.detail}`);
    }
    const names: Record<string, string> = { a: "final state", b: "positions never back", c: "dead letters", d: "full replay", e: "flush <= checkpoint" };
    for (const k of ["a", "b", "c", "d", "e"] as const) {
      const v = r.invariants[k];
      if (!v) continue;
      out.push(`  (${k}) ${names[k]}: ${verdictText(v)}`);
      if (failed(v)) failures.push(`${r.name}: invariant (${k}) ${names[k]}: ${"detail" in v ? v.detail : ""}`);
    }
    for (const n of r.notes) out.push(`  note: ${n}`);
  }
  return { text: out.join("\n"), failures };
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { short: { type: "boolean" }, long: { type: "boolean" }, seed: { type: "string" }, json: { type: "string" }, list: { type: "boolean" } },
  });
  if (values.list) {
    for (const s of SCENARIOS) console.log(`${s.name.padEnd(12)} ${s.title}${s.long ? " (long mode only)" : ""}`);
    process.exit(0);
  }
  const mode: Mode = values.long ? "long" : "short";
  const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
  // SCENARIO or SCENARIO:arg,arg (e.g. failpoints:after-commit,during-drain)
  const wanted = positionals.map((p) => {
    const [name, args] = p.split(":");
    const s = SCENARIOS.find((x) => x.name === name);
    if (!s) {
      console.error(`chaos: unknown scenario ${name} (--list shows them)`);
      process.exit(64);
    }
    return { s, args: args ? args.split(",") : [] };
  });
  const chosen = wanted.length ? wanted : SCENARIOS.filter((s) => mode === "long" || !s.long).map((s) => ({ s, args: [] as string[] }));
  const log = (s: string) => console.error(`chaos [${new Date().toISOString().slice(11, 19)}] ${s}`);
  const start = performance.now();
  // the checkout the run starts from (its binary is built from it)
  let commit = "unknown";
  try {
    commit = execFileSync("git", ["-C", ROOT, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim();
  } catch {
    /* not a checkout */
  }
  let code = 1;
  const results: Result[] = [];
  let kafkaKind = "-";
  try {
    const bin = ensureBinary(log);
    const dir = tempDir("cdc-sink-chaos-");
    let analytics: Promise<PgCluster> | undefined;
    let kafka: Promise<KafkaEnv> | undefined;
    const ctx: Ctx = {
      mode,
      seed,
      rng: new Rng(seed),
      bin,
      dir,
      log,
      analytics: () => (analytics ??= startCluster()),
      kafka: () =>
        (kafka ??= openKafka(log).then((k) => {
          kafkaKind = k.kind === "mock" ? "librdkafka mock cluster" : `real broker (${k.bootstrap})`;
          return k;
        })),
      netns: netnsAvailable(),
    };
    log(`${mode} mode, seed ${seed}, scenarios: ${chosen.map((c) => c.s.name).join(" ")}${ctx.netns ? "" : " (no network namespaces here: network faults on the PostgreSQL link only)"}`);
    for (const { s, args } of chosen) {
      log(`== ${s.name}: ${s.title}`);
      const t = performance.now();
      let r: Result;
      try {
        r = await s.run(ctx, args);
      } catch (e) {
        r = { name: s.name, title: s.title, injected: "", count: 0, countDetail: "", events: 0, seconds: (performance.now() - t) / 1000, invariants: {}, checks: [], notes: [], error: (e as Error).stack ?? String(e) };
      }
      results.push(r);
      log(`${s.name}: ${r.error ? "ERROR" : r.checks.every((c) => c.ok) && !Object.values(r.invariants).some(failed) ? "ok" : "FAILED"} in ${r.seconds.toFixed(0)} s`);
    }
    const meta = { mode, seed, commit, date: new Date().toISOString().slice(0, 16).replace("T", " ") + " UTC", kafka: kafkaKind, seconds: (performance.now() - start) / 1000 };
    const { text, failures } = report(results, meta);
    console.log(text);
    console.log("");
    for (const r of results) console.log(`chaos: ${r.name} ${failures.some((f) => f.startsWith(`${r.name}: `)) ? "FAILED" : "ok"}`);
    if (values.json) writeFileSync(values.json, JSON.stringify({ meta, results }, null, 1));
    console.log(failures.length ? `\nFAILED (seed ${seed}):\n${failures.map((f) => `  ${f}`).join("\n")}` : `\nOK (seed ${seed})`);
    code = failures.length ? 1 : 0;
  } catch (e) {
    console.error(`chaos: ${(e as Error).stack ?? e}`);
  } finally {
    cleanupAll();
  }
  process.exit(code);
}

export { onCleanup };
