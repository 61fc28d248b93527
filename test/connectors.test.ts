// Connector configs checked against Debezium's documented options, and the registration script
// against a local server speaking the Kafka Connect REST API. The same connectors against the real
// Kafka Connect and Debezium are the real-stack tier's (test/stack/pipeline.test.ts, run by
// scripts/test.sh on a stack of its own).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
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
