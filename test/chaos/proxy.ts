// A small TCP fault proxy. Run as a program inside the daemon's network namespace it listens on the
// addresses the daemon dials (127.0.0.1 and the real port numbers, so a Kafka broker's advertised
// address leads here too) and forwards each connection over a Unix socket to the host side, where
// forwardUnixToTcp() connects to the real server. Faults are set per link by JSON lines on stdin:
//
//   {"link":"kafka","fault":"reset","ms":2000}    reset every connection (RST to the daemon), and each new one for ms
//   {"link":"pg","fault":"blackhole"}             nothing delivered either way, connections stay open; lifted by "none",
//                                                 when what was held back is delivered (TCP retransmission)
//   {"link":"pg","fault":"latency","ms":1000}     every chunk delivered ms later, in order
//   {"link":"pg","fault":"throttle","bps":1024}   each direction of each connection at bps bytes per second
//   {"link":"pg","fault":"halfopen"}              the server side of every connection closed, the daemon's side left
//                                                 open and silent (new connections work); reset when lifted
//   {"link":"pg","fault":"none"}
//
// It answers each command with {"ok":true} on stdout. The program also serves the daemon's HTTP port
// on a Unix socket, so the driver outside the namespace can reach /metrics and /readyz.
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { createInterface } from "node:readline";

export type Fault = { fault: "none" } | { fault: "reset"; ms?: number } | { fault: "blackhole" } | { fault: "latency"; ms: number } | { fault: "throttle"; bps: number } | { fault: "halfopen" };

interface Side {
  /** chunks waiting for their time (latency), budget (throttle) or the end of a blackhole */
  queue: Array<{ at: number; data: Buffer }>;
  timer?: ReturnType<typeof setTimeout>;
  tokens: number;
  lastRefill: number;
}

interface Pair {
  client: Socket;
  upstream?: Socket;
  /** data toward the server, toward the daemon */
  up: Side;
  down: Side;
  /** the server side was closed by a half-open fault: the daemon's side stays open and silent */
  severed: boolean;
}

/** One proxied link: a TCP listener whose connections are forwarded to `connectUpstream()`. */
export class FaultLink {
  #mode: Fault = { fault: "none" };
  #resetUntil = 0;
  readonly pairs = new Set<Pair>();
  server: Server;
  accepted = 0;

  constructor(
    readonly name: string,
    readonly connectUpstream: () => Socket,
  ) {
    this.server = createServer({ pauseOnConnect: false }, (c) => this.#accept(c));
  }

  listen(port: number, host = "127.0.0.1"): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => resolve());
    });
  }

  get mode(): Fault {
    return this.#mode;
  }

  set(f: Fault): void {
    const was = this.#mode;
    this.#mode = f;
    if (f.fault === "reset") {
      this.#resetUntil = Date.now() + (f.ms ?? 0);
      for (const p of [...this.pairs]) this.#reset(p);
      this.#mode = { fault: "none" };
      return;
    }
    if (f.fault === "halfopen") {
      for (const p of this.pairs) {
        p.severed = true;
        p.upstream?.destroy();
        p.up.queue.length = 0;
        p.down.queue.length = 0;
      }
      return;
    }
    if (was.fault === "halfopen") for (const p of [...this.pairs]) if (p.severed) this.#reset(p);
    // lifting a blackhole or a latency or a throttle: what waits is sent on its new terms
    for (const p of this.pairs) {
      if (!p.upstream && !p.severed && f.fault !== "blackhole") this.#connect(p);
      this.#pump(p, p.up, p.upstream);
      this.#pump(p, p.down, p.client);
    }
  }

  #reset(p: Pair): void {
    this.pairs.delete(p);
    p.client.resetAndDestroy();
    p.upstream?.destroy();
    for (const s of [p.up, p.down]) if (s.timer) clearTimeout(s.timer);
  }

  #accept(client: Socket): void {
    this.accepted++;
    client.setNoDelay(true);
    const side = (): Side => ({ queue: [], tokens: 0, lastRefill: Date.now() });
    const p: Pair = { client, up: side(), down: side(), severed: false };
    this.pairs.add(p);
    client.on("error", () => {});
    client.on("close", () => {
      this.pairs.delete(p);
      p.upstream?.destroy();
    });
    client.on("data", (d: Buffer) => this.#enqueue(p, p.up, d, () => p.upstream));
    if (Date.now() < this.#resetUntil) return this.#reset(p);
    if (this.#mode.fault !== "blackhole") this.#connect(p);
  }

  #connect(p: Pair): void {
    const u = this.connectUpstream();
    p.upstream = u;
    u.on("error", () => {});
    u.on("data", (d: Buffer) => this.#enqueue(p, p.down, d, () => p.client));
    u.on("close", () => {
      if (p.severed || p.upstream !== u) return;
      // the server closed: so does the daemon's side, once what was sent reached it
      const end = () => (p.down.queue.length ? setTimeout(end, 20) : p.client.end());
      end();
    });
    this.#pump(p, p.up, u);
  }

  #enqueue(p: Pair, s: Side, data: Buffer, target: () => Socket | undefined): void {
    if (p.severed) return;
    const m = this.#mode;
    s.queue.push({ at: Date.now() + (m.fault === "latency" ? m.ms : 0), data });
    this.#pump(p, s, target());
  }

  /** Sends what is due on `s` to `to`, by the mode in force; schedules the rest. */
  #pump(p: Pair, s: Side, to: Socket | undefined): void {
    if (s.timer) {
      clearTimeout(s.timer);
      s.timer = undefined;
    }
    const m = this.#mode;
    if (!to || p.severed || m.fault === "blackhole") return;
    const now = Date.now();
    if (m.fault === "throttle") {
      s.tokens = Math.min(m.bps, s.tokens + ((now - s.lastRefill) / 1000) * m.bps);
      s.lastRefill = now;
      while (s.queue.length && s.tokens >= 1) {
        const head = s.queue[0]!;
        const n = Math.min(head.data.length, Math.floor(s.tokens));
        to.write(head.data.subarray(0, n));
        s.tokens -= n;
        if (n === head.data.length) s.queue.shift();
        else head.data = head.data.subarray(n);
      }
      if (s.queue.length) s.timer = setTimeout(() => this.#pump(p, s, to), 100);
      return;
    }
    while (s.queue.length && s.queue[0]!.at <= now) to.write(s.queue.shift()!.data);
    if (s.queue.length) s.timer = setTimeout(() => this.#pump(p, s, to), Math.max(1, s.queue[0]!.at - now));
  }

  close(): void {
    for (const p of [...this.pairs]) this.#reset(p);
    this.server.close();
  }
}

/** Host side: accepts on a Unix socket and connects each connection to host:port. */
export function forwardUnixToTcp(path: string, host: string, port: number): Promise<Server> {
  const server = createServer((c) => {
    const u = createConnection({ host, port });
    u.setNoDelay(true);
    c.on("error", () => {});
    u.on("error", () => c.destroy());
    c.pipe(u);
    u.pipe(c);
    c.on("close", () => u.destroy());
    u.on("close", () => c.destroy());
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve(server));
  });
}

export interface ProxySpec {
  /** links to proxy with faults: listen on 127.0.0.1:port, forward to the Unix socket */
  links: Array<{ name: string; port: number; unix: string }>;
  /** plain forwards from a Unix socket to 127.0.0.1:port inside the namespace (the daemon's HTTP) */
  serve: Array<{ unix: string; port: number }>;
}

if (import.meta.main) {
  const spec = JSON.parse(process.argv[2]!) as ProxySpec;
  const links = new Map<string, FaultLink>();
  for (const l of spec.links) {
    const link = new FaultLink(l.name, () => createConnection({ path: l.unix }));
    await link.listen(l.port);
    links.set(l.name, link);
  }
  for (const s of spec.serve) await forwardUnixToTcp(s.unix, "127.0.0.1", s.port);
  process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
  const rl = createInterface({ input: process.stdin });
  rl.on("line", (line) => {
    try {
      const cmd = JSON.parse(line) as Fault & { link: string };
      const link = links.get(cmd.link);
      if (!link) throw new Error(`no link ${cmd.link}`);
      link.set(cmd);
      process.stdout.write(`${JSON.stringify({ ok: true, link: cmd.link, fault: cmd.fault, connections: link.pairs.size })}\n`);
    } catch (e) {
      process.stdout.write(`${JSON.stringify({ ok: false, error: (e as Error).message })}\n`);
    }
  });
  rl.on("close", () => process.exit(0));
}
