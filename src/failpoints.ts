// Failpoints for the fault suite (scripts/chaos.sh): named places where a test can make the process
// die with SIGKILL, the way a crash would. Armed only by CDC_SINK_FAILPOINTS, read once at start
// ("name" or "name:probability" or "name@n", comma-separated: die at every/the given share/the n-th
// pass); unarmed, a failpoint is one boolean test.
const spec = process.env.CDC_SINK_FAILPOINTS ?? "";
const armed = spec.length > 0;
const points = new Map<string, { p: number; nth: number; seen: number }>();
for (const item of spec.split(",").filter(Boolean)) {
  const m = /^([a-z-]+)(?::([\d.]+))?(?:@(\d+))?$/.exec(item.trim());
  if (m) points.set(m[1]!, { p: m[2] ? Number(m[2]) : 1, nth: m[3] ? Number(m[3]) : 0, seen: 0 });
}

/** The places: see README "How we test failure". */
export type Failpoint =
  | "after-fetch"
  | "mid-decode"
  | "after-begin"
  | "commit-sent"
  | "after-commit"
  | "mid-dead-letters"
  | "during-revoke"
  | "during-drain"
  | "after-snapshot-table";

export function failpoint(name: Failpoint): void {
  if (!armed) return;
  const f = points.get(name);
  if (!f) return;
  f.seen++;
  if (f.nth ? f.seen === f.nth : Math.random() < f.p) {
    process.stderr.write(`${JSON.stringify({ level: "error", time: new Date().toISOString(), msg: "failpoint: killing the process", failpoint: name })}\n`);
    process.kill(process.pid, "SIGKILL");
  }
}
