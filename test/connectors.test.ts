// Connector configs checked against Debezium's documented options, the registration script against a
// local server speaking the Kafka Connect REST API, and, when a real stack is running
// (scripts/stack.sh up; its env file sourced, so STACK_DIR is set), the shipped connectors against
// the real Kafka Connect and Debezium: registered, RUNNING, snapshot and stream on the topics.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { parseConfig } from "../src/config.ts";
import { ROOT } from "./support/harness.ts";

const files = ["ecom-connector.json", "inventory-connector.json"];
const load = (f: string) => JSON.parse(readFileSync(`${ROOT}connectors/${f}`, "utf8")) as { name: string; config: Record<string, string> };

test("connector configs are valid Debezium PostgreSQL connectors with the pipeline's settings", () => {
  for (const f of files) {
    const { name, config: c } = load(f);
    expect(f).toBe(`${name}.json`);
    expect(c["connector.class"]).toBe("io.debezium.connector.postgresql.PostgresConnector");
    expect(c["plugin.name"]).toBe("pgoutput");
    expect(c["topic.prefix"]).toBe(name); // topics are <connector-name>.<schema>.<table>
    expect(c["publication.autocreate.mode"]).toBe("filtered");
    expect(c["snapshot.mode"]).toBe("initial");
    expect(c["decimal.handling.mode"]).toBe("double");
    expect(c["tombstones.on.delete"]).toBe("true");
    expect(Number(c["heartbeat.interval.ms"])).toBeGreaterThan(0);
    for (const side of ["key", "value"]) {
      expect(c[`${side}.converter`]).toBe("org.apache.kafka.connect.json.JsonConverter");
      expect(c[`${side}.converter.schemas.enable`]).toBe("false");
    }
    expect(c["value.converter.replace.null.with.default"]).toBe("false");
    expect(c["slot.name"]).toMatch(/^[a-z0-9_]+$/);
    for (const v of Object.values(c)) expect(typeof v).toBe("string");
  }
  // a slot and a publication of its own per connector
  const [a, b] = files.map(load);
  expect(a!.config["slot.name"]).not.toBe(b!.config["slot.name"]);
  expect(a!.config["publication.name"]).not.toBe(b!.config["publication.name"]);
});

test("credentials come from the DirectoryConfigProvider, never literally", () => {
  for (const f of files) {
    const { config: c } = load(f);
    for (const k of ["database.user", "database.password"]) expect(c[k]).toMatch(/^\$\{directory:\/mnt\/db-credentials:[A-Z_]+\}$/);
    for (const [k, v] of Object.entries(c)) {
      // ${file:/dir/KEY} without the key part is passed on literally by Kafka, silently
      expect(v).not.toMatch(/\$\{file:[^:}]*\}/);
      if (/password|secret/i.test(k)) expect(v.startsWith("${")).toBe(true);
    }
  }
  const worker = readFileSync(`${ROOT}connectors/connect-worker.properties`, "utf8");
  expect(worker).toMatch(/^config\.providers=directory$/m);
  expect(worker).toMatch(/^config\.providers\.directory\.class=org\.apache\.kafka\.common\.config\.provider\.DirectoryConfigProvider$/m);
});

test("every captured table has a mapping in the example sink.toml, and every mapping a captured table", () => {
  const captured = files.flatMap((f) => {
    const { config: c } = load(f);
    return c["table.include.list"]!.split(",").map((t) => `${c["topic.prefix"]}.${t.trim()}`);
  });
  const r = parseConfig(readFileSync(`${ROOT}sink.toml`, "utf8").replace(/^password_file.*$/m, ""));
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  expect(r.config.mappings.map((m) => m.topic).sort()).toEqual(captured.sort());
});

// --- registration against a Kafka Connect REST stand-in ---
type Status = { connector: { state: string; trace?: string }; tasks: Array<{ id: number; state: string; trace?: string }> };
const connectors = new Map<string, { config: Record<string, string>; polls: number }>();
const puts: string[] = [];
let behaviour: (name: string, polls: number) => Status = () => ({ connector: { state: "RUNNING" }, tasks: [{ id: 0, state: "RUNNING" }] });
let server: ReturnType<typeof Bun.serve>;

beforeAll(() => {
  server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      const url = new URL(req.url);
      const m = /^\/connectors\/([^/]+)\/(config|status)$/.exec(url.pathname);
      if (!m) return Response.json({ error_code: 404, message: "Unknown endpoint" }, { status: 404 });
      const name = decodeURIComponent(m[1]!);
      if (m[2] === "config" && req.method === "PUT") {
        const config = (await req.json()) as Record<string, string>;
        if (typeof config !== "object" || !config["connector.class"]) return Response.json({ error_code: 400, message: "Connector config is missing connector.class" }, { status: 400 });
        const existed = connectors.has(name);
        connectors.set(name, { config, polls: 0 });
        puts.push(name);
        return Response.json({ name, config, tasks: [] }, { status: existed ? 200 : 201 });
      }
      if (m[2] === "status" && req.method === "GET") {
        const c = connectors.get(name);
        if (!c) return Response.json({ error_code: 404, message: `No status found for connector ${name}` }, { status: 404 });
        c.polls++;
        return Response.json({ name, ...behaviour(name, c.polls) });
      }
      return Response.json({ error_code: 405, message: "HTTP 405 Method Not Allowed" }, { status: 405 });
    },
  });
});
afterAll(() => server.stop(true));

// the stack's env file sets these; the stand-in tests send the files as shipped unless they say so
const { CONNECT_DB_HOSTS: _h, CONNECT_SECRETS_DIR: _s, CONNECT_CONFIG_OVERRIDES: _o, ...baseEnv } = process.env;
async function register(args: string[], env: Record<string, string> = {}) {
  const p = Bun.spawn(["bash", `${ROOT}scripts/register-connectors.sh`, ...args], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...baseEnv, CONNECT_URL: `http://127.0.0.1:${server.port}`, ...env },
  });
  const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code, out, err };
}

test("registration creates, then updates, and waits until connector and tasks run", async () => {
  connectors.clear();
  behaviour = (_n, polls) => ({ connector: { state: polls < 3 ? "UNASSIGNED" : "RUNNING" }, tasks: polls < 3 ? [] : [{ id: 0, state: "RUNNING" }] });
  const first = await register([]);
  expect(first.code).toBe(0);
  expect(first.out).toContain("created ecom-connector");
  expect(first.out).toContain("created inventory-connector");
  expect(first.out).toContain("ecom-connector RUNNING (1 task(s))");
  expect(connectors.get("ecom-connector")!.config).toEqual(load("ecom-connector.json").config);
  const again = await register([]);
  expect(again.code).toBe(0);
  expect(again.out).toContain("updated ecom-connector");
}, 30_000);

test("a FAILED task prints its trace and fails", async () => {
  connectors.clear();
  behaviour = () => ({
    connector: { state: "RUNNING" },
    tasks: [{ id: 0, state: "FAILED", trace: "org.postgresql.util.PSQLException: FATAL: password authentication failed" }],
  });
  const r = await register([`${ROOT}connectors/ecom-connector.json`]);
  expect(r.code).toBe(1);
  expect(r.err).toContain("ecom-connector FAILED");
  expect(r.err).toContain("task 0: org.postgresql.util.PSQLException: FATAL: password authentication failed");
}, 30_000);

test("a connector that never runs times out with a clear message", async () => {
  connectors.clear();
  behaviour = () => ({ connector: { state: "UNASSIGNED" }, tasks: [] });
  const r = await register(["--timeout", "1", `${ROOT}connectors/inventory-connector.json`]);
  expect(r.code).toBe(1);
  expect(r.err).toContain("timed out after 1 s waiting for inventory-connector to run (state: UNASSIGNED)");
}, 30_000);

test("Connect unreachable fails clearly; --dry-run sends nothing", async () => {
  const r = await register([], { CONNECT_URL: "http://127.0.0.1:1" });
  expect(r.code).toBe(1);
  expect(r.err).toContain("Kafka Connect unreachable at http://127.0.0.1:1");
  const before = puts.length;
  const dry = await register(["--dry-run"]);
  expect(dry.code).toBe(0);
  expect(dry.out).toContain(`PUT http://127.0.0.1:${server.port}/connectors/ecom-connector/config`);
  expect(dry.out).toContain('"database.password": "${directory:/mnt/db-credentials:ECOM_DB_PASSWORD}"');
  expect(puts.length).toBe(before);
}, 30_000);

test("where the databases and secrets really are is given at registration; the shipped JSON stays as it is", async () => {
  connectors.clear();
  behaviour = () => ({ connector: { state: "RUNNING" }, tasks: [{ id: 0, state: "RUNNING" }] });
  const shipped = load("ecom-connector.json").config;
  const r = await register(["--db-host", "ecom-db=127.0.0.1:6543", "--secrets-dir", "/run/stack/secrets/", "--set", "ecom-connector:snapshot.mode=no_data", "--set", "heartbeat.interval.ms=500"], {
    CONNECT_DB_HOSTS: "inventory-db=10.0.0.9:7000",
  });
  expect(r.code).toBe(0);
  const ecom = connectors.get("ecom-connector")!.config;
  expect(ecom).toEqual({
    ...shipped,
    "database.hostname": "127.0.0.1",
    "database.port": "6543",
    "database.user": "${directory:/run/stack/secrets:ECOM_DB_USER}",
    "database.password": "${directory:/run/stack/secrets:ECOM_DB_PASSWORD}",
    "snapshot.mode": "no_data",
    "heartbeat.interval.ms": "500",
  });
  const inv = connectors.get("inventory-connector")!.config;
  expect(inv["database.hostname"]).toBe("10.0.0.9");
  expect(inv["database.port"]).toBe("7000");
  expect(inv["snapshot.mode"]).toBe("initial"); // the override named ecom-connector only
  expect(inv["heartbeat.interval.ms"]).toBe("500");
  expect(r.err).toContain("override ecom-connector: database.hostname = 127.0.0.1 (was ecom-db)");
  const bad = await register(["--db-host", "ecom-db"]);
  expect(bad.code).toBe(64);
  expect(bad.err).toContain("--db-host wants NAME=HOST:PORT");
}, 30_000);

// --- the real stack: Kafka, Kafka Connect and Debezium 3.6.1 (scripts/stack.sh) ---
const stackDir = process.env.STACK_DIR;
const real = stackDir && existsSync(`${stackDir}/env`) ? test : test.skip;
const stackEnv = (): Record<string, string> => {
  const env: Record<string, string> = {};
  for (const l of readFileSync(`${stackDir}/env`, "utf8").split("\n")) {
    const m = /^export ([A-Z_]+)='(.*)'$/.exec(l);
    if (m) env[m[1]!] = m[2]!;
  }
  return env;
};

/** every record of a topic so far: [key, value] as text, value null for a tombstone */
async function topicRecords(bootstrap: string, topic: string, idleMs = 3000): Promise<Array<[string | null, string | null]>> {
  const p = Bun.spawn(
    ["bash", `${ROOT}scripts/stack.sh`, "tool", "org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server", bootstrap, "--topic", topic, "--from-beginning",
      "--timeout-ms", String(idleMs), "--formatter-property", "print.key=true", "--formatter-property", "key.separator=\x1f", "--formatter-property", "null.literal=\x01"],
    { stdout: "pipe", stderr: "pipe" },
  );
  const [out] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return out.split("\n").filter(Boolean).map((l) => {
    const [k, v] = l.split("\x1f") as [string, string];
    return [k === "\x01" ? null : k, v === "\x01" ? null : v];
  });
}

real("the shipped connectors register on the real Kafka Connect, run, and publish the snapshot and the stream", async () => {
  const env = stackEnv();
  const started = performance.now();
  const p = Bun.spawn(["bash", `${ROOT}scripts/register-connectors.sh`], { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
  if (code !== 0) throw new Error(`register-connectors failed: ${out}\n${err}`);
  expect(out).toContain("ecom-connector RUNNING (1 task(s))");
  expect(out).toContain("inventory-connector RUNNING (1 task(s))");
  console.log(`connectors RUNNING ${((performance.now() - started) / 1000).toFixed(1)} s after registration`);

  const { default: postgres } = await import("postgres");
  const ecom = postgres(env.ECOM_DB_URL!, { max: 1, onnotice: () => {} });
  try {
    const ids = (await ecom`SELECT id FROM orders ORDER BY id`).map((r) => Number(r.id));
    const tag = 900_000_000 + Math.floor(Math.random() * 1_000_000);
    const id = (await ecom`INSERT INTO orders (customer_id, status, total_amount) VALUES (${tag}, 'pending', 12.34) RETURNING id`)[0]!.id as string;
    await ecom`UPDATE orders SET status = 'paid' WHERE id = ${id}`;
    await ecom`DELETE FROM orders WHERE id = ${id}`;
    const key = JSON.stringify({ id: Number(id) });
    let recs: Array<[string | null, string | null]> = [];
    for (let i = 0; i < 20; i++) {
      recs = await topicRecords(env.BOOTSTRAP_SERVERS!, "ecom-connector.public.orders");
      if (recs.some(([k, v]) => k === key && v === null)) break;
    }
    // the snapshot (or an earlier stream) holds every row that existed
    const seen = new Set(recs.filter(([, v]) => v !== null).map(([k]) => JSON.parse(k!).id as number));
    for (const i of ids) expect(seen.has(i)).toBe(true);
    expect(recs.some(([, v]) => v !== null && JSON.parse(v).op === "r")).toBe(true);
    // the stream: c, u, d and a tombstone for the new row, in that order, schemaless JSON
    const mine = recs.filter(([k]) => k === key).map(([, v]) => (v === null ? "tombstone" : (JSON.parse(v) as { op: string }).op));
    // (Connect delivers at least once: a task restarted by a rebalance re-sends from its last
    // flushed offset, so the same events may follow again)
    expect([...new Set(mine)]).toEqual(["c", "u", "d", "tombstone"]);
    expect(mine.at(-1)).toBe("tombstone");
    const created = JSON.parse(recs.find(([k, v]) => k === key && v !== null)![1]!);
    expect(created.after.customer_id).toBe(tag);
    expect(created.after.total_amount).toBe(12.34); // decimal.handling.mode=double
    expect(created.source.name).toBe("ecom-connector");
    expect(created.schema).toBeUndefined(); // schemas.enable=false
  } finally {
    await ecom.end();
  }
  const inv = await topicRecords(env.BOOTSTRAP_SERVERS!, "inventory-connector.public.inventory");
  expect(inv.length).toBeGreaterThan(0);
}, 180_000);

real("Debezium's output still matches the recorded fixtures (scripts/record-fixtures.sh --check)", async () => {
  const p = Bun.spawn(["bash", `${ROOT}scripts/record-fixtures.sh`, "--check", "--stack-dir", stackDir!], { stdout: "pipe", stderr: "pipe" });
  const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
  if (code !== 0) throw new Error(`record-fixtures --check failed:\n${out}\n${err.slice(-6000)}`);
  expect(err).toContain("Debezium's output matches the committed fixtures");
}, 300_000);
