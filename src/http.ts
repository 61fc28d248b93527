// /metrics (Prometheus text), /healthz (liveness), /readyz (readiness), served by Hono.
import { Hono } from "hono";

export interface HttpDeps {
  /** Prometheus text exposition */
  metrics(): string;
  /** null when alive, else why not: the loop stalled, or librdkafka reported a fatal error */
  liveness(): string | null;
  /** reasons the instance is not ready; empty when ready */
  readiness(): string[];
}

export function createHttpApp(deps: HttpDeps): Hono {
  const app = new Hono();
  app.get("/metrics", (c) => c.body(deps.metrics(), 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }));
  app.get("/healthz", (c) => {
    const problem = deps.liveness();
    return problem ? c.json({ status: "fail", reason: problem }, 503) : c.json({ status: "ok" });
  });
  app.get("/readyz", (c) => {
    const reasons = deps.readiness();
    return reasons.length ? c.json({ status: "not ready", reasons }, 503) : c.json({ status: "ready" });
  });
  app.notFound((c) => c.json({ error: "not found", endpoints: ["/metrics", "/healthz", "/readyz"] }, 404));
  return app;
}

/** Starts the app on host:port with whatever server the runtime has (Bun, Deno or Node). */
export async function serve(app: Hono, listen: string): Promise<{ port: number; close(): Promise<void> }> {
  const m = /^(.*):(\d+)$/.exec(listen);
  if (!m) throw new Error(`http.listen: expected host:port, got ${listen}`);
  const hostname = m[1]!.replace(/^\[|\]$/g, "") || "0.0.0.0";
  const port = Number(m[2]);
  const g = globalThis as { Bun?: { serve(o: unknown): { port: number; stop(force?: boolean): void } }; Deno?: { serve(o: unknown, h: unknown): { addr: { port: number }; shutdown(): Promise<void> } } };
  if (g.Bun) {
    const s = g.Bun.serve({ hostname, port, fetch: app.fetch });
    return { port: s.port, close: async () => s.stop(true) };
  }
  if (g.Deno) {
    const s = g.Deno.serve({ hostname, port, onListen: () => {} }, app.fetch);
    return { port: s.addr.port, close: () => s.shutdown() };
  }
  const { createServer } = await import("node:http");
  const server = createServer(async (req, res) => {
    const url = `http://${req.headers.host ?? "localhost"}${req.url}`;
    const r = await app.fetch(new Request(url, { method: req.method }));
    res.writeHead(r.status, Object.fromEntries(r.headers));
    res.end(Buffer.from(await r.arrayBuffer()));
  });
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(port, hostname, () => resolve()));
  return { port: (server.address() as { port: number }).port, close: () => new Promise((r) => server.close(() => r())) };
}
