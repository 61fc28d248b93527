// Scenario 8, soak: a steady stream for a long time while a fault drawn at random from the other
// scenarios' is injected at a fixed interval: kill -9 or a SIGSTOP past the session timeout of
// instance B; a network fault on either link of instance A (which runs behind the fault proxy and
// is never killed); the analytics database stopped (-m immediate), given a 1 ms statement_timeout
// burst, or holding a row lock. Checked: A never exits, its RSS drifts at most 10 % (the median of the
// last fifth against that of the second fifth of the run, after warm-up) and its open descriptors
// stay flat, and the invariants (a)–(d).
import type { Sql } from "postgres";
import { freePort, pg, sleep, startCluster, waitUntil } from "./env.ts";
import { NetFaults } from "./netfault.ts";
import { terminateSinkSessions } from "./target.ts";
import type { Fault } from "./proxy.ts";
import { check, type Ctx, groupTiming, KafkaRig, newResult, type Result } from "./rig.ts";

type Kind = "kill9" | "zombie" | "reset" | "blackhole" | "latency" | "halfopen" | "throttle" | "db-stop" | "db-timeout" | "db-lock";
const KINDS: Kind[] = ["kill9", "zombie", "reset", "blackhole", "latency", "halfopen", "throttle", "db-stop", "db-timeout", "db-lock"];

class Rollback extends Error {}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)]! : 0;
};

export async function soak(ctx: Ctx): Promise<Result> {
  const r = newResult("soak", "soak: a steady stream, a random fault of the other scenarios at a fixed interval");
  if (!ctx.netns) throw new Error("the soak needs network namespaces (ip netns: root and iproute2) for its network faults");
  const long = ctx.mode === "long";
  const minutes = long ? 60 : 2;
  const everyMs = long ? 15_000 : 10_000;
  const rate = 2000;
  // a durable cluster of its own: it is stopped with -m immediate
  const cluster = await startCluster({ settings: { fsync: "on", synchronous_commit: "on", full_page_writes: "on" } });
  // librdkafka's mock keeps about 5 MiB per partition: an hour at 2k/s needs many for the full replay (d); a real broker keeps all
  const partitions = !long ? 16 : (await ctx.kafka()).kind === "mock" ? 512 : 64;
  const rig = await KafkaRig.create(ctx, "soak", { partitions, keys: 20_000, poisonEvery: 0, cluster });
  const db = new URL(rig.url).pathname.slice(1);
  const admin = pg(cluster.url(), 1);
  const locker = pg(rig.url, 1);
  const httpPort = await freePort();
  const net = await NetFaults.forSink(ctx.dir, rig.kafka.bootstrap, cluster.port, httpPort);
  const t0 = Date.now();
  const feedStop = new AbortController();
  let feeding: Promise<unknown> | undefined;
  let sampling = true;
  let sampler: Promise<void> | undefined;
  try {
    rig.startSampler(1000);
    const a = await rig.daemon("a", { netns: net.ns, httpSocket: net.httpSocket, httpPort });
    const b = await rig.daemon("b");
    a.start();
    b.start();
    await waitUntil("both instances ready", async () => (await Promise.all([a, b].map((d) => d.ready(500)))).every((x) => x?.ready), 60_000, 100);
    feeding = rig.workload.feed(Number.MAX_SAFE_INTEGER, rate, feedStop.signal);
    const samples: Array<{ t: number; rss: number; fds: number }> = [];
    sampler = (async () => {
      while (sampling) {
        const x = a.resources();
        if (x) samples.push({ t: Date.now() - t0, ...x });
        await sleep(1000);
      }
    })();
    const done = Object.fromEntries(KINDS.map((k) => [k, 0])) as Record<Kind, number>;
    const session = groupTiming(rig.kafka).session;
    const endAt = t0 + minutes * 60_000;
    let restarts = 0;
    while (Date.now() < endAt) {
      const next = Date.now() + everyMs;
      const kind = ctx.rng.pick(KINDS);
      const ms = ctx.rng.int(2000, Math.min(everyMs - 3000, 10_000));
      if (kind === "kill9") {
        await b.kill9();
        b.start();
      } else if (kind === "zombie") {
        b.signal("SIGSTOP");
        await sleep(session + ctx.rng.int(500, 3000));
        b.signal("SIGCONT");
      } else if (kind === "db-stop") {
        cluster.kill();
        await sleep(ms);
        cluster.start();
      } else if (kind === "db-timeout") {
        await admin.unsafe(`ALTER DATABASE ${db} SET statement_timeout = '1ms'`);
        await terminateSinkSessions(admin, db);
        await sleep(Math.min(ms, 3000));
        await admin.unsafe(`ALTER DATABASE ${db} RESET statement_timeout`);
        await terminateSinkSessions(admin, db);
      } else if (kind === "db-lock") {
        await locker
          .begin(async (tx) => {
            await tx.unsafe(`SELECT id FROM items WHERE id IN (SELECT id FROM items ORDER BY random() LIMIT 10) ORDER BY id FOR UPDATE`);
            await sleep(ms);
            throw new Rollback();
          })
          .catch((e) => {
            if (!(e instanceof Rollback)) ctx.log(`soak: db-lock: ${(e as Error).message}`);
          });
      } else {
        const link = ctx.rng.chance(0.5) ? "kafka" : "pg";
        const fault: Fault = kind === "reset" ? { fault: "reset", ms: ctx.rng.int(0, 2000) } : kind === "latency" ? { fault: "latency", ms: 1000 } : kind === "throttle" ? { fault: "throttle", bps: 1024 } : { fault: kind };
        await net.setOn(link, fault);
        if (kind !== "reset") {
          await sleep(ms);
          await net.setOn(link, { fault: "none" });
        }
      }
      done[kind]++;
      if (!b.running) {
        restarts++;
        ctx.log(`soak: instance b exited (${b.log().slice(-200)}); started again`);
        b.start();
      }
      if (!a.running) throw new Error(`instance a exited: ${a.log().slice(-500)}`);
      const elapsed = (Date.now() - t0) / 1000;
      if (Object.values(done).reduce((x, y) => x + y, 0) % 10 === 0) {
        const p = await rig.progress().catch(() => undefined);
        const last = samples.at(-1);
        ctx.log(`soak: ${elapsed.toFixed(0)} s, ${Object.values(done).reduce((x, y) => x + y, 0)} faults; ${p ? `${p.applied} of ${p.total} applied` : ""}; a: RSS ${last ? (last.rss / 2 ** 20).toFixed(0) : "?"} MiB, ${last?.fds ?? "?"} fds`);
      }
      await sleep(Math.max(0, next - Date.now()));
    }
    feedStop.abort();
    await feeding;
    const drainMs = await rig.drained(long ? 600_000 : 180_000, rig.group, () => (a.running ? undefined : `instance a exited: ${a.log().slice(-400)}`));
    sampling = false;
    await sampler;
    await waitUntil("both instances ready", async () => (await Promise.all([a, b].map((d) => d.ready(500)))).every((x) => x?.ready), 60_000, 100).catch(() => undefined);
    const codes = await Promise.all([a, b].map(async (d) => ((await d.stop()) ?? "killed after 30 s")));
    r.seconds = (Date.now() - t0) / 1000;
    const count = Object.values(done).reduce((x, y) => x + y, 0);
    r.injected = `every ${everyMs / 1000} s one of: kill -9 of instance b, SIGSTOP of b past the session timeout, a network fault on a link of instance a (reset, blackhole, 1 s latency, half-open, 1 KiB/s), the analytics database stopped (-m immediate), a 1 ms statement_timeout burst, 10 rows locked; a stream of ${rate} events/s for ${minutes} min`;
    r.count = count;
    r.countDetail = KINDS.filter((k) => done[k]).map((k) => `${k} ${done[k]}`).join(", ");
    // warm-up: the first fifth; drift: the last fifth's median RSS against the second fifth's
    const fifth = (i: number) => samples.filter((s) => s.t >= (i * r.seconds * 1000) / 5 && s.t < ((i + 1) * r.seconds * 1000) / 5);
    const early = fifth(1);
    const lateS = fifth(4).length ? fifth(4) : fifth(3);
    const rss0 = median(early.map((s) => s.rss));
    const rss1 = median(lateS.map((s) => s.rss));
    const drift = rss0 ? (rss1 - rss0) / rss0 : 0;
    const fds0 = Math.max(...early.map((s) => s.fds));
    const fds1 = Math.max(...lateS.map((s) => s.fds));
    const rssText = `median RSS ${(rss0 / 2 ** 20).toFixed(0)} MiB in the second fifth, ${(rss1 / 2 ** 20).toFixed(0)} MiB in the last (${(100 * drift).toFixed(1)} %); peak ${(Math.max(...samples.map((s) => s.rss)) / 2 ** 20).toFixed(0)} MiB`;
    const fdText = `at most ${fds0} open descriptors in the second fifth, ${fds1} in the last`;
    if (long) {
      check(r, "instance a's RSS drifted <= 10 %", Math.abs(drift) <= 0.1, rssText);
      check(r, "instance a's open descriptors flat", fds1 <= fds0 + 2, fdText);
    } else r.notes.push(`short run (${minutes} min): ${rssText}; ${fdText} (checked in the long run)`);
    check(r, "instance a never exited; drained after; SIGTERM exits 0", a.starts === 1 && codes.every((c) => c === 0), `a started once, b ${b.starts} times (${restarts} unplanned); drained in ${(drainMs / 1000).toFixed(1)} s; exit codes ${codes.join(", ")}`);
    await rig.finish(r);
  } finally {
    sampling = false;
    await sampler;
    feedStop.abort();
    await feeding?.catch(() => {});
    await rig.close();
    await net.close();
    await Promise.all([admin, locker].map((s: Sql) => s.end({ timeout: 1 }).catch(() => {})));
  }
  return r;
}
