// Consumer-group rebalance time on the real broker (KRaft Kafka of scripts/stack.sh), per group
// protocol: from an instance joining (its subscribe) or leaving (SIGTERM: it closes its consumer
// and leaves the group) to the moment every member of the group holds partitions and together they
// hold each partition exactly once. Members are processes of their own running the daemon's
// consumer (src/sources/kafka.ts consumerProperties, with what a setting adds), on four topics of
// four partitions like the Debezium topics of the pipeline.
// Settings: classic (librdkafka's defaults: range,roundrobin, eager; 3 s heartbeat, 45 s session),
// classic with cooperative-sticky, classic with a 500 ms heartbeat and 6 s session (with range,
// roundrobin, cooperative-sticky), consumer (KIP-848: the broker assigns; heartbeat and session
// are the broker's, 5 s and 45 s by default, and librdkafka refuses the client-side ones).
// For each, groups of 2 and of 4 instances are formed one instance at a time, then one leaves.
// BENCH_KILL=1 also kills one member of a group of 2 with SIGKILL (its partitions wait for the
// session timeout). BENCH_ROUNDS (1) repeats; BENCH_SETTINGS (a regular expression) filters.
// Uses the stack STACK_DIR names when it runs, else starts one and stops it at the end.
// Prints one line per step and a table; the last line is JSON. Stops every process it started.
import { existsSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KafkaConsumer } from "../src/kafka/index.ts";
import { consumerProperties } from "../src/sources/kafka.ts";
// (test/support/cleanup.ts is imported by run() only: its signal handlers would make a member exit
// on SIGTERM without leaving the group)
let onCleanup: (fn: () => void) => void = () => {};

const ROOT = new URL("../", import.meta.url).pathname;
const TOPICS = 4;
const PARTITIONS = 4;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 1);
const ONLY = new RegExp(process.env.BENCH_SETTINGS ?? "");
const KILL = process.env.BENCH_KILL === "1";
const STEP_TIMEOUT_MS = 90_000;
const QUIET_MS = 1500; // an assignment must hold this long before the next step

interface Setting {
  name: string;
  properties: Record<string, string | number>;
}
const SETTINGS: Setting[] = [
  { name: "classic", properties: {} },
  { name: "classic cooperative-sticky", properties: { "partition.assignment.strategy": "cooperative-sticky" } },
  { name: "classic hb 500ms session 6s", properties: { "heartbeat.interval.ms": 500, "session.timeout.ms": 6000 } },
  { name: "classic roundrobin hb 500ms", properties: { "partition.assignment.strategy": "roundrobin", "heartbeat.interval.ms": 500, "session.timeout.ms": 6000 } },
  { name: "classic coop-sticky hb 500ms", properties: { "partition.assignment.strategy": "cooperative-sticky", "heartbeat.interval.ms": 500, "session.timeout.ms": 6000 } },
  { name: "consumer (KIP-848)", properties: { "group.protocol": "consumer" } },
];

// --- a member: one consumer in a process of its own; JSON lines on stdout ---------------------
async function member(bootstrap: string, group: string, topics: string[], properties: Record<string, string | number>) {
  const say = (o: object) => process.stdout.write(`${JSON.stringify({ t: performance.timeOrigin + performance.now(), ...o })}\n`);
  const c = new KafkaConsumer(
    consumerProperties({ bootstrap_servers: bootstrap, group_id: group, properties } as unknown as Parameters<typeof consumerProperties>[0]),
    { onError: (e) => say({ ev: "error", code: e.code, message: e.message }) },
  );
  let stopping = false;
  process.on("SIGTERM", () => (stopping = true));
  c.subscribe(topics);
  say({ ev: "subscribed" });
  while (!stopping) {
    const b = await c.consume(1000, 20);
    if (b.rebalances.length) say({ ev: "assignment", parts: c.assignment().map((p) => `${p.topic}/${p.partition}`) });
  }
  say({ ev: "leaving" });
  await c.close();
  say({ ev: "closed" });
  process.exit(0);
}

if (import.meta.main && process.argv[2] === "member") {
  const [bootstrap, group, topics, props] = process.argv.slice(3) as [string, string, string, string];
  await member(bootstrap, group, topics.split(","), JSON.parse(props));
}

// --- the stack ------------------------------------------------------------------------------------
function stackEnv(dir: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const l of readFileSync(`${dir}/env`, "utf8").split("\n")) {
    const m = /^export ([A-Z_]+)='(.*)'$/.exec(l);
    if (m) env[m[1]!] = m[2]!;
  }
  return env;
}

/** the group protocols the broker serves (group.coordinator.rebalance.protocols, from its log) */
function brokerProtocols(dir: string): string {
  const log = readFileSync(`${dir}/kafka/kafka.log`, "utf8");
  return /group\.coordinator\.rebalance\.protocols = \[([^\]]*)\]/.exec(log)?.[1] ?? "unknown";
}

function stack(): { bootstrap: string; dir: string } {
  const given = process.env.STACK_DIR;
  if (given && existsSync(`${given}/env`)) return { bootstrap: stackEnv(given).BOOTSTRAP_SERVERS!, dir: given };
  const dir = join(tmpdir(), `cdc-sink-bench-stack-${process.pid}`);
  onCleanup(() => void Bun.spawnSync(["bash", `${ROOT}scripts/stack.sh`, "down", "--dir", dir], { stdout: "ignore", stderr: "ignore" }));
  const t = performance.now();
  const up = Bun.spawnSync(["bash", `${ROOT}scripts/stack.sh`, "up", "--dir", dir], { stdout: "pipe", stderr: "pipe" });
  if (up.exitCode !== 0) throw new Error(`scripts/stack.sh up failed:\n${up.stderr.toString()}`);
  console.error(`stack up in ${((performance.now() - t) / 1000).toFixed(1)} s (${dir})`);
  return { bootstrap: stackEnv(dir).BOOTSTRAP_SERVERS!, dir };
}

async function createTopics(bootstrap: string, names: string[]) {
  await Promise.all(
    names.map(async (topic) => {
      const p = Bun.spawn(
        ["bash", `${ROOT}scripts/stack.sh`, "tool", "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bootstrap, "--create", "--topic", topic, "--partitions", String(PARTITIONS), "--replication-factor", "1"],
        { stdout: "pipe", stderr: "pipe" },
      );
      const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()]);
      if (code !== 0) throw new Error(`creating ${topic} failed: ${err}`);
    }),
  );
}

// --- the group, seen from its members' lines -----------------------------------------------------
interface Member {
  id: number;
  proc: ReturnType<typeof Bun.spawn>;
  joinedAt?: number;
  leftAt?: number;
  parts: Set<string>;
  alive: boolean;
  errors: string[];
}

class Group {
  members: Member[] = [];
  changed: () => void = () => {};
  constructor(
    readonly bootstrap: string,
    readonly id: string,
    readonly topics: string[],
    readonly setting: Setting,
    readonly all: Set<string>,
  ) {}

  spawn(): Member {
    const proc = Bun.spawn([process.execPath, import.meta.path, "member", this.bootstrap, this.id, this.topics.join(","), JSON.stringify(this.setting.properties)], {
      stdout: "pipe",
      stderr: "inherit",
      cwd: ROOT,
    });
    onCleanup(() => {
      try {
        proc.kill("SIGKILL");
      } catch {
        /* gone */
      }
    });
    const m: Member = { id: this.members.length + 1, proc, parts: new Set(), alive: true, errors: [] };
    this.members.push(m);
    void (async () => {
      let buf = "";
      const dec = new TextDecoder();
      for await (const chunk of proc.stdout as ReadableStream<Uint8Array>) {
        buf += dec.decode(chunk);
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          const ev = JSON.parse(line) as { t: number; ev: string; parts?: string[]; code?: string };
          if (ev.ev === "subscribed") m.joinedAt = ev.t;
          if (ev.ev === "assignment") m.parts = new Set(ev.parts);
          if (ev.ev === "error") m.errors.push(ev.code!);
          this.lastEventAt = ev.t;
          this.changed();
        }
      }
      m.alive = false;
      m.parts = new Set();
      this.changed();
    })();
    return m;
  }
  lastEventAt = 0;

  /** every live member holds partitions; together each partition exactly once */
  complete(): boolean {
    const live = this.members.filter((m) => m.alive && m.leftAt === undefined);
    if (!live.length || live.some((m) => m.parts.size === 0)) return false;
    const seen = new Set<string>();
    for (const m of live)
      for (const p of m.parts) {
        if (seen.has(p)) return false;
        seen.add(p);
      }
    return seen.size === this.all.size;
  }

  /** resolves with the time the group became complete (and stayed so QUIET_MS) */
  async settled(): Promise<number> {
    const end = Date.now() + STEP_TIMEOUT_MS;
    for (;;) {
      if (Date.now() > end) throw new Error(`group ${this.id} not settled in ${STEP_TIMEOUT_MS} ms: ${this.describe()}`);
      if (this.complete()) {
        const at = this.lastEventAt;
        await new Promise<void>((r) => setTimeout(r, QUIET_MS));
        if (this.complete() && this.lastEventAt === at) return at;
        continue;
      }
      await new Promise<void>((r) => {
        this.changed = r;
        setTimeout(r, 200);
      });
    }
  }

  describe(): string {
    return this.members.map((m) => `#${m.id}${m.alive ? "" : " (gone)"}: ${m.parts.size} partitions${m.errors.length ? ` errors ${[...new Set(m.errors)].join(",")}` : ""}`).join("; ");
  }

  async stop() {
    await Promise.all(
      this.members.map(async (m) => {
        if (!m.alive) return;
        m.proc.kill("SIGTERM");
        await Promise.race([m.proc.exited, new Promise((r) => setTimeout(r, 10_000))]);
        if (m.alive) m.proc.kill("SIGKILL");
      }),
    );
  }
}

interface Row {
  setting: string;
  size: number;
  round: number;
  step: string;
  ms: number;
}

async function measure(bootstrap: string, topics: string[], all: Set<string>, setting: Setting, size: number, round: number): Promise<Row[]> {
  const group = new Group(bootstrap, `bench-rebalance-${process.pid}-${Date.now()}`, topics, setting, all);
  const rows: Row[] = [];
  const add = (step: string, ms: number) => {
    rows.push({ setting: setting.name, size, round, step, ms: Math.round(ms) });
    console.error(`${setting.name.padEnd(28)} group of ${size}  ${step.padEnd(24)} ${Math.round(ms).toString().padStart(6)} ms   (${group.describe()})`);
  };
  try {
    for (let k = 1; k <= size; k++) {
      const m = group.spawn();
      const at = await group.settled();
      add(`join ${k - 1} -> ${k}`, at - m.joinedAt!);
    }
    // a clean leave: SIGTERM, the member closes its consumer (LeaveGroup)
    const leaving = group.members.at(-1)!;
    leaving.leftAt = performance.timeOrigin + performance.now();
    leaving.proc.kill("SIGTERM");
    add(`leave ${size} -> ${size - 1}`, (await group.settled()) - leaving.leftAt);
    if (KILL && size === 2) {
      const victim = group.members.find((m) => m.alive && m.leftAt === undefined)!;
      const again = group.spawn();
      await group.settled();
      victim.leftAt = performance.timeOrigin + performance.now();
      victim.proc.kill("SIGKILL");
      add(`kill -9 2 -> 1`, (await group.settled()) - victim.leftAt);
      void again;
    }
  } finally {
    await group.stop();
  }
  return rows;
}

export async function run() {
  ({ onCleanup } = await import("../test/support/cleanup.ts"));
  const { bootstrap, dir } = stack();
  const protocols = brokerProtocols(dir);
  console.error(`broker ${bootstrap} serves group protocols: ${protocols}`);
  const base = `bench-rebalance-${process.pid}`;
  const topics = Array.from({ length: TOPICS }, (_, i) => `${base}-${i}`);
  await createTopics(bootstrap, topics);
  const all = new Set(topics.flatMap((t) => Array.from({ length: PARTITIONS }, (_, p) => `${t}/${p}`)));
  const rows: Row[] = [];
  for (let round = 1; round <= ROUNDS; round++)
    for (const setting of SETTINGS.filter((s) => ONLY.test(s.name)))
      for (const size of [2, 4]) rows.push(...(await measure(bootstrap, topics, all, setting, size, round)));

  // table: per setting and group size, each step's lowest and highest over the rounds
  const keyOf = (r: Row) => `${r.setting}|${r.size}|${r.step}`;
  const groups = new Map<string, number[]>();
  for (const r of rows) groups.set(keyOf(r), [...(groups.get(keyOf(r)) ?? []), r.ms]);
  const range = (a: number[]) => (Math.min(...a) === Math.max(...a) ? `${a[0]}` : `${Math.min(...a)}-${Math.max(...a)}`);
  console.error(`\n${"setting".padEnd(28)} ${"size".padStart(4)}  ${"step".padEnd(24)} ${"ms".padStart(11)}`);
  for (const [k, v] of groups) {
    const [setting, size, step] = k.split("|") as [string, string, string];
    console.error(`${setting.padEnd(28)} ${size.padStart(4)}  ${step.padEnd(24)} ${range(v).padStart(11)}`);
  }
  return { bench: "rebalance", brokerProtocols: protocols, topics: TOPICS, partitionsPerTopic: PARTITIONS, rounds: ROUNDS, rows };
}
