import { test } from "bun:test";
import { cases } from "./kafka-addon.cases.ts";

for (const [name, fn] of cases) test(name, fn, 60_000);
