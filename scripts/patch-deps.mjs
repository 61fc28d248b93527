// Runs after `npm ci` (package.json postinstall): two fixes to postgres.js 3.4.x, idempotent, failing
// loudly when the code they patch has changed.
// 1. It can run a write it scheduled with setImmediate after its connection closed (socket null):
//    `TypeError: null is not an object (evaluating 'socket.write')`, thrown outside any promise,
//    killed the daemon while the analytics database flapped. The guard drops the write; the
//    connection's queries fail as CONNECTION_CLOSED and are retried.
// 2. A COPY TO STDOUT stream pauses the socket when its reader is behind, and only the reader's next
//    read resumes it; after the end of the copy there is no next read, so when CommandComplete and
//    ReadyForQuery arrived in a later packet the connection stalled for good (the snapshot's
//    COMMIT never ran). The end of the copy resumes the socket.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "node_modules", "postgres");
const patches = [
  {
    what: "nextWrite guard",
    from: "  function nextWrite(fn) {\n    const x = socket.write(chunk, fn)",
    to: "  function nextWrite(fn) {\n    if (!socket) return (chunk = nextWriteTimer = null, false) // patched by cdc-sink (scripts/patch-deps.mjs)\n    const x = socket.write(chunk, fn)",
  },
  {
    what: "CopyDone resume",
    from: "  function CopyDone() {\n    stream && stream.push(null)\n    stream = null\n  }",
    to: "  function CopyDone() {\n    stream && stream.push(null)\n    stream = null\n    socket && socket.resume() // patched by cdc-sink (scripts/patch-deps.mjs)\n  }",
  },
];
for (const f of ["src/connection.js", "cjs/src/connection.js", "cf/src/connection.js"]) {
  const file = join(root, f);
  let text = readFileSync(file, "utf8");
  for (const p of patches) {
    if (text.includes(p.to)) continue;
    if (!text.includes(p.from)) throw new Error(`patch-deps: ${file} changed; review the postgres.js ${p.what}`);
    text = text.replace(p.from, p.to);
    console.log(`patch-deps: postgres.js ${p.what} in ${f}`);
  }
  writeFileSync(file, text);
}
