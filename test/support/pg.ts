// A throwaway PostgreSQL cluster with wal_level=logical on a free port, started once per test process.
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, readdirSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import postgres from "postgres";
import { onCleanup, tempDir } from "./cleanup.ts";

export function pgBinDir(): string {
  const base = "/usr/lib/postgresql";
  if (existsSync(base)) {
    const versions = readdirSync(base).filter((v) => existsSync(join(base, v, "bin", "initdb"))).sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return join(base, versions[0], "bin");
  }
  throw new Error("no PostgreSQL server binaries found (run scripts/setup.sh)");
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface PgCluster {
  port: number;
  dataDir: string;
  url(db?: string): string;
  /** Creates a fresh database and returns its URL. */
  createDatabase(prefix: string): Promise<string>;
  stop(): void;
  start(): void;
  kill(): void;
}

const isRoot = process.getuid?.() === 0;

function runAs(bin: string, args: string[]): string {
  // initdb and postgres refuse to run as root: run them as the postgres user.
  if (isRoot) return execFileSync("runuser", ["-u", "postgres", "--", bin, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  return execFileSync(bin, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

let dbSeq = 0;

export async function startCluster(opts: { settings?: Record<string, string> } = {}): Promise<PgCluster> {
  const bin = pgBinDir();
  const root = tempDir("cdc-sink-pg-");
  const dataDir = join(root, "data");
  if (isRoot) {
    chmodSync(root, 0o755);
    chownSync(root, Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" })), Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" })));
  }
  runAs(join(bin, "initdb"), ["-D", dataDir, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"]);
  const port = await freePort();
  const settings: Record<string, string> = {
    port: String(port),
    listen_addresses: "'127.0.0.1'",
    unix_socket_directories: `'${root}'`,
    wal_level: "logical",
    // every test file of a run shares this cluster, and a test leaves its slots behind
    max_replication_slots: "200",
    max_wal_senders: "50",
    fsync: "off",
    synchronous_commit: "off",
    full_page_writes: "off",
    max_connections: "200",
    shared_buffers: "256MB",
    ...opts.settings,
  };
  const flags = Object.entries(settings)
    .map(([k, v]) => `-c ${k}=${v}`)
    .join(" ");
  const start = () => runAs(join(bin, "pg_ctl"), ["-D", dataDir, "-w", "-t", "60", "-l", join(root, "log"), "-o", flags, "start"]);
  start();
  const cluster: PgCluster = {
    port,
    dataDir,
    url: (db = "postgres") => `postgres://postgres@127.0.0.1:${port}/${db}`,
    async createDatabase(prefix) {
      const name = `${prefix}_${process.pid}_${++dbSeq}`;
      const sql = postgres(cluster.url(), { max: 1, onnotice: () => {} });
      await sql.unsafe(`CREATE DATABASE ${name}`);
      await sql.end();
      return cluster.url(name);
    },
    stop() {
      runAs(join(bin, "pg_ctl"), ["-D", dataDir, "-w", "-m", "fast", "stop"]);
    },
    start() {
      start();
    },
    kill() {
      runAs(join(bin, "pg_ctl"), ["-D", dataDir, "-m", "immediate", "stop"]);
    },
  };
  // registered after the temp dir, so it runs before the dir is removed
  onCleanup(() => {
    const pgCtl = [join(bin, "pg_ctl"), "-D", dataDir, "-m", "immediate", "stop"];
    spawnSync(isRoot ? "runuser" : pgCtl[0]!, isRoot ? ["-u", "postgres", "--", ...pgCtl] : pgCtl.slice(1), { stdio: "ignore" });
  });
  return cluster;
}

let shared: Promise<PgCluster> | undefined;
/** One cluster shared by every test file of this process; tests isolate themselves by database. */
export function sharedCluster(): Promise<PgCluster> {
  return (shared ??= startCluster());
}
