// The fault proxy on both of a daemon's links: a private network namespace in which the daemon
// runs, the proxy program (proxy.ts) inside it listening on the ports the daemon dials, and the
// host-side forwarders from the proxy's Unix sockets to the real Kafka broker(s) and PostgreSQL.
import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import { ROOT, createNetns, onCleanup, sleep } from "./env.ts";
import { type Fault, forwardUnixToTcp, type ProxySpec } from "./proxy.ts";

export class NetFaults {
  readonly ns: string;
  readonly httpSocket: string;
  #proc: ReturnType<typeof Bun.spawn> | undefined;
  #lines: string[] = [];
  #waiters: Array<(l: string) => void> = [];
  /** every fault set, for the report */
  readonly history: Array<{ link: string; fault: string; at: number }> = [];

  private constructor(
    readonly dir: string,
    readonly links: Array<{ name: string; port: number }>,
    readonly httpPort: number,
  ) {
    this.ns = createNetns();
    this.httpSocket = join(dir, "http.sock");
  }

  /** Links by name: each proxied on 127.0.0.1:port inside the namespace to 127.0.0.1:port outside. */
  static async start(parent: string, links: Array<{ name: string; port: number }>, httpPort: number): Promise<NetFaults> {
    // sockets of their own: a scenario after another on the same broker port must not meet its files
    const n = new NetFaults(mkdtempSync(join(parent, "net-")), links, httpPort);
    const spec: ProxySpec = { links: [], serve: [{ unix: n.httpSocket, port: httpPort }] };
    for (const l of links) {
      const unix = join(n.dir, `${l.name}-${l.port}.sock`);
      const server = await forwardUnixToTcp(unix, "127.0.0.1", l.port);
      onCleanup(() => server.close());
      spec.links.push({ name: l.name, port: l.port, unix });
    }
    const proc = Bun.spawn(["ip", "netns", "exec", n.ns, `${ROOT}node_modules/.bin/bun`, `${ROOT}test/chaos/proxy.ts`, JSON.stringify(spec)], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
    n.#proc = proc;
    onCleanup(() => {
      if (proc.exitCode === null) proc.kill("SIGKILL");
    });
    void (async () => {
      const dec = new TextDecoder();
      let buf = "";
      for await (const chunk of proc.stdout as ReadableStream<Uint8Array>) {
        buf += dec.decode(chunk);
        for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          const w = n.#waiters.shift();
          if (w) w(line);
          else n.#lines.push(line);
        }
      }
    })();
    const first = await Promise.race([n.#next(), sleep(15_000).then(() => "timeout")]);
    if (!first.includes('"ready":true')) throw new Error(`the fault proxy did not start: ${first}`);
    return n;
  }

  #next(): Promise<string> {
    const l = this.#lines.shift();
    return l !== undefined ? Promise.resolve(l) : new Promise((r) => this.#waiters.push(r));
  }

  /** The daemon's two links: every Kafka bootstrap broker ("kafka", "kafka1", …) and the analytics PostgreSQL ("pg"). */
  static forSink(parent: string, bootstrap: string, pgPort: number, httpPort: number): Promise<NetFaults> {
    const kafka = bootstrap.split(",").map((h, i) => ({ name: i ? `kafka${i}` : "kafka", port: Number(h.slice(h.lastIndexOf(":") + 1)) }));
    return NetFaults.start(parent, [...kafka, { name: "pg", port: pgPort }], httpPort);
  }

  /** Sets `f` on every link of a kind ("kafka": each broker's). */
  async setOn(kind: "kafka" | "pg", f: Fault): Promise<void> {
    for (const l of this.links) if (l.name.startsWith(kind)) await this.set(l.name, f);
  }

  async set(link: string, f: Fault): Promise<void> {
    const p = this.#proc!;
    (p.stdin as import("bun").FileSink).write(`${JSON.stringify({ link, ...f })}\n`);
    (p.stdin as import("bun").FileSink).flush();
    const answer = JSON.parse(await this.#next()) as { ok: boolean; error?: string };
    if (!answer.ok) throw new Error(`fault proxy: ${answer.error}`);
    this.history.push({ link, fault: f.fault, at: Date.now() });
  }

  async close(): Promise<void> {
    const p = this.#proc;
    if (p && p.exitCode === null) {
      (p.stdin as import("bun").FileSink).end();
      await Promise.race([p.exited, sleep(2000)]);
      if (p.exitCode === null) p.kill("SIGKILL");
    }
  }
}
