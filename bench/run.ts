// bun run bench -- <name>: kafka-consume | kafka-sink | pg-source | pg-snapshot | upsert-paths | rebalance | verify. The last line printed is JSON.
export {};
const name = process.argv[2];
const benches: Record<string, () => Promise<unknown>> = {
  "kafka-consume": () => import("./kafka-consume.ts").then((m) => m.run()),
  "kafka-sink": () => import("./kafka-sink.ts").then((m) => m.run()),
  "pg-source": () => import("./pg-source.ts").then((m) => m.run()),
  "pg-snapshot": () => import("./pg-snapshot.ts").then((m) => m.run()),
  "upsert-paths": () => import("./upsert-paths.ts").then((m) => m.run()),
  rebalance: () => import("./rebalance.ts").then((m) => m.run()),
  verify: () => import("./verify.ts").then((m) => m.run()),
};
if (!name || !benches[name]) {
  console.error(`usage: bun run bench -- <${Object.keys(benches).join("|")}>`);
  process.exit(64);
}
const result = await benches[name]!();
console.log(JSON.stringify(result));
process.exit(0);
