// The fault suite's environment: the built binary run as a process of its own (in a private network
// namespace when a scenario puts the fault proxy between it and its dependencies), throwaway
// PostgreSQL clusters, Kafka (librdkafka's mock cluster, or the real broker of scripts/stack.sh), and
// the small helpers every scenario uses. Everything started here is registered with
// test/support/cleanup.ts, which stops and removes it when the run ends, also on failure or Ctrl-C.
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync, readlinkSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import postgres, { type Sql } from "postgres";
import { KafkaProducer, MockCluster } from "../../src/kafka/index.ts";
import { ensureBinary } from "../fuzz/run.ts";
import { onCleanup, tempDir } from "../support/cleanup.ts";
import { freePort, type PgCluster, pgBinDir, startCluster } from "../support/pg.ts";

export const ROOT = new URL("../../", import.meta.url).pathname;
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A seeded PRNG (mulberry32): a run is reproducible from its seed. */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

// The suite's own sessions name themselves and turn statement_timeout off at connect (a setting in
// the startup packet wins over ALTER DATABASE … SET): the target scenario's 1 ms bursts are for the
// daemon. They reconnect 100 ms after a failure, not after postgres.js's own backoff (up to 20 s
// after a few failed attempts): what they measure after an outage must not wait on the suite.
export const pg = (url: string, max = 2): Sql =>
  postgres(url, { max, onnotice: () => {}, idle_timeout: 10, connect_timeout: 5, backoff: () => 0.1, connection: { application_name: "cdc-sink-chaos", statement_timeout: 0 } });

export async function waitUntil<T>(what: string, fn: () => Promise<T | undefined | false | null>, timeoutMs: number, everyMs = 100): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${(timeoutMs / 1000).toFixed(0)} s waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------------------------------------
// network namespaces

/** Whether `ip netns` works here (root, iproute2): the fault proxy can then sit on every link. */
export function netnsAvailable(): boolean {
  const name = `cdcprobe${process.pid}`;
  const ok = spawnSync("ip", ["netns", "add", name], { stdio: "ignore" }).status === 0;
  if (ok) spawnSync("ip", ["netns", "del", name], { stdio: "ignore" });
  return ok;
}

/** A private network namespace (its own loopback); removed at cleanup. */
export function createNetns(): string {
  const name = `cdcchaos${process.pid}x${Date.now().toString(36)}`;
  const r = spawnSync("ip", ["netns", "add", name], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip netns add: ${r.stderr}`);
  onCleanup(() => void spawnSync("ip", ["netns", "del", name], { stdio: "ignore" }));
  spawnSync("ip", ["netns", "exec", name, "ip", "link", "set", "lo", "up"], { stdio: "ignore" });
  return name;
}

// ---------------------------------------------------------------------------------------------
// the daemon as a process

export interface DaemonOptions {
  name: string;
  config: string;
  dir: string;
  env?: Record<string, string>;
  /** run inside this network namespace (ip netns exec) */
  netns?: string;
  /** reach its HTTP port through this Unix socket (a daemon inside a namespace) */
  httpSocket?: string;
  httpPort: number;
}

/** One dist/cdc-sink process at a time under a name; restartable; its stderr appended to one log. */
export class DaemonProc {
  proc: ReturnType<typeof Bun.spawn> | undefined;
  starts = 0;
  startedAt = 0;
  readonly logPath: string;
  #logOffset = 0;
  constructor(
    readonly bin: string,
    readonly o: DaemonOptions,
  ) {
    this.logPath = join(o.dir, `${o.name}.log`);
    writeFileSync(this.logPath, "");
    onCleanup(() => {
      if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
        try {
          process.kill(this.proc.pid, "SIGCONT");
        } catch {
          /* gone */
        }
        this.proc.kill("SIGKILL");
      }
    });
  }

  get pid(): number | undefined {
    return this.running ? this.proc!.pid : undefined;
  }
  get running(): boolean {
    return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  start(extraEnv: Record<string, string> = {}): void {
    if (this.running) throw new Error(`${this.o.name} is running`);
    const fd = openSync(this.logPath, "a");
    this.#logOffset = readFileSync(this.logPath).length;
    const cmd = [this.bin, "run", "--config", this.o.config];
    const argv = this.o.netns ? ["ip", "netns", "exec", this.o.netns, ...cmd] : cmd;
    this.proc = Bun.spawn(argv, {
      cwd: this.o.dir,
      stdin: "ignore",
      stdout: "ignore",
      stderr: fd,
      env: { PATH: process.env.PATH ?? "", TMPDIR: this.o.dir, ...this.o.env, ...extraEnv },
    });
    closeSync(fd);
    this.starts++;
    this.startedAt = Date.now();
  }

  /** kill -9; resolves once it is gone. */
  async kill9(): Promise<void> {
    if (!this.proc) return;
    if (this.running) {
      try {
        process.kill(this.proc.pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    await this.proc.exited;
  }

  signal(sig: "SIGSTOP" | "SIGCONT" | "SIGTERM"): void {
    if (this.running) process.kill(this.proc!.pid, sig);
  }

  /** SIGTERM; the exit code, or null when it had to be killed after `timeoutMs`. */
  async stop(timeoutMs = 30_000): Promise<number | null> {
    if (!this.proc) return 0;
    if (!this.running) return this.proc.exitCode;
    this.signal("SIGTERM");
    const r = await Promise.race([this.proc.exited, sleep(timeoutMs).then(() => "timeout" as const)]);
    if (r === "timeout") {
      await this.kill9();
      return null;
    }
    return this.proc.exitCode;
  }

  /** The exit: code, or the signal that ended it. */
  async exited(): Promise<{ code: number | null; signal: string | null }> {
    await this.proc?.exited;
    return { code: this.proc?.exitCode ?? null, signal: (this.proc?.signalCode as string | null) ?? null };
  }

  /** The log of the current (or last) run. */
  log(): string {
    return readFileSync(this.logPath, "utf8").slice(this.#logOffset);
  }
  fullLog(): string {
    return readFileSync(this.logPath, "utf8");
  }

  async http(path: string, timeoutMs = 2000): Promise<Response> {
    const url = `http://127.0.0.1:${this.o.httpPort}${path}`;
    return fetch(url, { signal: AbortSignal.timeout(timeoutMs), ...(this.o.httpSocket ? { unix: this.o.httpSocket } : {}) } as RequestInit);
  }

  /** /readyz: true, false, or undefined when the server does not answer. */
  async ready(timeoutMs = 1000): Promise<{ ready: boolean; body: string } | undefined> {
    try {
      const r = await this.http("/readyz", timeoutMs);
      return { ready: r.status === 200, body: await r.text() };
    } catch {
      return undefined;
    }
  }

  async metrics(timeoutMs = 2000): Promise<string | undefined> {
    try {
      return await (await this.http("/metrics", timeoutMs)).text();
    } catch {
      return undefined;
    }
  }

  /** VmRSS in bytes and open descriptors of the process (from /proc), or undefined. */
  resources(): { rss: number; fds: number } | undefined {
    const pid = this.pid;
    if (!pid) return undefined;
    try {
      const s = readFileSync(`/proc/${pid}/status`, "utf8");
      const rss = Number(/^VmRSS:\s+(\d+)/m.exec(s)?.[1] ?? 0) * 1024;
      const fds = readdirSync(`/proc/${pid}/fd`).filter((f) => {
        try {
          readlinkSync(`/proc/${pid}/fd/${f}`);
          return true;
        } catch {
          return false;
        }
      }).length;
      return { rss, fds };
    } catch {
      return undefined;
    }
  }
}

/** The value of a metric series in Prometheus text (sum over series matching all `labels`). */
export function metricValue(text: string | undefined, name: string, labels: Record<string, string> = {}): number | undefined {
  if (!text) return undefined;
  let found: number | undefined;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const ls = m[2] ?? "";
    if (!Object.entries(labels).every(([k, v]) => ls.includes(`${k}="${v}"`))) continue;
    found = (found ?? 0) + Number(m[3]);
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// Kafka: the mock cluster, or the real broker of a running stack

export interface KafkaEnv {
  kind: "mock" | "broker";
  bootstrap: string;
  /** host:port of every broker (the proxy listens on the same ports inside a namespace) */
  brokers: Array<{ host: string; port: number }>;
  createTopic(topic: string, partitions: number): Promise<void>;
  producer: KafkaProducer;
  mock?: MockCluster;
}

export function stackEnvFile(): string | undefined {
  const dir = process.env.STACK_DIR;
  return dir && existsSync(join(dir, "env")) ? join(dir, "env") : undefined;
}

export async function openKafka(log: (s: string) => void): Promise<KafkaEnv> {
  const envFile = stackEnvFile();
  let bootstrap: string;
  let mock: MockCluster | undefined;
  let createTopic: (t: string, p: number) => Promise<void>;
  if (envFile) {
    const m = /^export BOOTSTRAP_SERVERS='(.*)'$/m.exec(readFileSync(envFile, "utf8"));
    if (!m) throw new Error(`${envFile}: no BOOTSTRAP_SERVERS`);
    bootstrap = m[1]!;
    log(`Kafka: the real broker of the stack at ${process.env.STACK_DIR} (${bootstrap})`);
    createTopic = async (topic, partitions) => {
      const p = Bun.spawn(["bash", `${ROOT}scripts/stack.sh`, "tool", "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bootstrap, "--create", "--topic", topic, "--partitions", String(partitions), "--replication-factor", "1"], { stdout: "pipe", stderr: "pipe" });
      const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()]);
      if (code !== 0) throw new Error(`creating topic ${topic}: ${err.slice(-500)}`);
    };
  } else {
    mock = new MockCluster(1);
    onCleanup(() => mock!.close());
    bootstrap = mock.bootstrapServers;
    log(`Kafka: librdkafka's mock cluster (${bootstrap})`);
    createTopic = async (topic, partitions) => mock!.createTopic(topic, partitions);
  }
  const producer = new KafkaProducer({ "bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10000, "compression.type": "zstd", "enable.idempotence": true, "queue.buffering.max.messages": 500000, "queue.buffering.max.kbytes": 1048576 });
  onCleanup(() => void producer.close(1000).catch(() => {}));
  const brokers = bootstrap.split(",").map((b) => {
    const i = b.lastIndexOf(":");
    return { host: b.slice(0, i), port: Number(b.slice(i + 1)) };
  });
  return { kind: mock ? "mock" : "broker", bootstrap, brokers, createTopic, producer, mock };
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

export { freePort, pgBinDir, startCluster, type PgCluster };

/** Runs a PostgreSQL server binary (pg_ctl …) as the postgres user when we are root. */
export function pgTool(tool: string, args: string[]): { status: number | null; out: string } {
  const bin = join(pgBinDir(), tool);
  const root = process.getuid?.() === 0;
  const r = spawnSync(root ? "runuser" : bin, root ? ["-u", "postgres", "--", bin, ...args] : args, { encoding: "utf8" });
  return { status: r.status, out: `${r.stdout ?? ""}${r.stderr ?? ""}` };
}

export { onCleanup, tempDir };
