// Scenario 6, target faults: while a Kafka stream flows, the ANALYTICS PostgreSQL (a cluster of this
// scenario's own, so no other scenario's database is touched) is
//  - stopped with `pg_ctl stop -m immediate` and started again after a while, same port and data
//    directory (crash recovery on start);
//  - made to hold row locks: one transaction `SELECT … FOR UPDATE` on rows the stream updates, held,
//    then rolled back;
//  - given bursts of a 1 ms statement_timeout: `ALTER DATABASE … SET statement_timeout = '1ms'`, the
//    daemon's sessions terminated so that new ones pick it up, then RESET and terminated again;
//  - drawn into deadlocks: a transaction locks rows, waits until the daemon's transaction (holding
//    its checkpoint rows) waits on them, then locks those checkpoint rows; PostgreSQL cancels one (40P01);
//  - its disk filled: the analytics table and its index live in a tablespace on a small tmpfs, which
//    a file fills up, removed after a while (root only: it mounts);
//  - sent back in time: restarted from a copy of its data directory taken seconds before, as after a
//    failover to a standby that had not received the last acknowledged commits.
// Checked: the daemon keeps running through all of them, resumes applying within 5 s after each fault
// ends (the fault's end to the next rise of its stored checkpoints), dead-letters nothing but the
// planted bad records, and the invariants (a)–(d).
import { execFileSync, spawnSync } from "node:child_process";
import { chownSync, mkdirSync, renameSync, rmSync, statfsSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Sql } from "postgres";
import { onCleanup, pg, sleep, startCluster, waitUntil } from "./env.ts";
import { check, type Ctx, KafkaRig, newResult, type Result } from "./rig.ts";

type Kind = "stop" | "lock" | "timeout" | "deadlock" | "disk" | "rewind";

class Rollback extends Error {}

const RESUME_LIMIT_MS = 5000;

export const TARGET_FAULTS = ["stop", "lock", "timeout", "deadlock", "disk", "rewind"] as const;

/** Terminates the daemon's sessions of database `db` (this suite's own set statement_timeout 0 at connect, env.ts); how many. */
export async function terminateSinkSessions(admin: Sql, db: string): Promise<number> {
  const rows = await admin.unsafe(`SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'cdc-sink'`, [db]);
  return rows[0]!.n as number;
}

/** A tmpfs of `mb` MiB mounted at `dir` for the cluster's user, unmounted at cleanup; undefined where mounting is not allowed. */
function smallDisk(dir: string, mb: number): string | undefined {
  if (process.getuid?.() !== 0) return undefined;
  mkdirSync(dir, { recursive: true });
  if (spawnSync("mount", ["-t", "tmpfs", "-o", `size=${mb}m,mode=700`, "tmpfs", dir], { stdio: "ignore" }).status !== 0) return undefined;
  onCleanup(() => void spawnSync("umount", ["-l", dir], { stdio: "ignore" }));
  const id = (f: string) => Number(execFileSync("id", [f, "postgres"], { encoding: "utf8" }));
  chownSync(dir, id("-u"), id("-g"));
  return dir;
}

export async function targetFaults(ctx: Ctx, only?: string[]): Promise<Result> {
  const r = newResult("target", "target faults: the analytics PostgreSQL stopped (-m immediate), rows locked, a 1 ms statement_timeout, deadlocks, disk full, sent back in time");
  const long = ctx.mode === "long";
  const plan: Record<Kind, number> = long ? { stop: 20, lock: 5, timeout: 10, deadlock: 10, disk: 3, rewind: 5 } : { stop: 3, lock: 2, timeout: 2, deadlock: 2, disk: 1, rewind: 2 };
  for (const k of TARGET_FAULTS) if (only && !only.includes(k)) plan[k] = 0;
  const unknown = only?.filter((k) => !(TARGET_FAULTS as readonly string[]).includes(k)) ?? [];
  if (unknown.length) throw new Error(`target: unknown fault(s) ${unknown.join(", ")} (${TARGET_FAULTS.join(", ")})`);
  const stopS: [number, number] = long ? [5, 120] : [5, 15];
  const lockMs = long ? 60_000 : 10_000;
  const diskMs = long ? 60_000 : 10_000;
  const burstMs: [number, number] = long ? [3000, 10_000] : [3000, 3000];
  const lockKeys = 10;
  const rate = long ? 1000 : 400;

  // Its own cluster: it is stopped, and started again on the same port and data directory. Durable,
  // unlike the suite's other clusters (fsync, synchronous_commit, full_page_writes off): with
  // synchronous_commit off a crash loses commits PostgreSQL had already acknowledged, rows and
  // checkpoint alike, which a daemon that goes on from its position in memory never reads again.
  const cluster = await startCluster({ settings: { fsync: "on", synchronous_commit: "on", full_page_writes: "on" } });
  // librdkafka's mock keeps about 5 MiB per partition: the long run's 2.4M changes need many for the full replay (d); a real broker keeps all
  const partitions = !long ? 16 : (await ctx.kafka()).kind === "mock" ? 256 : 64;
  const rig = await KafkaRig.create(ctx, "target", { partitions, keys: 2_000, poisonEvery: long ? 20_000 : 3_000, cluster });
  const db = new URL(rig.url).pathname.slice(1);
  const admin = pg(cluster.url(), 1);
  const notes: string[] = [];
  // the analytics table and its index on a disk of their own, which the disk fault fills
  const disk = plan.disk ? smallDisk(join(dirname(cluster.dataDir), "disk"), 256) : undefined;
  if (plan.disk && !disk) {
    notes.push("disk full not injected: mounting a tmpfs needs root");
    plan.disk = 0;
  }
  if (disk) {
    await admin.unsafe(`CREATE TABLESPACE chaos_disk LOCATION '${disk}'`);
    await rig.sql.unsafe(`ALTER TABLE items SET TABLESPACE chaos_disk; ALTER INDEX items_pkey SET TABLESPACE chaos_disk`);
  }
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
    const terminate = () => terminateSinkSessions(admin, db);

    const kinds: Kind[] = [];
    for (const [k, n] of Object.entries(plan) as Array<[Kind, number]>) for (let i = 0; i < n; i++) kinds.push(k);
    for (let i = kinds.length - 1; i > 0; i--) {
      const j = ctx.rng.int(0, i);
      [kinds[i], kinds[j]] = [kinds[j]!, kinds[i]!];
    }

    const resumes: Record<Kind, number[]> = { stop: [], lock: [], timeout: [], deadlock: [], disk: [], rewind: [] };
    const late: string[] = [];
    const done: Record<Kind, number> = { stop: 0, lock: 0, timeout: 0, deadlock: 0, disk: 0, rewind: 0 };
    let deadlocks = 0;
    let deadlocksOurs = 0;
    let diskErrors = 0;
    let lostRecords = 0n;
    let rewindsSeen = 0;
    let rewindsLosing = 0;
    let deadlocksFormed = 0;
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
      let rewound: (() => void) | undefined;
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
      } else if (kind === "deadlock") {
        const errs0 = count(/"code":"40P01"/g);
        let formed = false;
        await locker
          .begin(async (tx) => {
            await tx.unsafe(`SELECT id FROM items WHERE id IN (SELECT id FROM items ORDER BY random() LIMIT 50) ORDER BY id FOR UPDATE`);
            formed = await waitUntil(
              "the daemon waiting on a locked row",
              async () => ((await mon.unsafe(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'cdc-sink' AND wait_event_type = 'Lock'`, [db]))[0]!.n as number) > 0,
              20_000,
              50,
            ).then(
              () => true,
              () => false,
            );
            // the daemon's transaction holds its checkpoint rows: wanting them closes the cycle
            if (formed) deadlocksFormed++;
            if (formed) await tx.unsafe(`SELECT 1 FROM cdc_sink.checkpoints WHERE stream = $1 FOR UPDATE`, [rig.stream]);
            throw new Rollback();
          })
          .catch((e) => {
            if (e instanceof Rollback) return;
            if ((e as { code?: string }).code === "40P01") deadlocksOurs++;
            else throw e;
          });
        endedAt = Date.now();
        await sleep(200);
        const errs = count(/"code":"40P01"/g) - errs0;
        deadlocks += errs;
        what = formed ? `a deadlock with the daemon's transaction: ${errs ? "the daemon's" : "this side's"} cancelled (40P01)` : "the daemon never waited on the locked rows: no deadlock";
      } else if (kind === "disk") {
        const ms = diskMs;
        const errs0 = count(/"code":"53100"/g);
        // packed first: on pages with free space (vacuumed ones) the daemon's updates fit in place and
        // need nothing of the full disk (short runs saw 0 statements fail)
        await rig.sql.unsafe("VACUUM FULL items");
        const free = () => {
          const f = statfsSync(disk!);
          return f.bavail * f.bsize;
        };
        const before = free();
        // the daemon writes to this disk meanwhile: a file of all that was free can fail (ENOSPC); dd takes the rest
        execFileSync("fallocate", ["-l", String(Math.max(4096, before - 8 * 2 ** 20)), join(disk!, "filler")]);
        spawnSync("dd", ["if=/dev/zero", `of=${join(disk!, "filler-rest")}`, "bs=4096"], { stdio: "ignore" });
        const fullAt = Date.now();
        await sleep(ms);
        rmSync(join(disk!, "filler"));
        rmSync(join(disk!, "filler-rest"), { force: true });
        endedAt = Date.now();
        const errs = count(/"code":"53100"/g) - errs0;
        diskErrors += errs;
        what = `the table's disk full (${(before / 2 ** 20).toFixed(0)} MiB filled) for ${((endedAt - fullAt) / 1000).toFixed(0)} s, ${errs} statement(s) of the daemon failed with 53100`;
      } else if (kind === "rewind") {
        const seen0 = count(/"code":"CHECKPOINT_LOST"/g);
        const saved = `${cluster.dataDir}.saved`;
        cluster.stop();
        execFileSync("cp", ["-a", cluster.dataDir, saved]);
        if (disk) execFileSync("cp", ["-a", disk, `${saved}-disk`]);
        cluster.start();
        const copied = await waitUntil("the database reachable", position, 30_000, 50);
        // commits to lose: the daemon applies again, then some seconds more
        await waitUntil("a commit after the copy", async () => ((await position()) ?? 0n) > copied, 30_000, 50).catch(() => undefined);
        await sleep(ctx.rng.int(2000, long ? 20_000 : 5000));
        const reached = await position();
        rig.sampler?.pause();
        cluster.kill();
        rmSync(cluster.dataDir, { recursive: true });
        renameSync(saved, cluster.dataDir);
        if (disk) {
          for (const f of execFileSync("ls", ["-A", disk], { encoding: "utf8" }).split("\n").filter(Boolean)) rmSync(join(disk, f), { recursive: true });
          execFileSync("cp", ["-a", `${saved}-disk/.`, disk]);
          rmSync(`${saved}-disk`, { recursive: true });
        }
        cluster.start();
        rig.sampler?.resume();
        endedAt = Date.now();
        const lost = copied !== undefined && reached !== undefined ? reached - copied : 0n;
        lostRecords += lost;
        if (lost > 0n) rewindsLosing++;
        what = `restarted from a copy: ${lost} records' acknowledged commits gone`;
        rewound = () => {
          if (lost > 0n && count(/"code":"CHECKPOINT_LOST"/g) > seen0) rewindsSeen++;
        };
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
      rewound?.();
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
    const total = Object.values(done).reduce((a, b) => a + b, 0);
    const fmt = (xs: number[]) => (xs.length ? `max ${(Math.max(...xs) / 1000).toFixed(2)} s` : "-");
    const burst = `${burstMs[0] / 1000}${burstMs[1] !== burstMs[0] ? `–${burstMs[1] / 1000}` : ""} s`;
    const injected = [
      plan.stop ? `pg_ctl stop -m immediate for ${stopS[0]}–${stopS[1]} s, then start on the same port and data directory` : "",
      plan.lock ? `one transaction holding SELECT … FOR UPDATE on ${lockKeys} live rows for ${lockMs / 1000} s, then ROLLBACK` : "",
      plan.timeout ? `ALTER DATABASE … SET statement_timeout = '1ms' and pg_terminate_backend of the daemon's sessions for ${burst}, then RESET and terminate again` : "",
      plan.deadlock ? "a transaction locking 50 rows until the daemon's transaction waits on one, then the daemon's checkpoint rows (a deadlock)" : "",
      plan.disk ? `the tablespace of the analytics table and its index (a 256 MiB tmpfs) filled up for ${diskMs / 1000} s` : "",
      plan.rewind ? `restarted from a copy of its data directory taken 2–${long ? 20 : 5} s earlier (a failover to a standby that had not received the last acknowledged commits)` : "",
    ].filter(Boolean);
    r.injected = `into the analytics PostgreSQL only (a cluster of its own, fsync and synchronous_commit on) while a stream flows at ${rate}/s: ${injected.join("; ")}`;
    r.count = total;
    r.countDetail = [
      `${done.stop} stops (${downS.toFixed(0)} s down in all; the daemon logged "analytics database not usable" in ${stopsSeen})`,
      `${done.lock} lock holds (${lockedRows} rows; the daemon waited on them in ${lockBlocked}${lockRetries ? `; ${lockRetries} lock attempt(s) failed and were made again` : ""})`,
      `${done.timeout} timeout bursts (${timeoutErrors} statements cancelled by it; ${terminated} backends terminated)`,
      `${done.deadlock} deadlocks (${deadlocksFormed} formed: the daemon's transaction cancelled ${deadlocks} time(s), this side's ${deadlocksOurs})`,
      `${done.disk} disk-full periods (${diskErrors} statements failed with 53100)`,
      `${done.rewind} rewinds (${lostRecords} records' acknowledged commits lost in ${rewindsLosing}; the daemon noticed (CHECKPOINT_LOST) and read them again in ${rewindsSeen})`,
    ]
      .filter((x) => !x.startsWith("0 "))
      .join(", ");
    check(r, TARGET_FAULTS.filter((k) => plan[k]).map((k) => `${plan[k]} ${k}`).join(", "), TARGET_FAULTS.every((k) => done[k] === plan[k]), TARGET_FAULTS.filter((k) => plan[k]).map((k) => `${k} ${done[k]}`).join(", "));
    check(
      r,
      `resumed applying <= ${RESUME_LIMIT_MS / 1000} s after each fault ended`,
      late.length === 0 && all.length === total,
      late.length ? late.join("; ") : `${TARGET_FAULTS.filter((k) => done[k]).map((k) => `${k} ${fmt(resumes[k])}`).join(", ")} (the fault's end to the next stored checkpoint)`,
    );
    check(
      r,
      "the faults reached the daemon",
      stopsSeen === done.stop && lockBlocked === done.lock && (done.timeout === 0 || timeoutErrors > 0) && deadlocksFormed === done.deadlock && (done.disk === 0 || diskErrors > 0) && rewindsSeen === rewindsLosing && (done.rewind === 0 || rewindsLosing > 0),
      `${stopsSeen} of ${done.stop} stops logged as outages, ${lockBlocked} of ${done.lock} lock holds waited on, ${timeoutErrors} statements cancelled by the 1 ms timeout, ${deadlocksFormed} of ${done.deadlock} deadlocks formed, ${diskErrors} statements failed on the full disk, ${rewindsSeen} of ${rewindsLosing} rewinds that lost commits noticed`,
    );
    const causes = new Map<string, number>();
    for (const x of exits) causes.set(x, (causes.get(x) ?? 0) + 1);
    check(r, "the daemon never exited", exits.length === 0, exits.length ? `it exited ${exits.length} time(s) (each started again): ${[...causes].map(([c, n]) => `${n} × ${c}`).join("; ")}` : "one process throughout");
    check(r, "drained after, SIGTERM exits 0", code === 0, `drained in ${(drainMs / 1000).toFixed(1)} s; exit code ${code}`);
    await rig.finish(r);
    if (lockWaitersMax === 0 && done.lock) r.notes.push("the daemon never waited on a held row lock");
    r.notes.push(...notes);
    if (done.rewind) r.notes.push("(b) starts afresh after each rewind: the database itself went back in time, not the sink");
  } finally {
    supervising = false;
    await supervisor;
    feedStop.abort();
    await feeding?.catch(() => {});
    await rig.close();
    await Promise.all([admin, mon, locker].map((s: Sql) => s.end({ timeout: 1 }).catch(() => {})));
  }
  return r;
}
