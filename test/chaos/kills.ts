// Scenario 1, kill -9 in Kafka mode, and scenario 2, crashes at chosen points (failpoints).
import type { DaemonProc } from "./env.ts";
import { sleep, waitUntil } from "./env.ts";
import { ensureStateTables } from "../../src/sink/state.ts";
import { check, type Ctx, KafkaRig, newResult, type Result } from "./rig.ts";

type KillState = "start-up" | "join" | "seek" | "running";

/** Where in its life the instance is: before it subscribed, joining, assigned but seeking, or applying. */
async function stateOf(d: DaemonProc): Promise<KillState> {
  const log = d.log();
  const ready = (await d.ready(300))?.ready ?? false;
  if (ready) return log.includes("partitions assigned") ? "running" : "seek";
  return log.includes('"subscribed"') ? "join" : "start-up";
}

/**
 * Offers `total` changes in bursts at `rate` per second (`burst` changes each), spaced so the last
 * lands about `spreadS` seconds after the start; resolves with each burst's rate.
 */
async function feedBursts(rig: KafkaRig, total: number, rate: number, burst: number, spreadS: number, signal: AbortSignal): Promise<{ events: number; rates: number[] }> {
  const bursts = Math.ceil(total / burst);
  const gapMs = bursts > 1 ? (spreadS * 1000) / (bursts - 1) : 0;
  const t0 = Date.now();
  let events = 0;
  const rates: number[] = [];
  for (let i = 0; i < bursts && !signal.aborted; i++) {
    // generated in the gap: the burst's rate is then what reaches the broker, not the JSON encoding
    const next = rig.workload.prepare(Math.min(burst, total - events));
    const wait = t0 + i * gapMs - Date.now();
    if (wait > 0) await sleep(wait);
    const f = await rig.workload.offer(next, rate);
    events += f.events;
    if (f.events >= rate / 2) rates.push(f.events / f.seconds);
  }
  return { events, rates };
}

/** The bursts' rates: the slowest, the median, and those under 95 % of 20k/s. */
function burstRates(rates: number[]): { slowest: number; text: string } {
  const sorted = [...rates].sort((a, b) => a - b);
  const slow = sorted.filter((r) => r < 19_000).map(Math.round);
  const slowest = sorted[0] ?? 0;
  return { slowest, text: `the slowest at ${Math.round(slowest)}/s (median ${Math.round(sorted[sorted.length >> 1] ?? 0)}/s; under 19k/s: ${slow.length ? slow.join(", ") : "none"})` };
}

export async function kill9Kafka(ctx: Ctx): Promise<Result> {
  const r = newResult("kill9", "kill -9, Kafka mode");
  const long = ctx.mode === "long";
  const kills = long ? 600 : 40;
  const total = long ? 2_000_000 : 80_000;
  const limitS = long ? 3600 : 300;
  const mock = (await ctx.kafka()).kind === "mock";
  // librdkafka's mock keeps about 5 MiB per partition (silently dropping the oldest): enough
  // partitions keep every record readable by the full replay (d); a real broker keeps all
  const partitions = !long ? 24 : mock ? 256 : 64;
  const rig = await KafkaRig.create(ctx, "kill9", { partitions, keys: long ? 40_000 : 6_000, poisonEvery: long ? 100_000 : 20_000 });
  const t0 = Date.now();
  try {
    rig.startSampler(long ? 1000 : 250);
    // A real broker's shortest session is 6 s, and a group waits it out for every killed member
    // before it rebalances: as static members (group.instance.id) a restarted instance takes its
    // partitions back at once. The mock's 3 s sessions do without.
    const member = (name: string) => (mock ? {} : { properties: { "group.instance.id": `${rig.group}-${name}` } });
    const inst = [await rig.daemon("a", member("a")), await rig.daemon("b", member("b"))];
    for (const d of inst) d.start();
    const feedStop = new AbortController();
    // bursts spread over about the time the kills take on the mock (2.5–4 s a kill); the kills go on
    // until the last burst is offered (static members on a real broker restart in about 1.5 s).
    // Paced at 22k/s: a burst's rate counts until its last record is acknowledged, and a broker
    // sharing two cores with the restarts takes up to 0.3 s to acknowledge the tail
    const feeding = feedBursts(rig, total, 22_000, 40_000, kills * (long ? 4 : 1.6), feedStop.signal);
    let fedAll = false;
    void feeding.then(
      () => (fedAll = true),
      () => (fedAll = true),
    );
    const by: Record<KillState, number> = { "start-up": 0, join: 0, seek: 0, running: 0 };
    let done = 0;
    const startedAt = new Map<DaemonProc, number>();
    // how long a restarted instance takes to be ready (measured below): early kills are drawn within it
    let readyMs = 2500;
    const kill = async (d: DaemonProc) => {
      by[await stateOf(d)]++;
      await d.kill9();
      done++;
      d.start();
      startedAt.set(d, Date.now());
    };
    while (done < kills || !fedAll) {
      const victim = ctx.rng.pick(inst);
      if (!victim.running) victim.start();
      if (ctx.rng.chance(0.35)) {
        // a kill in its start-up, group join or seek: at a random moment of the next start
        await kill(victim);
        if (done >= kills && fedAll) break;
        await sleep(ctx.rng.int(30, Math.max(300, readyMs)));
        await kill(victim);
      } else {
        const wasReady = (await victim.ready(500))?.ready;
        await waitUntil("an instance ready", async () => (await victim.ready(500))?.ready, 60_000, 100).catch(() => undefined);
        const since = startedAt.get(victim);
        if (!wasReady && since !== undefined) readyMs = 0.8 * readyMs + 0.2 * (Date.now() - since);
        await sleep(ctx.rng.int(100, long ? 3000 : 1500));
        await kill(victim);
      }
      if ((Date.now() - t0) / 1000 > limitS) break;
      if (done % 25 === 0) {
        const p = await rig.progress();
        ctx.log(`kill9: ${done} kills, ${p.applied} of ${p.total} records applied`);
      }
    }
    const killPhaseS = (Date.now() - t0) / 1000;
    const fed = await feeding;
    const drainMs = await rig.drained(long ? 1_200_000 : 240_000, rig.group, () => (inst.some((d) => !d.running) ? `an instance exited: ${inst.find((d) => !d.running)!.log().slice(-400)}` : undefined));
    // SIGTERM goes to instances past their start-up (one killed last was started again just now)
    await waitUntil("both instances ready", async () => (await Promise.all(inst.map((d) => d.ready(500)))).every((x) => x?.ready), 60_000, 100).catch(() => undefined);
    const codes = await Promise.all(inst.map(async (d) => ((await d.stop()) ?? `${(await d.exited()).signal ?? "killed after 30 s"}`)));
    r.seconds = (Date.now() - t0) / 1000;
    const early = by["start-up"] + by.join + by.seek;
    r.injected = "SIGKILL of one of two group members at a random moment, restarted at once";
    r.count = done;
    r.countDetail = `${by.running} while applying, ${by["start-up"]} in start-up, ${by.join} in group join, ${by.seek} in seek (${((100 * early) / done).toFixed(0)} %)`;
    check(r, `${kills} kills`, done >= kills, `${done} in ${killPhaseS.toFixed(0)} s (limit ${limitS} s)`);
    check(r, "a fifth in start-up, join or seek", early * 5 >= done, `${early} of ${done}`);
    const rates = burstRates(fed.rates);
    check(r, "offered at >= 20k events/s", rates.slowest >= 20_000 * 0.95, `${fed.events} changes (+ ${rig.workload.tombstones} tombstones, ${rig.workload.planted.size} planted bad records) in ${fed.rates.length} bursts, ${rates.text}`);
    if (long) check(r, ">= 2M events with deletes and tombstones", rig.workload.events >= 2_000_000, `${rig.workload.events} changes, ${rig.workload.deletes} deletes, ${rig.workload.tombstones} tombstones`);
    check(r, "drained after the last kill, SIGTERM exits 0", codes.every((c) => c === 0), `drained in ${(drainMs / 1000).toFixed(1)} s; exit codes ${codes.join(", ")}`);
    await rig.finish(r);
  } finally {
    await rig.close();
  }
  return r;
}

export const FAILPOINTS = ["after-fetch", "mid-decode", "after-begin", "commit-sent", "after-commit", "mid-dead-letters", "during-revoke", "during-drain"] as const;

export async function failpoints(ctx: Ctx, only?: string[]): Promise<Result> {
  const r = newResult("failpoints", "crashes at chosen points");
  const long = ctx.mode === "long";
  const per = long ? 25 : 2;
  const points = FAILPOINTS.filter((p) => !only || only.includes(p));
  // librdkafka's mock keeps about 5 MiB per partition and silently drops the oldest beyond: the
  // background rate and the partitions keep every record readable by the full replay (d)
  const rig = await KafkaRig.create(ctx, "failpoints", { partitions: long ? 32 : 16, keys: 5_000, poisonEvery: 400 });
  const t0 = Date.now();
  const counts: Record<string, number> = {};
  const failures: string[] = [];
  try {
    rig.startSampler(300);
    await rig.workload.feed(20_000, 20_000);
    const feedStop = new AbortController();
    const feeding = rig.workload.feed(Number.MAX_SAFE_INTEGER, long ? 500 : 300, feedStop.signal);
    const helper = await rig.daemon("helper");
    for (const point of points) {
      counts[point] = 0;
      const armed = await rig.daemon(`armed-${point}`);
      for (let i = 0; i < per; i++) {
        const spec = point === "during-drain" ? point : `${point}@${ctx.rng.int(1, 3)}`;
        armed.start({ CDC_SINK_FAILPOINTS: spec });
        const deadline = Date.now() + 90_000;
        if (point === "during-revoke" || point === "during-drain") await waitUntil(`${point}: the armed instance ready`, async () => (await armed.ready(500))?.ready || !armed.running, 60_000).catch(() => undefined);
        if (point === "during-drain") {
          await sleep(ctx.rng.int(100, 1500));
          armed.signal("SIGTERM");
        }
        while (armed.running && Date.now() < deadline) {
          if (point === "during-revoke") {
            // a rebalance: the helper joins, or leaves
            if (helper.running) await helper.stop();
            else helper.start();
            for (let w = 0; w < 40 && armed.running; w++) await sleep(100);
          } else await sleep(100);
        }
        if (armed.running) {
          failures.push(`${point} (${spec}): still running after 90 s`);
          await armed.kill9();
          continue;
        }
        const exit = await armed.exited();
        const named = armed.log().includes(`"failpoint":"${point}"`);
        if (exit.signal === "SIGKILL" && named) counts[point]!++;
        else failures.push(`${point} (${spec}): exited ${exit.code ?? exit.signal}${named ? "" : ", the failpoint not in its log"}: ${armed.log().slice(-300)}`);
      }
      ctx.log(`failpoints: ${point}: ${counts[point]} self-kill(s)`);
    }
    if (helper.running) await helper.stop();
    feedStop.abort();
    await feeding;
    const clean = await rig.daemon("clean");
    const backlog = await rig.progress();
    ctx.log(`failpoints: draining ${backlog.total - backlog.applied} records left behind`);
    clean.start();
    const drainMs = await rig.drained(long ? 1_200_000 : 180_000, rig.group, () => (clean.running ? undefined : `exited: ${clean.log().slice(-400)}`));
    const code = await clean.stop();
    r.seconds = (Date.now() - t0) / 1000;
    r.injected = "the process SIGKILLs itself at a failpoint (CDC_SINK_FAILPOINTS), restarted without it";
    r.count = Object.values(counts).reduce((a, b) => a + b, 0);
    r.countDetail = points.map((p) => `${p} ${counts[p]}`).join(", ");
    check(r, `${per} self-kills at each of ${points.length} points`, points.every((p) => counts[p] === per), failures.length ? failures.slice(0, 3).join(" | ") : r.countDetail);
    check(r, "drained after, SIGTERM exits 0", code === 0, `drained in ${(drainMs / 1000).toFixed(1)} s; exit code ${code}`);
    await rig.finish(r);
  } finally {
    await rig.close();
  }
  return r;
}

/**
 * Scenario 4, zombies: instance A is SIGSTOPped for longer than the session timeout, B takes all
 * partitions over (claims them, commits), then A is resumed. The fence (sink/fence.ts) must drop
 * whatever A had in flight; A rejoins and the group goes on. Each instance logs in as a role of its
 * own, and triggers log every checkpoint write and claim with its session_user: checked, every stop
 * led to a takeover, the zombie committed nothing on a partition after B's first commit on it
 * (attribution, below), stored checkpoints never went backwards (sampled), and the invariants.
 */
export async function zombies(ctx: Ctx): Promise<Result> {
  const r = newResult("zombies", "zombies: SIGSTOP past the session timeout, another instance takes over, SIGCONT");
  const long = ctx.mode === "long";
  const stops = long ? 30 : 5;
  const rig = await KafkaRig.create(ctx, "zombies", { partitions: 16, keys: 5_000, poisonEvery: 0 });
  const t0 = Date.now();
  const back: string[] = [];
  const seen = new Map<string, bigint>();
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const rows = await rig.sql.unsafe(`SELECT part, position::text AS p FROM cdc_sink.checkpoints WHERE stream = $1`, [rig.stream]).catch(() => []);
      for (const row of rows) {
        const p = BigInt(row.p as string);
        const prev = seen.get(row.part as string);
        if (prev !== undefined && p < prev && back.length < 10) back.push(`${row.part}: ${p} after ${prev}`);
        if (prev === undefined || p > prev) seen.set(row.part as string, p);
      }
      await sleep(100);
    }
  })();
  const generations = async () =>
    new Map((await rig.sql.unsafe(`SELECT part, generation::text AS g FROM cdc_sink.claims WHERE stream = $1`, [rig.stream])).map((x) => [x.part as string, BigInt(x.g as string)]));
  try {
    const roles = [`${rig.group}_a`, `${rig.group}_b`];
    await installAudit(rig, roles);
    const asRole = (role: string) => Object.assign(new URL(rig.url), { username: role }).toString();
    rig.startSampler(300);
    const inst = [await rig.daemon("a", { url: asRole(roles[0]!) }), await rig.daemon("b", { url: asRole(roles[1]!) })];
    for (const d of inst) d.start();
    await rig.workload.feed(10_000, 10_000);
    const feedStop = new AbortController();
    const feeding = rig.workload.feed(Number.MAX_SAFE_INTEGER, long ? 1000 : 500, feedStop.signal);
    let takeovers = 0;
    const slow: string[] = [];
    const stopped: Stop[] = [];
    for (let i = 0; i < stops; i++) {
      await waitUntil("both instances ready", async () => (await Promise.all(inst.map((d) => d.ready(500)))).every((x) => x?.ready), 60_000, 100).catch(() => undefined);
      await sleep(ctx.rng.int(200, 2000));
      const z = ctx.rng.chance(0.5) ? 0 : 1;
      const zombie = inst[z]!;
      const before = await generations();
      zombie.signal("SIGSTOP");
      const stoppedAt = Date.now();
      try {
        await waitUntil(
          "the other instance to claim every partition",
          async () => {
            const now = await generations();
            return now.size === 16 && [...now].every(([part, g]) => g > (before.get(part) ?? 0n));
          },
          60_000,
          200,
        );
        takeovers++;
        await sleep(ctx.rng.int(500, 2500));
      } catch (e) {
        slow.push(`stop ${i + 1}: ${(e as Error).message}`);
      }
      ctx.log(`zombies: stop ${i + 1}: taken over after ${((Date.now() - stoppedAt) / 1000).toFixed(1)} s; resuming the zombie`);
      zombie.signal("SIGCONT");
      stopped.push({ zombie: roles[z]!, other: roles[1 - z]!, stoppedAt, resumedAt: Date.now() });
    }
    feedStop.abort();
    await feeding;
    const drainMs = await rig.drained(240_000, rig.group, () => (inst.some((d) => !d.running) ? `an instance exited: ${inst.find((d) => !d.running)!.log().slice(-400)}` : undefined));
    await waitUntil("both instances ready", async () => (await Promise.all(inst.map((d) => d.ready(500)))).every((x) => x?.ready), 60_000, 100).catch(() => undefined);
    const codes = await Promise.all(inst.map(async (d) => ((await d.stop()) ?? `${(await d.exited()).signal ?? "killed after 30 s"}`)));
    sampling = false;
    await sampler;
    const fenced = inst.reduce((n, d) => n + (d.fullLog().match(/since this one did: the batch is dropped/g)?.length ?? 0), 0);
    const a = await attribute(rig, roles, stopped);
    r.seconds = (Date.now() - t0) / 1000;
    r.injected = "SIGSTOP of one of two group members until the other has claimed all 16 partitions (session timeout 3 s on the mock), then SIGCONT";
    r.count = stops;
    r.countDetail = `${takeovers} takeovers; ${fenced} batch(es) of a resumed zombie fenced (dropped uncommitted); commits: ${a.perInstance}`;
    check(r, `${stops} stops, each taken over`, takeovers === stops, slow.length ? slow.join(" | ") : `${takeovers} of ${stops}`);
    check(
      r,
      "the zombie committed nothing on a partition after the other's first commit on it",
      a.late === 0,
      `${a.late} late; per stop, zombie's partition commits after the stop and before the other's first commit on that partition (allowed) / after it (must be 0): ${a.perStop}${a.examples.length ? `; ${a.examples.join("; ")}` : ""}`,
    );
    check(r, "stored checkpoints never went backwards", back.length === 0, back.length ? back.join("; ") : `${seen.size} partitions sampled every 100 ms`);
    check(r, "drained after, SIGTERM exits 0", codes.every((c) => c === 0), `drained in ${(drainMs / 1000).toFixed(1)} s; exit codes ${codes.join(", ")}`);
    await rig.finish(r);
  } finally {
    sampling = false;
    await sampler;
    await rig.close();
  }
  return r;
}

interface Stop {
  zombie: string;
  other: string;
  stoppedAt: number;
  resumedAt: number;
}

/**
 * A login role per instance and triggers logging, into public.chaos_audit, every checkpoint write
 * (each committed batch writes one per partition; a rolled-back one leaves none) and every claim,
 * with session_user and the claim generation current when the checkpoint row was written.
 */
async function installAudit(rig: KafkaRig, roles: string[]): Promise<void> {
  // the daemon's own DDL, so that the triggers are in place before its first claim
  await ensureStateTables(rig.sql, "cdc_sink");
  for (const role of roles) await rig.sql.unsafe(`CREATE ROLE "${role}" LOGIN SUPERUSER`);
  await rig.sql.unsafe(`
    CREATE TABLE public.chaos_audit (id bigserial PRIMARY KEY, kind text NOT NULL, stream text NOT NULL, part text NOT NULL,
      old_position bigint, new_position bigint, generation bigint, usr text NOT NULL DEFAULT session_user,
      txid bigint NOT NULL DEFAULT txid_current(), at timestamptz NOT NULL DEFAULT clock_timestamp());
    CREATE FUNCTION public.chaos_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_TABLE_NAME = 'claims' THEN
        INSERT INTO public.chaos_audit (kind, stream, part, generation) VALUES ('claim', NEW.stream, NEW.part, NEW.generation);
      ELSE
        INSERT INTO public.chaos_audit (kind, stream, part, old_position, new_position, generation)
        VALUES ('commit', NEW.stream, NEW.part, CASE WHEN TG_OP = 'UPDATE' THEN OLD.position END, NEW.position,
          (SELECT generation FROM cdc_sink.claims c WHERE c.stream = NEW.stream AND c.part = NEW.part));
      END IF;
      RETURN NULL;
    END $$;
    CREATE TRIGGER chaos_audit AFTER INSERT OR UPDATE ON cdc_sink.checkpoints FOR EACH ROW EXECUTE FUNCTION public.chaos_audit_row();
    CREATE TRIGGER chaos_audit AFTER INSERT OR UPDATE ON cdc_sink.claims FOR EACH ROW EXECUTE FUNCTION public.chaos_audit_row();`);
}

/**
 * Commits are ordered per partition by the audit's id: each apply transaction holds its checkpoint
 * row locked from before its trigger runs until it commits, so ids taken on one row follow commit
 * order (clock_timestamp() would too, but only as far as the clock; commit timestamps would need
 * track_commit_timestamp). Each zombie commit at or after a stop is judged against the latest stop
 * of that instance before it: before the other's first commit on the partition since the stop, it
 * is allowed (a batch in flight, or sent before the claim was seen); after it, it is late unless
 * made under a claim the zombie made since the stop (it rejoined and got the partition back).
 */
async function attribute(rig: KafkaRig, roles: string[], stops: Stop[]): Promise<{ late: number; perInstance: string; perStop: string; examples: string[] }> {
  const rows = (
    await rig.sql.unsafe(
      `SELECT id::int, kind, part, usr, generation::text AS g, txid::text, extract(epoch FROM at)::float8 * 1000 AS ms, old_position::text AS o, new_position::text AS n
       FROM public.chaos_audit WHERE stream = $1 ORDER BY id`,
      [rig.stream],
    )
  ).map((x) => x as unknown as { id: number; kind: string; part: string; usr: string; g: string | null; txid: string; ms: number; o: string | null; n: string });
  const owner = new Map(rows.filter((x) => x.kind === "claim").map((x) => [`${x.part}#${x.g}`, x]));
  const commits = rows.filter((x) => x.kind === "commit");
  const name = (u: string | undefined) => (u === undefined ? "no" : ("ab"[roles.indexOf(u)] ?? u));
  const perInstance = roles.map((u) => `${name(u)} ${new Set(commits.filter((c) => c.usr === u).map((c) => c.txid)).size} transactions`).join(", ");
  const firstOther = new Map<string, number>();
  const counts = stops.map(() => ({ allowed: 0, late: 0 }));
  const examples: string[] = [];
  for (const c of commits) {
    const i = stops.findLastIndex((s) => s.zombie === c.usr && s.stoppedAt <= c.ms);
    if (i < 0) continue;
    const s = stops[i]!;
    const key = `${i}#${c.part}`;
    if (!firstOther.has(key)) firstOther.set(key, commits.find((o) => o.part === c.part && o.usr === s.other && o.ms >= s.stoppedAt)?.id ?? Infinity);
    const claim = owner.get(`${c.part}#${c.g}`);
    const own = claim?.usr === s.zombie && claim.ms >= s.stoppedAt;
    if (c.id < firstOther.get(key)!) counts[i]!.allowed += own ? 0 : 1;
    else if (!own) {
      counts[i]!.late++;
      if (examples.length < 3) examples.push(`stop ${i + 1}: partition ${c.part.slice(c.part.lastIndexOf("/") + 1)} ${c.o} -> ${c.n} at +${((c.ms - s.resumedAt) / 1000).toFixed(1)} s after SIGCONT, under ${name(claim?.usr)}'s claim ${c.g}`);
    }
  }
  return {
    late: counts.reduce((n, x) => n + x.late, 0),
    perInstance,
    perStop: counts.map((x, i) => `stop ${i + 1} (${name(stops[i]!.zombie)}) ${x.allowed}/${x.late}`).join(", "),
    examples,
  };
}
