// scripts/demo.sh --kafka: the seed's pipeline end to end on a stack of its own (.demo/kafka/stack,
// not the tier's): connectors RUNNING, cdc-sink in Kafka mode, verify-cdc's six steps each within
// 5 s; --once stops everything it started and so does Ctrl-C.
import { expect } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { onCleanup } from "../support/cleanup.ts";
import { ROOT } from "../support/harness.ts";
import { stackTest } from "./support.ts";

const stackOfDemo = `${ROOT}.demo/kafka/stack`;
/** the demo, stopped with SIGTERM (its trap then stops everything it started) should this run end first */
function demo(args: string[]) {
  const p = Bun.spawn(["bash", `${ROOT}scripts/demo.sh`, ...args], { stdout: "pipe", stderr: "pipe" });
  let done = false;
  void p.exited.then(() => (done = true));
  onCleanup(() => {
    if (!done) p.kill("SIGTERM");
  });
  return p;
}

/** processes whose command line names the demo's stack dir (Kafka, Connect, PostgreSQL) */
const demoProcesses = () =>
  readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return readFileSync(`/proc/${d}/cmdline`, "utf8").replaceAll("\0", " ").includes(`${stackOfDemo}/`);
      } catch {
        return false;
      }
    });

function expectAllStopped() {
  expect(existsSync(stackOfDemo)).toBe(false);
  expect(demoProcesses()).toEqual([]);
  expect(readFileSync(`${ROOT}.demo/kafka/cdc-sink.log`, "utf8")).toContain('"msg":"stopped cleanly"');
}

stackTest("scripts/demo.sh --kafka --once: connectors RUNNING, every change through Kafka within 5 s, everything stopped", async () => {
  const p = demo(["--kafka", "--once"]);
  const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
  if (code !== 0) console.error(out, err);
  expect(code).toBe(0);
  expect(out).toContain("ecom-connector RUNNING (1 task(s))");
  expect(out).toContain("inventory-connector RUNNING (1 task(s))");
  expect(out).toMatch(/Dune\s+\|\s+\d+ \|/);
  const steps = [...out.matchAll(/^ok {4}(.+?)\s+(\d+) ms$/gm)].map((m) => [m[1], Number(m[2])] as const);
  expect(steps.map(([s]) => s)).toEqual([
    "order insert reaches fact_orders",
    "order update reaches fact_orders",
    "order delete reaches fact_orders",
    "inventory insert reaches fact_inventory",
    "inventory update reaches fact_inventory",
    "inventory delete reaches fact_inventory",
  ]);
  for (const [, ms] of steps) expect(ms).toBeLessThan(5000);
  expect(out).toContain("verify-cdc: every change reached analytics");
  console.log(out.split("\n").filter((l) => /^ok |RUNNING|took|up in/.test(l)).join("\n"));
  expectAllStopped();
}, 300_000);

stackTest("scripts/demo.sh --kafka stops everything it started on Ctrl-C", async () => {
  const p = demo(["--kafka"]);
  let out = "";
  const dec = new TextDecoder();
  const reader = p.stdout.getReader();
  const deadline = Date.now() + 240_000;
  while (!out.includes("Ctrl-C stops everything") && Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    out += dec.decode(value);
  }
  expect(out).toContain("verify-cdc: every change reached analytics");
  expect(out).toContain("Ctrl-C stops everything");
  p.kill("SIGINT");
  const rest = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      out += dec.decode(value);
    }
  })();
  const code = await p.exited;
  await rest;
  expect(code).toBe(130);
  expect(out).toContain("demo: stopping cdc-sink (SIGTERM)");
  expectAllStopped();
}, 300_000);
