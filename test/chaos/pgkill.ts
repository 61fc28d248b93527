// Scenario 3, kill -9 in PostgreSQL-source mode: kills during the initial snapshot (and, by a
// failpoint, right after a copy committed), while a writer commits small transactions on the source,
// and while the sink reads or applies one large transaction; the writer runs throughout.
import type { DaemonProc } from "./env.ts";
import { sleep, waitUntil } from "./env.ts";
import { checkpoints } from "./checks.ts";
import { check, type Ctx, newResult, PgRig, type Result } from "./rig.ts";
import { startWriter, TABLE } from "./workload.ts";

export async function kill9Pg(ctx: Ctx): Promise<Result> {
  const r = newResult("pgkill9", "kill -9, PostgreSQL-source mode");
  const long = ctx.mode === "long";
  const want = long ? { writer: 200, snapshot: 20, copied: 5, big: 20 } : { writer: 30, snapshot: 5, copied: 2, big: 5 };
  const initialRows = long ? 1_000_000 : 300_000;
  const bigRows = long ? 1_000_000 : 100_000;
  const keys = initialRows + 50_000;
  const rig = await PgRig.create(ctx, "pgkill9");
  const t0 = Date.now();
  const got = { writer: 0, snapshot: 0, copied: 0, big: 0 };
  let events = initialRows;
  let writer: ReturnType<typeof startWriter> | undefined;
  try {
    await rig.source.unsafe(`INSERT INTO ${TABLE} (id, v, note) SELECT g, g, 'initial' FROM generate_series(1, ${initialRows}) g`);
    const d = await rig.daemon("a");
    const stored = () => checkpoints(rig.sql, rig.stream).catch(() => new Map<string, bigint>());
    const restart = async (x: DaemonProc) => {
      await x.kill9();
      x.start();
    };

    // the writer runs from the start: what it deletes while a copy is interrupted must not come back
    writer = startWriter(rig.source, ctx.rng, { txPerSecond: long ? 500 : 200, maxOps: 10, keys });

    // during the initial snapshot: the slot's copy has not committed yet when the kill lands
    let attempts = 0;
    d.start();
    while (got.snapshot < want.snapshot && attempts++ < want.snapshot * 6) {
      await waitUntil("the snapshot to start", async () => d.log().includes("replication slot created") || !d.running, 30_000, 20);
      await sleep(ctx.rng.int(20, long ? 3000 : 400));
      const before = (await stored()).get("src#snapshot") === 1n;
      await d.kill9();
      const after = (await stored()).get("src#snapshot") === 1n;
      if (!before && !after) got.snapshot++;
      if (after) break;
      d.start();
    }
    // right after a copy committed, before the snapshot is recorded: the next copy finds its rows,
    // some of them deleted at the source since (a random kill seldom lands there: the copy commits at its end)
    await d.kill9();
    for (let i = 0; i < want.copied && (await stored()).get("src#snapshot") !== 1n; i++) {
      d.start({ CDC_SINK_FAILPOINTS: "after-snapshot-table" });
      await Promise.race([d.exited(), sleep(long ? 600_000 : 180_000)]);
      if (d.log().includes('"failpoint":"after-snapshot-table"')) got.copied++;
      else await d.kill9();
      await sleep(ctx.rng.int(200, 2000));
    }
    if (!d.running) d.start();
    // the next kills are meant for the stream: a copy killed again and again never ends
    await waitUntil("the initial snapshot to complete", async () => (await stored()).get("src#snapshot") === 1n || !d.running, long ? 900_000 : 300_000, 200);
    if (!d.running) throw new Error(`the daemon exited during the snapshot: ${d.log().slice(-400)}`);
    rig.startSamplers(long ? 2000 : 1000);

    // with the writer committing on the source
    for (let i = 0; i < want.writer; i++) {
      await waitUntil("the daemon ready", async () => (await d.ready(500))?.ready || !d.running, 60_000, 100).catch(() => undefined);
      await sleep(ctx.rng.int(100, long ? 4000 : 1500));
      await restart(d);
      got.writer++;
    }

    // inside a large transaction: its commit is past the checkpoint when the kill lands
    for (let i = 0; i < want.big; i++) {
      await waitUntil("the daemon ready", async () => (await d.ready(500))?.ready || !d.running, 60_000, 100).catch(() => undefined);
      // the writer locks rows in random order: the table lock first makes its transactions wait instead of deadlocking with this one
      await rig.source.begin(async (tx) => {
        await tx.unsafe(`LOCK TABLE ${TABLE} IN SHARE ROW EXCLUSIVE MODE`);
        await tx.unsafe(`UPDATE ${TABLE} SET v = v + 1, note = 'big${i}' WHERE id <= ${bigRows}`);
      });
      const end = await rig.walPosition();
      const [{ n }] = (await rig.source.unsafe(`SELECT count(*)::int AS n FROM ${TABLE} WHERE note = 'big${i}'`)) as unknown as [{ n: number }];
      events += n;
      for (let tries = 0; tries < 5; tries++) {
        await sleep(ctx.rng.int(100, long ? 3000 : 1200));
        const inside = ((await stored()).get("src") ?? 0n) < end;
        await restart(d);
        if (inside) {
          got.big++;
          break;
        }
      }
    }
    const stats = await writer.stop();
    writer = undefined;
    events += stats.changes;

    const killPhaseS = (Date.now() - t0) / 1000;
    const drainMs = await rig.caughtUp(await rig.walPosition(), long ? 1_200_000 : 180_000, "cdc_sink", rig.slot, () => (d.running ? undefined : `the daemon exited: ${d.log().slice(-400)}`));
    const code = await d.stop();
    r.seconds = (Date.now() - t0) / 1000;
    r.injected = "SIGKILL of the daemon, restarted at once, a writer committing 1-10-change transactions on the source throughout: during the initial snapshot, in the stream, and while a large transaction is read or applied";
    r.count = got.snapshot + got.copied + got.writer + got.big;
    r.countDetail = `${got.snapshot} during the initial snapshot (${initialRows} rows), ${got.copied} right after its copy committed (failpoint), ${got.writer} with the writer running, ${got.big} inside a ${bigRows}-row transaction`;
    const log = d.fullLog();
    const copies = log.match(/"msg":"replication slot created"/g)?.length ?? 0;
    const pruned = [...log.matchAll(/"msg":"snapshot removed[^\n]*"rows":(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
    r.notes.push(`the snapshot was started ${copies} times; copies taken again removed ${pruned} rows an interrupted one left and the source had deleted since`);
    r.events = events;
    check(r, `${want.snapshot} kills during the snapshot`, got.snapshot >= want.snapshot, `${got.snapshot} in ${attempts} attempts`);
    check(r, `${want.copied} kills right after a copy committed`, got.copied >= want.copied, `${got.copied}`);
    check(r, `${want.writer} kills with a writer`, got.writer >= want.writer, `${got.writer}; writer: ${stats.transactions} transactions, ${stats.changes} changes, ${stats.errors} errors`);
    check(r, `${want.big} kills inside a large transaction`, got.big >= want.big, `${got.big}`);
    check(r, "caught up after the last kill, SIGTERM exits 0", code === 0, `kill phase ${killPhaseS.toFixed(0)} s; caught up in ${(drainMs / 1000).toFixed(1)} s; exit code ${code}`);
    await rig.finish(r);
  } finally {
    await writer?.stop();
    await rig.close();
  }
  return r;
}
