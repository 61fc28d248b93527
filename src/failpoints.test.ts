import { expect, test } from "bun:test";
import { ROOT } from "../test/support/harness.ts";

const run = (spec: string, script: string) =>
  Bun.spawnSync([process.execPath, "-e", `import { failpoint } from "${ROOT}src/failpoints.ts"; ${script}; console.log("survived")`], { env: { ...process.env, CDC_SINK_FAILPOINTS: spec } });

test("an armed failpoint kills the process with SIGKILL at its pass; unarmed ones do nothing", () => {
  const none = run("", 'failpoint("after-fetch")');
  expect(none.stdout.toString()).toContain("survived");
  const other = run("after-begin", 'failpoint("after-fetch")');
  expect(other.stdout.toString()).toContain("survived");
  const killed = run("after-fetch", 'failpoint("after-fetch")');
  expect(killed.signalCode).toBe("SIGKILL");
  expect(killed.stderr.toString()).toContain('"failpoint":"after-fetch"');
  const third = run("after-fetch@3", 'failpoint("after-fetch"); failpoint("after-fetch"); console.log("two passed"); failpoint("after-fetch")');
  expect(third.stdout.toString()).toContain("two passed");
  expect(third.signalCode).toBe("SIGKILL");
});
