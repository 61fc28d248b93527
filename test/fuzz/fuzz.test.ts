// Event fuzzing (issue 18): 1,000 mutants of real Debezium records (test/fuzz/mutator.ts) inside a
// stream of good events, applied by the BUILT binary from librdkafka's mock cluster into a throwaway
// PostgreSQL. Every mutant must end as its class expects (dead-lettered with its stage/code, or
// applied exactly, or ignored), every good event applied, /healthz answering throughout, no crash,
// and the daemon's peak RSS within README's bound for the default settings (512 MiB; the ratio to
// a clean run of the same good stream is reported).
// The long mode (>= 10,000 mutants in 200k good events) is scripts/fuzz.sh --long.
import { expect, test } from "bun:test";
import { formatReport, fuzz, type FuzzReport } from "./run.ts";
import { sharedCluster } from "../support/pg.ts";

const SEED = Number(process.env.FUZZ_SEED ?? 18);
let running: Promise<FuzzReport> | undefined;
/** One run shared by the tests below (the first one to ask starts it). */
function report(): Promise<FuzzReport> {
  return (running ??= (async () => {
    const r = await fuzz({
      seed: SEED,
      mutants: 1000,
      goodEvents: 4000,
      partitions: 4,
      huge: { count: 3, size: 16 * 1024 * 1024 },
      clean: true,
      // a daemon that stalls fails here instead of the test timing out
      drainTimeoutMs: 60_000,
      cluster: await sharedCluster(),
      log: (s) => console.error(`fuzz: ${s}`),
    });
    const { text, failures } = formatReport(r);
    console.log(`${text}\n${failures.length ? `FAILED:\n${failures.map((f) => `  ${f}`).join("\n")}` : "OK"}`);
    return r;
  })());
}

const T = 280_000;

test("every mutant is dead-lettered, applied exactly or ignored as its class expects", async () => {
  const r = await report();
  expect(r.figures.fuzz.mutants).toBe(1000);
  expect(r.deviations.map((d) => `${d.cls}: ${d.variant} (id ${d.id}, ${d.topic}): ${d.what.slice(0, 300)}`)).toEqual([]);
}, T);

test("every good event around the mutants is applied, none dead-lettered", async () => {
  const r = await report();
  expect({ wrong: r.good.wrong.slice(0, 20), deadLettered: r.unexpectedDeadLetters.slice(0, 20) }).toEqual({ wrong: [], deadLettered: [] });
}, T);

test("the daemon drains the stream, answers /healthz throughout and exits 0 on SIGTERM", async () => {
  const r = await report();
  for (const [run, f] of [["clean", r.figures.clean!], ["fuzz", r.figures.fuzz]] as const) {
    expect(f.healthz.probes).toBeGreaterThan(0);
    expect({ run, crashed: f.crashed, exitCode: f.exitCode, healthzFailures: f.healthz.failures, firstHealthzFailure: f.healthz.firstFailure }).toEqual({
      run,
      crashed: undefined,
      exitCode: 0,
      healthzFailures: 0,
      firstHealthzFailure: undefined,
    });
  }
}, T);

test("the daemon's peak RSS stays within the 512 MiB README promises with the default settings", async () => {
  const r = await report();
  expect(r.figures.fuzz.peakRssBytes).toBeLessThanOrEqual(r.figures.rssBoundBytes);
}, T);
