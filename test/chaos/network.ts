// Scenario 5, network faults on both of a daemon's links: the daemon runs in a network namespace of
// its own, where the fault proxy (proxy.ts) listens on the addresses it dials (the Kafka broker's and
// the analytics PostgreSQL's) and forwards to the real ones outside. Faults drawn at random, one at a
// time, on the Kafka or the PostgreSQL link: connection reset, blackhole (nothing delivered, the
// connections open; what was held back is delivered when lifted), 1 s latency, half-open connections
// (the server's side closed, the daemon's left open and silent), a 1 KiB/s throttle.
// Checked: /readyz false within 2 s after a blackhole starts, the sink caught up with what was offered
// up to a fault's end within twice the fault's length (at least 2 s), the daemon never exited, no dead
// letter, and invariants (a)–(d).
import { freePort, sleep, waitUntil } from "./env.ts";
import { applied, checkpoints } from "./checks.ts";
import { NetFaults } from "./netfault.ts";
import type { Fault } from "./proxy.ts";
import { check, type Ctx, KafkaRig, newResult, type Result } from "./rig.ts";

type Kind = "reset" | "blackhole" | "latency" | "halfopen" | "throttle";
const KINDS: Kind[] = ["reset", "blackhole", "latency", "halfopen", "throttle"];
const READY_LIMIT_MS = 2000;

export async function networkFaults(ctx: Ctx): Promise<Result> {
  const r = newResult("network", "network faults on both links: reset, blackhole, 1 s latency, half-open, 1 KiB/s");
  if (!ctx.netns) throw new Error("network faults need network namespaces (ip netns: root and iproute2)");
  const long = ctx.mode === "long";
  const faults = long ? 120 : 10;
  const rate = long ? 1000 : 500;
  const span = (k: Kind): [number, number] => (k === "reset" ? [0, 2000] : k === "blackhole" ? (long ? [5000, 60_000] : [3000, 6000]) : long ? [3000, 15_000] : [2000, 4000]);
  // long: 2.4M records, and (d) must re-read every one. The mock keeps about 5 MiB a partition (64 kept 2.31M of
  // 2.44M) but scans a partition's whole log on each fetch, so 384 keep every record and slow its catch-ups; a broker keeps all
  const partitions = !long ? 16 : (await ctx.kafka()).kind === "mock" ? 384 : 64;
  const rig = await KafkaRig.create(ctx, "network", { partitions, keys: 5_000, poisonEvery: 0 });
  const httpPort = await freePort();
  const net = await NetFaults.forSink(ctx.dir, rig.kafka.bootstrap, Number(new URL(rig.url).port), httpPort);
  const t0 = Date.now();
  const feedStop = new AbortController();
  let feeding: Promise<unknown> | undefined;
  try {
    rig.startSampler(300);
    // what a user runs: a link fault shorter than the default 10 s session keeps the group (the harness's 3 s one did not)
    const d = await rig.daemon("a", { netns: net.ns, httpSocket: net.httpSocket, httpPort, defaults: true });
    d.start();
    await waitUntil("the daemon ready", async () => (await d.ready(500))?.ready, 60_000, 100);
    await rig.workload.feed(5_000, 10_000);
    feeding = rig.workload.feed(Number.MAX_SAFE_INTEGER, rate, feedStop.signal);
    await rig.drained(60_000);
    const alive = () => (d.running ? undefined : `the daemon exited: ${d.log().slice(-400)}`);

    const done: Record<Kind, Record<"kafka" | "pg", number>> = Object.fromEntries(KINDS.map((k) => [k, { kafka: 0, pg: 0 }])) as never;
    const notReady: number[] = [];
    const slowReady: string[] = [];
    const catchUps: Array<{ label: string; ms: number; allowed: number }> = [];
    const late: string[] = [];
    let faultS = 0;
    // short: each kind on each link once, in random order; long: drawn at random
    const plan = long
      ? Array.from({ length: faults }, () => ({ kind: ctx.rng.pick(KINDS), link: ctx.rng.chance(0.5) ? ("kafka" as const) : ("pg" as const) }))
      : KINDS.flatMap((kind) => [{ kind, link: "kafka" as const }, { kind, link: "pg" as const }]);
    for (let i = plan.length - 1; !long && i > 0; i--) {
      const j = ctx.rng.int(0, i);
      [plan[i], plan[j]] = [plan[j]!, plan[i]!];
    }
    for (let i = 0; i < faults; i++) {
      const { kind, link } = plan[i]!;
      const [lo, hi] = span(kind);
      const ms = ctx.rng.int(lo, hi);
      const label = `${kind} ${link} ${i + 1}/${faults}`;
      const fault: Fault = kind === "reset" ? { fault: "reset", ms } : kind === "latency" ? { fault: "latency", ms: 1000 } : kind === "throttle" ? { fault: "throttle", bps: 1024 } : { fault: kind };
      const startedAt = Date.now();
      await net.setOn(link, fault);
      let firstNotReady: number | undefined;
      if (kind === "blackhole") {
        while (Date.now() - startedAt < ms) {
          const x = await d.ready(300);
          if (x && !x.ready && firstNotReady === undefined) firstNotReady = Date.now() - startedAt;
          await sleep(50);
        }
        if (firstNotReady === undefined) slowReady.push(`${label}: ready throughout ${(ms / 1000).toFixed(1)} s`);
        else {
          notReady.push(firstNotReady);
          if (firstNotReady > READY_LIMIT_MS) slowReady.push(`${label}: not ready after ${(firstNotReady / 1000).toFixed(2)} s`);
        }
      } else await sleep(Math.max(0, ms - (Date.now() - startedAt)));
      if (kind !== "reset") await net.setOn(link, { fault: "none" });
      const endedAt = Date.now();
      const length = endedAt - startedAt;
      faultS += length / 1000;
      done[kind][link]++;
      // what was offered up to the fault's end, applied within twice the fault's length
      const ends = rig.workload.ends();
      let total = 0n;
      for (const v of ends.values()) total += v;
      const allowed = Math.max(2 * length, 2000);
      let caught: number | undefined;
      // at the deadline, which partitions are behind and by how much: one slow partition, or all
      let behind = "";
      while (Date.now() - endedAt < Math.max(allowed, 60_000)) {
        const why = alive();
        if (why) throw new Error(why);
        if ((await applied(rig.sql, rig.stream, ends).catch(() => -1n)) === total) {
          caught = Date.now() - endedAt;
          break;
        }
        if (!behind && Date.now() - endedAt > allowed) {
          const at = await checkpoints(rig.sql, rig.stream).catch(() => new Map<string, bigint>());
          const gaps = [...ends].map(([part, end]) => [part, end - (at.get(part) ?? 0n)] as const).filter(([, gap]) => gap > 0n);
          behind = `; behind at ${(allowed / 1000).toFixed(1)} s: ${gaps.length} of ${ends.size} partitions, ${gaps.map(([p, g]) => `${p.replace(/^.*\//, "p")} ${g}`).join(" ")}`;
        }
        await sleep(50);
      }
      if (caught === undefined || caught > allowed) late.push(`${label} (${(length / 1000).toFixed(1)} s): ${caught === undefined ? "not caught up in 60 s" : `caught up after ${(caught / 1000).toFixed(1)} s`}`);
      if (caught !== undefined) catchUps.push({ label, ms: caught, allowed });
      ctx.log(`network: ${label}: ${(length / 1000).toFixed(1)} s${firstNotReady !== undefined ? `, not ready after ${(firstNotReady / 1000).toFixed(2)} s` : ""}; caught up ${caught === undefined ? "never" : `after ${(caught / 1000).toFixed(2)} s`}${behind}`);
      await sleep(ctx.rng.int(500, long ? 3000 : 1500));
    }
    feedStop.abort();
    await feeding;
    const drainMs = await rig.drained(long ? 600_000 : 120_000, rig.group, alive);
    const code = await d.stop();
    r.seconds = (Date.now() - t0) / 1000;
    const count = KINDS.reduce((n, k) => n + done[k].kafka + done[k].pg, 0);
    r.injected = `through a TCP fault proxy in the daemon's network namespace, on the Kafka or the PostgreSQL link at random, while a stream flows at ${rate}/s: connection reset (new connections refused for 0–2 s), blackhole for ${span("blackhole")[0] / 1000}–${span("blackhole")[1] / 1000} s, 1 s latency, half-open connections and a 1 KiB/s throttle for ${span("latency")[0] / 1000}–${span("latency")[1] / 1000} s`;
    r.count = count;
    r.countDetail = `${KINDS.map((k) => `${k} ${done[k].kafka} Kafka + ${done[k].pg} PostgreSQL`).join(", ")}; ${faultS.toFixed(0)} s of faults`;
    check(r, `${faults} faults`, count === faults, `${count}`);
    check(r, `/readyz false <= ${READY_LIMIT_MS / 1000} s after each blackhole started`, slowReady.length === 0, slowReady.length ? slowReady.join("; ") : notReady.length ? `${notReady.length} blackholes, not ready after ${(Math.min(...notReady) / 1000).toFixed(2)}–${(Math.max(...notReady) / 1000).toFixed(2)} s` : "no blackhole drawn");
    const worst = catchUps.reduce((w, c) => (c.ms / c.allowed > (w ? w.ms / w.allowed : -1) ? c : w), undefined as (typeof catchUps)[number] | undefined);
    check(r, "caught up within twice each fault's length (>= 2 s)", late.length === 0, late.length ? late.join("; ") : `closest: ${worst ? `${worst.label} ${(worst.ms / 1000).toFixed(2)} s of ${(worst.allowed / 1000).toFixed(1)} s allowed` : "-"}`);
    check(r, "the daemon never exited; drained after, SIGTERM exits 0", d.starts === 1 && code === 0, `${d.starts} start(s); drained in ${(drainMs / 1000).toFixed(1)} s; exit code ${code}`);
    await rig.finish(r);
  } finally {
    feedStop.abort();
    await feeding?.catch(() => {});
    await rig.close();
    await net.close();
  }
  return r;
}
