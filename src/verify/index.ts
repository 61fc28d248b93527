// Verify and repair: what main.ts and daemon.ts use.
export { REPAIR_HELP, runRepair, runVerify, VERIFY_HELP } from "./cli.ts";
export { registerVerifyMetrics, startVerifyLoop, verifyOnce, type VerifyLoopDeps, type VerifyMetrics } from "./schedule.ts";
export { type RunVerifyOptions, type TableReport, verify, type VerifyOptions, type VerifyRun } from "./verify.ts";
