// README's configuration reference names every key the valibot schema accepts, and every metric.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { ConfigSchema } from "../src/config.ts";
import { createMetrics } from "../src/metrics.ts";
import { ROOT } from "./support/harness.ts";

const readme = readFileSync(`${ROOT}README.md`, "utf8");

type Node = { type: string; entries?: Record<string, Node>; wrapped?: Node; pipe?: Node[]; item?: Node };
/** Every key path; a segment may itself hold dots (the [debezium] keys, named as in the connector config). */
function keys(node: Node, path: string[], out: string[][]): void {
  if (node.type === "optional" && node.wrapped) return keys(node.wrapped, path, out);
  if (node.pipe && node.pipe[0] !== node) return keys(node.pipe[0]!, path, out);
  if (node.type === "array" && node.item) return keys(node.item, path, out);
  if (node.entries)
    for (const [k, child] of Object.entries(node.entries)) {
      out.push([...path, k]);
      keys(child, [...path, k], out);
    }
}

test("every config key is documented in README's configuration reference", () => {
  const all: string[][] = [];
  keys(ConfigSchema as unknown as Node, [], all);
  expect(all).toContainEqual(["mappings", "delete_mode"]);
  expect(all).toContainEqual(["debezium", "time.precision.mode"]);
  const section = readme.slice(readme.indexOf("### Configuration"), readme.indexOf("### Values exactly"));
  const missing = all.filter((parts) => {
    const name = parts[parts.length - 1]!;
    return parts.length === 1 ? !section.includes(`[${name}]`) && !section.includes(`[[${name}]]`) : !section.includes(`\`${name}\``) && !section.includes(`\`"${name}"\``);
  });
  expect(missing).toEqual([]);
});

test("every metric is documented in README", () => {
  const m = createMetrics();
  const names = [...m.registry.render().matchAll(/^# TYPE (cdc_sink_\S+)/gm)].map((x) => x[1]!);
  expect(names.length).toBeGreaterThan(10);
  const missing = names.filter((n) => !readme.includes(`\`${n.replace(/^cdc_sink_/, "")}`));
  expect(missing).toEqual([]);
});

test("every error code cdc-sink raises is listed in README", () => {
  const sources = ["src/errors.ts", "src/sources/postgres/stream.ts", "src/sources/postgres/setup.ts", "src/sink/apply.ts", "src/sink/fence.ts"].map((f) => readFileSync(`${ROOT}${f}`, "utf8")).join("\n");
  const codes = new Set([...sources.matchAll(/super\("([A-Z_]+)"|code = "([A-Z_]+)"|code: "([A-Z_]+)"/g)].map((m) => m[1] ?? m[2] ?? m[3]!));
  expect([...codes]).toContain("SOURCE_SETUP");
  expect([...codes]).toContain("REPLICATION_CLOSED");
  const section = readme.slice(readme.indexOf("Error codes"));
  expect([...codes].filter((c) => !section.includes(`\`${c}\``))).toEqual([]);
});
