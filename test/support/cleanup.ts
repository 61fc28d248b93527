// Everything tests and benches start (clusters, temp dirs, processes) is registered here and
// stopped and removed when the run ends, also when a test failed or the run was interrupted.
// Preloaded by bunfig.toml for `bun test`; benches call cleanupAll() themselves.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const tasks: Array<() => void> = [];

/** Runs `fn` (synchronously) when the run ends; most recent first. */
export function onCleanup(fn: () => void): void {
  tasks.push(fn);
}

/** A fresh temporary directory, removed when the run ends. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function cleanupAll(): void {
  while (tasks.length) {
    try {
      tasks.pop()!();
    } catch {
      /* the rest still runs */
    }
  }
}

process.once("exit", cleanupAll);
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const)
  process.once(signal, () => {
    cleanupAll();
    process.exit(130);
  });

const bunTest = (globalThis as { Bun?: unknown }).Bun && process.env.NODE_ENV === "test";
if (bunTest) {
  const { afterAll } = await import("bun:test");
  // stopping clusters and removing their data directories takes seconds
  afterAll(cleanupAll, 120_000);
}
