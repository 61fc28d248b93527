// The addon's tests under Node's own runner (bundled for Node by scripts/test.sh).
import { test } from "node:test";
import { cases } from "../kafka-addon.cases.ts";

for (const [name, fn] of cases) test(name, { timeout: 60_000 }, fn);
