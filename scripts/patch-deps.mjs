// Runs after `npm ci` (package.json postinstall). postgres.js 3.4.x can run a write it scheduled
// with setImmediate after its connection closed (socket null): `TypeError: null is not an object
// (evaluating 'socket.write')`, thrown outside any promise, killed the daemon while the analytics
// database flapped. The guard drops the write; the connection's queries fail as CONNECTION_CLOSED
// and are retried. Idempotent; fails loudly when the code it patches has changed.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "node_modules", "postgres");
const from = "  function nextWrite(fn) {\n    const x = socket.write(chunk, fn)";
const to = "  function nextWrite(fn) {\n    if (!socket) return (chunk = nextWriteTimer = null, false) // patched by cdc-sink (scripts/patch-deps.mjs)\n    const x = socket.write(chunk, fn)";
for (const f of ["src/connection.js", "cjs/src/connection.js", "cf/src/connection.js"]) {
  const file = join(root, f);
  const text = readFileSync(file, "utf8");
  if (text.includes(to)) continue;
  if (!text.includes(from)) throw new Error(`patch-deps: ${file} changed; review the postgres.js nextWrite guard`);
  writeFileSync(file, text.replace(from, to));
  console.log(`patch-deps: guarded postgres.js nextWrite in ${f}`);
}
