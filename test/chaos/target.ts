// Scenario 6, target faults: while a Kafka stream flows, the ANALYTICS PostgreSQL (a cluster of this
// scenario's own, so no other scenario's database is touched) is
//  - stopped with `pg_ctl stop -m immediate` and started again after a while, same port and data
//    directory (crash recovery on start);
//  - made to hold row locks: one transaction `SELECT … FOR UPDATE` on rows the stream updates, held,
//    then rolled back;
//  - given bursts of a 1 ms statement_timeout: `ALTER DATABASE … SET statement_timeout = '1ms'`, the
//    daemon's sessions terminated so that new ones pick it up, then RESET and terminated again.
// Checked: the daemon keeps running through all of them, resumes applying within 5 s after each fault
// ends (the fault's end to the next rise of its stored checkpoints), dead-letters nothing but the
// planted bad records, and the invariants (a)–(d). Disk full and injected deadlocks are not done.
import type { Sql } from "postgres";
import { pg, sleep, startCluster, waitUntil } from "./env.ts";
import { check, type Ctx, KafkaRig, newResult, type Result } from "./rig.ts";

type Kind = "stop" | "lock" | "timeout";

class Rollback extends Error {}

const RESUME_LIMIT_MS = 5000;

export const TARGET_FAULTS = ["stop", "lock", "timeout"] as const;

export async function targetFaults(ctx: Ctx, only?: string[]): Promise<Result> {
  const r = newResult("target", "target faults: the analytics PostgreSQL stopped (-m immediate), rows locked, a 1 ms statement_timeout");
  const long = ctx.mode === "long";
  const plan: Record<Kind, number> = long ? { stop: 20, lock: 5, timeout: 10 } : { stop: 3, lock: 2, timeout: 2 };
  for (const k of TARGET_FAULTS) if (only && !only.includes(k)) plan[k] = 0;
  const unknown = only?.filter((k) => !(TARGET_FAULTS as readonly string[]).includes(k)) ?? [];
  if (unknown.length) throw new Error(`target: unknown fault(s) ${unknown.join(", ")} (${TARGET_FAULTS.join(", ")})`);
  const stopS: [number, number] = long ? [5, 120] : [5, 15];
  const lockMs = long ? 60_000 : 10_000;
  const burstMs: [number, number] = long ? [3000, 10_000] : [3000, 3000];
  const lockKeys = 10;
  const rate = long ? 1000 : 400;

  // Its own cluster: it is stopped, and started again on the same port and data directory. Durable,
  // unlike the suite's other clusters (fsync, synchronous_commit, full_page_writes off): with
  // synchronous_commit off a crash loses commits PostgreSQL had already acknowledged, rows and
  // checkpoint alike, which a daemon that goes on from its position in memory never reads again.
  const cluster = await startCluster({ settings: { fsync: "on", synchronous_commit: "on", full_page_writes: "on" } });
  const rig = await KafkaRig.create(ctx, "target", { partitions: 16, keys: 2_000, poisonEvery: long ? 20_000 : 3_000, cluster });
  const db = new URL(rig.url).pathname.slice(1);
  const admin = pg(cluster.url(), 1);
  const mon = pg(rig.url, 1);
  const locker = pg(rig.url, 1);
  const t0 = Date.now();
  const feedStop = new AbortController();
  let feeding: Promise<unknown> | undefined;
  let supervising = true;
  let supervisor: Promise<void> | undefined;
  try {
    rig.startSampler(300);
    const d = await rig.daemon("a");
    d.start();
    await rig.workload.feed(5_000, 10_000);
    feeding = rig.workload.feed(Number.MAX_SAFE_INTEGER, rate, feedStop.signal);
    // A supervisor (systemd's Restart= with RestartSec=1, say): an exit is recorded with its cause and
    // the daemon started again 1 s later, so that the rest of the faults still run; any exit fails the
    // scenario (more than 20 end it).
    const exits: string[] = [];
    supervisor = (async () => {
      while (supervising && exits.length <= 20) {
        if (!d.running) {
          const e = await d.exited();
          const log = d.log();
          const err = /^(\w*Error): (.+)$/m.exec(log);
          const code = /^\s*code: "(\w+)"/m.exec(log);
          const cause = err ? `${err[1]}: ${err[2]}${code ? ` (${code[1]})` : ""}` : (log.trim().split("\n").pop() ?? "").slice(0, 300);
          exits.push(`exit ${e.code ?? e.signal}: ${cause}`);
          ctx.log(`target: the daemon exited (${exits.at(-1)}); starting it again in 1 s`);
          await sleep(1000);
          if (exits.length <= 20 && supervising) d.start();
        }
        await sleep(100);
      }
    })();
    const alive = () => (exits.length > 20 ? `the daemon exited ${exits.length} times: ${exits.slice(-3).join(" | ")}` : undefined);
    await waitUntil("the daemon ready", async () => (await d.ready(500))?.ready, 60_000, 100);
    await rig.drained(60_000, rig.group, alive).catch(() => undefined);

    /** The sum of the group's stored checkpoints: rises with every committed batch. */
    const position = async (): Promise<bigint | undefined> => {
      try {
        const [x] = await mon.unsafe(`SELECT coalesce(sum(position), 0)::text AS s FROM cdc_sink.checkpoints WHERE stream = $1`, [rig.stream]);
        return BigInt(x!.s as string);
      } catch {
        return undefined;
      }
    };
    /**
     * Milliseconds from `endedAt` (the fault's end) to the first stored checkpoint above `base` (read
     * at or after the end when not given: the measure can only come out longer than it was).
     */
    const resumeAfter = async (endedAt: number, base?: bigint): Promise<number | undefined> => {
      const limit = endedAt + 60_000;
      while (base === undefined && Date.now() < limit) {
        base = await position();
        if (base === undefined) await sleep(20);
      }
      while (Date.now() < limit) {
        const why = alive();
        if (why) throw new Error(why);
        const p = await position();
        if (p !== undefined && base !== undefined && p > base) return Date.now() - endedAt;
        await sleep(25);
      }
      return undefined;
    };
    const count = (re: RegExp) => d.fullLog().match(re)?.length ?? 0;
    /** Terminates the daemon's sessions of the analytics database (this suite's own set statement_timeout 0 at connect, env.ts). */
    const terminate = async (): Promise<number> => {
      const rows = await admin.unsafe(`SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'cdc-sink'`, [db]);
      return rows[0]!.n as number;
    };

    const kinds: Kind[] = [];
    for (const [k, n] of Object.entries(plan) as Array<[Kind, number]>) for (let i = 0; i < n; i++) kinds.push(k);
    for (let i = kinds.length - 1; i > 0; i--) {
      const j = ctx.rng.int(0, i);
      [kinds[i], kinds[j]] = [kinds[j]!, kinds[i]!];
    }

    const resumes: Record<Kind, number[]> = { stop: [], lock: [], timeout: [] };
    const late: string[] = [];
    const done: Record<Kind, number> = { stop: 0, lock: 0, timeout: 0 };
    let downS = 0;
    let stopsSeen = 0;
    let lockBlocked = 0;
    let lockWaitersMax = 0;
    let lockedRows = 0;
    let lockRetries = 0;
    let timeoutErrors = 0;
    let terminated = 0;

    for (const [i, kind] of kinds.entries()) {
      const label = `${kind} ${i + 1}/${kinds.length}`;
      let endedAt: number;
      let base: bigint | undefined;
      let what = "";
      if (kind === "stop") {
        const ms = ctx.rng.int(stopS[0] * 1000, stopS[1] * 1000);
        const before = count(/analytics database not usable/g);
        cluster.kill(); // pg_ctl stop -m immediate
        const stoppedAt = Date.now();
        await sleep(ms - (Date.now() - stoppedAt));
        cluster.start(); // same data directory and port; crash recovery
        endedAt = Date.now();
        downS += (endedAt - stoppedAt) / 1000;
        if (count(/analytics database not usable/g) > before) stopsSeen++;
        what = `down ${((endedAt - stoppedAt) / 1000).toFixed(1)} s`;
      } else if (kind === "lock") {
        // one transaction locks rows the stream updates (live keys), holds them, rolls back
        let release!: () => void;
        const released = new Promise<void>((res) => (release = res));
        let locked = -1;
        let holding: Promise<void> | undefined;
        for (let attempt = 0; attempt < 5 && locked < 0; attempt++) {
          let got!: (n: number) => void;
          const gotP = new Promise<number>((res) => (got = res));
          holding = locker
            .begin(async (tx) => {
              const rows = await tx.unsafe(`SELECT id FROM items WHERE id IN (SELECT id FROM items ORDER BY random() LIMIT ${lockKeys}) ORDER BY id FOR UPDATE`);
              got(rows.length);
              await released;
              throw new Rollback();
            })
            .then(
              () => undefined,
              (e) => {
                got(-1);
                if (!(e instanceof Rollback)) {
                  lockRetries++; // a deadlock with the daemon's transaction, say: lock again
                  ctx.log(`target: ${label}: locking failed (${(e as Error).message}); again`);
                }
              },
            );
          locked = await gotP;
        }
        if (locked < 0) throw new Error(`${label}: could not lock rows of the analytics table`);
        lockedRows += locked;
        const heldAt = Date.now();
        let waiters = 0;
        while (Date.now() - heldAt < lockMs) {
          const [w] = await mon.unsafe(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'cdc-sink' AND wait_event_type = 'Lock'`, [db]).catch(() => [{ n: 0 }]);
          waiters = Math.max(waiters, w!.n as number);
          await sleep(250);
        }
        // the daemon, when it waits on the lock, commits nothing meanwhile: the position before the rollback is the base
        base = await position();
        release();
        await holding;
        endedAt = Date.now();
        if (waiters > 0) lockBlocked++;
        lockWaitersMax = Math.max(lockWaitersMax, waiters);
        what = `${locked} rows locked ${(lockMs / 1000).toFixed(0)} s, ${waiters ? `the daemon waited on them (${waiters} backend(s))` : "the daemon never waited on them"}`;
      } else {
        const ms = ctx.rng.int(burstMs[0], burstMs[1]);
        const errs0 = count(/"code":"57014"/g);
        await admin.unsafe(`ALTER DATABASE ${db} SET statement_timeout = '1ms'`);
        terminated += await terminate();
        await sleep(ms);
        await admin.unsafe(`ALTER DATABASE ${db} RESET statement_timeout`);
        terminated += await terminate();
        endedAt = Date.now();
        const errs = count(/"code":"57014"/g) - errs0;
        timeoutErrors += errs;
        what = `${(ms / 1000).toFixed(1)} s, ${errs} statement(s) of the daemon cancelled (57014)`;
      }
      done[kind]++;
      const resume = await resumeAfter(endedAt, base);
      if (resume === undefined) late.push(`${label}: no progress within 60 s`);
      else {
        resumes[kind].push(resume);
        if (resume > RESUME_LIMIT_MS) late.push(`${label}: ${(resume / 1000).toFixed(1)} s`);
      }
      ctx.log(`target: ${label}: ${what}; resumed ${resume === undefined ? "never (60 s)" : `after ${(resume / 1000).toFixed(2)} s`}`);
      const why = alive();
      if (why) throw new Error(why);
      await sleep(ctx.rng.int(300, long ? 10_000 : 800));
    }

    feedStop.abort();
    await feeding;
    const drainMs = await rig.drained(long ? 600_000 : 120_000, rig.group, alive);
    supervising = false;
    await supervisor;
    const code = await d.stop();
    r.seconds = (Date.now() - t0) / 1000;
    const all = Object.values(resumes).flat();
    const fmt = (xs: number[]) => (xs.length ? `max ${(Math.max(...xs) / 1000).toFixed(2)} s` : "-");
    const burst = `${burstMs[0] / 1000}${burstMs[1] !== burstMs[0] ? `–${burstMs[1] / 1000}` : ""} s`;
    const injected = [
      plan.stop ? `pg_ctl stop -m immediate for ${stopS[0]}–${stopS[1]} s, then start on the same port and data directory` : "",
      plan.lock ? `one transaction holding SELECT … FOR UPDATE on ${lockKeys} live rows for ${lockMs / 1000} s, then ROLLBACK` : "",
      plan.timeout ? `ALTER DATABASE … SET statement_timeout = '1ms' and pg_terminate_backend of the daemon's sessions for ${burst}, then RESET and terminate again` : "",
    ].filter(Boolean);
    r.injected = `into the analytics PostgreSQL only (a cluster of its own, fsync and synchronous_commit on) while a stream flows at ${rate}/s: ${injected.join("; ")}`;
    r.count = done.stop + done.lock + done.timeout;
    r.countDetail =
      `${done.stop} stops (${downS.toFixed(0)} s down in all; the daemon logged "analytics database not usable" in ${stopsSeen}), ` +
      `${done.lock} lock holds (${lockedRows} rows; the daemon waited on them in ${lockBlocked}${lockRetries ? `; ${lockRetries} lock attempt(s) failed and were made again` : ""}), ` +
      `${done.timeout} timeout bursts (${timeoutErrors} statements cancelled by it; ${terminated} backends terminated)`;
    check(r, `${plan.stop} stops, ${plan.lock} lock holds, ${plan.timeout} statement_timeout bursts`, done.stop === plan.stop && done.lock === plan.lock && done.timeout === plan.timeout, `${done.stop}, ${done.lock}, ${done.timeout}`);
    check(
      r,
      `resumed applying <= ${RESUME_LIMIT_MS / 1000} s after each fault ended`,
      late.length === 0 && all.length === r.count,
      late.length ? late.join("; ") : `stops ${fmt(resumes.stop)}, locks ${fmt(resumes.lock)}, timeouts ${fmt(resumes.timeout)} (the fault's end to the next stored checkpoint)`,
    );
    check(r, "the faults reached the daemon", stopsSeen === done.stop && lockBlocked === done.lock && (done.timeout === 0 || timeoutErrors > 0), `${stopsSeen} of ${done.stop} stops logged as outages, ${lockBlocked} of ${done.lock} lock holds waited on, ${timeoutErrors} statements cancelled by the 1 ms timeout`);
    const causes = new Map<string, number>();
    for (const x of exits) causes.set(x, (causes.get(x) ?? 0) + 1);
    check(r, "the daemon never exited", exits.length === 0, exits.length ? `it exited ${exits.length} time(s) (each started again): ${[...causes].map(([c, n]) => `${n} × ${c}`).join("; ")}` : "one process throughout");
    check(r, "drained after, SIGTERM exits 0", code === 0, `drained in ${(drainMs / 1000).toFixed(1)} s; exit code ${code}`);
    await rig.finish(r);
    if (lockWaitersMax === 0 && done.lock) r.notes.push("the daemon never waited on a held row lock");
  } finally {
    supervising = false;
    await supervisor;
    // CHAOS_TARGET_LOG=/path keeps the daemon's log (/path.target-a) for a look after the run
    if (process.env.CHAOS_TARGET_LOG) for (const x of rig.daemons) Bun.write(`${process.env.CHAOS_TARGET_LOG}.${x.o.name}`, x.fullLog());
    feedStop.abort();
    await feeding?.catch(() => {});
    await rig.close();
    await Promise.all([admin, mon, locker].map((s: Sql) => s.end({ timeout: 1 }).catch(() => {})));
  }
  return r;
}
