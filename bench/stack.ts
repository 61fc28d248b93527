// The real broker for benches: the stack STACK_DIR names when it runs, else one started by
// scripts/stack.sh and stopped when the bench ends (also on failure).
import { existsSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onCleanup } from "../test/support/cleanup.ts";
import { ROOT } from "../test/support/harness.ts";

export function stackEnv(dir: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const l of readFileSync(`${dir}/env`, "utf8").split("\n")) {
    const m = /^export ([A-Z_]+)='(.*)'$/.exec(l);
    if (m) env[m[1]!] = m[2]!;
  }
  return env;
}

export function stack(): { bootstrap: string; dir: string } {
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

export async function createTopics(bootstrap: string, names: string[], partitions: number): Promise<void> {
  await Promise.all(
    names.map(async (topic) => {
      const p = Bun.spawn(
        ["bash", `${ROOT}scripts/stack.sh`, "tool", "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bootstrap, "--create", "--topic", topic, "--partitions", String(partitions), "--replication-factor", "1"],
        { stdout: "pipe", stderr: "pipe" },
      );
      const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()]);
      if (code !== 0) throw new Error(`creating ${topic} failed: ${err}`);
    }),
  );
}
