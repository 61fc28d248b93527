// Debezium's output on the real stack still matches the recorded fixtures that test/fidelity.test.ts
// replays (scripts/record-fixtures.sh --check re-records every encoding mode in both JSON forms).
import { expect } from "bun:test";
import { ROOT } from "../support/harness.ts";
import { stackDir, stackTest } from "./support.ts";

stackTest("Debezium's output still matches the recorded fixtures (scripts/record-fixtures.sh --check)", async () => {
  const p = Bun.spawn(["bash", `${ROOT}scripts/record-fixtures.sh`, "--check", "--stack-dir", stackDir!], { stdout: "pipe", stderr: "pipe" });
  const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
  if (code !== 0) throw new Error(`record-fixtures --check failed:\n${out}\n${err.slice(-6000)}`);
  expect(err).toContain("Debezium's output matches the committed fixtures");
}, 300_000);
