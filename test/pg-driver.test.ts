// postgres.js as scripts/patch-deps.mjs leaves it, when the analytics connection drops under it:
// each case hangs, times out or runs a statement outside its transaction on postgres.js 3.4.9 as
// published. The tests own the sockets (postgres.js's `socket` option) to drop them at chosen moments.
import { expect, test } from "bun:test";
import { createConnection, type Socket } from "node:net";
import postgres from "postgres";
import { sharedCluster } from "./support/pg.ts";

async function open() {
  const pg = await sharedCluster();
  const url = new URL(await pg.createDatabase("driver"));
  const sockets: Socket[] = [];
  // `socket` is a documented option its types leave out
  const socket = () =>
    new Promise<Socket>((resolve, reject) => {
      const s = createConnection({ host: url.hostname, port: Number(url.port) }, () => resolve(s));
      s.once("error", reject);
      sockets.push(s);
    });
  const sql = postgres(url.href, { max: 1, connect_timeout: 2, backoff: () => 0.05, onnotice: () => {}, socket } as postgres.Options<{}>);
  await sql`SELECT 1`;
  return { sql, last: () => sockets.at(-1)!, sockets };
}

const code = (e: unknown) => (e as { code?: string }).code ?? String(e);

test("a connection closed while a write waited for its turn connects again at once", async () => {
  const { sql, sockets } = await open();
  try {
    for (let i = 0; i < 3; i++) {
      sockets.at(-1)!.destroy();
      // written after the destroy, before the close is seen: its bytes wait for a setImmediate
      expect(await sql`SELECT 2`.catch(code)).toBe("CONNECTION_CLOSED");
      expect((await sql`SELECT ${`after ${i}`}::text AS v`)[0]!.v).toBe(`after ${i}`);
    }
    expect(sockets.length).toBe(4);
  } finally {
    await sql.end({ timeout: 1 });
  }
});

test("after a pipelined transaction lost its connection, each query gets its own answer", async () => {
  const { sql, last } = await open();
  try {
    for (const drop of ["reset", "close"]) {
      const failed = await sql
        .begin((tx) => {
          const s = last();
          setTimeout(() => (drop === "reset" ? s.resetAndDestroy() : s.destroy()), 50);
          return Promise.all([tx`SELECT pg_sleep(0.5)`, tx`SELECT 2`, tx`SELECT 3`]);
        })
        .catch(code);
      expect(failed).toBe("CONNECTION_CLOSED");
      const answers = [];
      for (const v of ["x", "y", "z"]) answers.push((await sql`SELECT ${v}::text AS v`)[0]!.v);
      expect(answers).toEqual(["x", "y", "z"]);
    }
  } finally {
    await sql.end({ timeout: 1 });
  }
});

test("a transaction whose connection closed runs nothing more, not even on the new session", async () => {
  const { sql, last } = await open();
  try {
    await sql`CREATE TABLE t (v int)`;
    let late: unknown;
    const failed = await sql
      .begin(async (tx) => {
        await tx`INSERT INTO t VALUES (1)`;
        last().destroy();
        // the pool's next query brings the same connection back as a new session
        await new Promise((r) => setTimeout(r, 100));
        await sql`SELECT 1`;
        late = await tx`INSERT INTO t VALUES (2)`.then(() => "ran", code);
        await tx`INSERT INTO t VALUES (3)`.catch(() => {});
      })
      .catch(code);
    expect(failed).toBe("CONNECTION_CLOSED");
    await new Promise((r) => setTimeout(r, 200));
    expect(late).toBe("CONNECTION_CLOSED");
    expect((await sql`SELECT count(*)::int AS n FROM t`)[0]!.n).toBe(0);
  } finally {
    await sql.end({ timeout: 1 });
  }
});

test("the next query after the server ended the session does not get that session's error", async () => {
  const { sql } = await open();
  const admin = postgres((await sharedCluster()).url(), { max: 1, onnotice: () => {} });
  try {
    for (let i = 0; i < 2; i++) {
      const pid = (await sql`SELECT pg_backend_pid() AS pid`)[0]!.pid as number;
      const sleeping = sql`SELECT pg_sleep(5)`.catch(code);
      await new Promise((r) => setTimeout(r, 100));
      await admin`SELECT pg_terminate_backend(${pid})`;
      expect(await sleeping).toBe("CONNECTION_CLOSED");
      expect((await sql`SELECT ${`next ${i}`}::text AS v`)[0]!.v).toBe(`next ${i}`);
    }
  } finally {
    await Promise.all([sql.end({ timeout: 1 }), admin.end({ timeout: 1 })]);
  }
});
