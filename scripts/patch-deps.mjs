// Runs after `npm ci` (package.json postinstall): fixes to postgres.js 3.4.x, idempotent, failing
// loudly when the code they patch has changed.
// 1. It can run a write it scheduled with setImmediate after its connection closed (socket null):
//    `TypeError: null is not an object (evaluating 'socket.write')`, thrown outside any promise,
//    killed the daemon while the analytics database flapped. The guard drops the write; the
//    connection's queries fail as CONNECTION_CLOSED and are retried.
// 2. A COPY TO STDOUT stream pauses the socket when its reader is behind, and only the reader's next
//    read resumes it; after the end of the copy there is no next read, so when CommandComplete and
//    ReadyForQuery arrived in a later packet the connection stalled for good (the snapshot's
//    COMMIT never ran). The end of the copy resumes the socket.
// 4. A COPY FROM STDIN the server rejected (a value too long) left its stream waiting for ever:
//    the error now ends the stream.
// 5. The array-type query it runs on every new connection was awaited by nobody: when the server
//    cancelled it (a statement_timeout of 1 ms), the rejection was unhandled and the daemon exited.
//    Now the query waiting for that connection fails with the error (and is retried), and the
//    connection closes, so the next one fetches the types again.
// 6. A connection that closed kept what it had not settled, and its next life inherited it: a
//    write waiting for its setImmediate (its timer handle looked scheduled, so the StartupMessage
//    appended to the stale bytes was never sent: every reconnect waited out connect_timeout, 3 s
//    each, up to 30 s in a row; the fault suite's PostgreSQL resets); a statement issued between
//    the socket's error and its close (never sent, but its reply awaited: every later reply went to
//    the statement before, and the next one waited for ever); the old backend's FATAL, thrown at
//    the next connection's first query. A closed connection now drops its unsent bytes, fails every
//    statement still waiting on it, and forgets the old backend's error.
// 7. A transaction's statements still went to its connection after that connection closed and
//    came back as a new session (sql.begin() had rejected, its callback ran on): they ran outside
//    any transaction, and its ROLLBACK or COMMIT ended another one on that connection. Once its
//    connection closed, a transaction's statements fail with CONNECTION_CLOSED, those it queued too.
// 3. Each message it sends was copied once more before the socket write (Buffer.from of a buffer
//    nothing else holds), once more onto the smaller messages still pending, and a Bind once more
//    to append its Execute, and Bun copies what the socket does not take at once: a 64 MiB value
//    cost 256 MiB more memory. A large message is sent as it is, after what is pending, 1 MiB at a
//    time as the socket drains.
import { copyFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
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
  {
    what: "write without a copy",
    from: "    chunk = chunk ? Buffer.concat([chunk, x]) : Buffer.from(x)",
    to: "    chunk = chunk ? Buffer.concat([chunk, x]) : Buffer.isBuffer(x) ? x : Buffer.from(x) // patched by cdc-sink (scripts/patch-deps.mjs)",
  },
  {
    what: "a large write not copied onto pending ones",
    from: "    chunk = chunk ? Buffer.concat([chunk, x]) : Buffer.isBuffer(x) ? x : Buffer.from(x) // patched by cdc-sink (scripts/patch-deps.mjs)",
    to: "    chunk && x.length >= 65536 && nextWrite() // patched by cdc-sink (scripts/patch-deps.mjs)\n    chunk = chunk ? Buffer.concat([chunk, x]) : Buffer.isBuffer(x) ? x : Buffer.from(x) // patched by cdc-sink (scripts/patch-deps.mjs)",
  },
  {
    what: "a large Bind not copied",
    from: "  function prepared(q) {\n    return Buffer.concat([\n      Bind(q.parameters, q.statement.types, q.statement.name, q.cursorName),\n      q.cursorFn\n        ? Execute('', q.cursorRows)\n        : ExecuteUnnamed\n    ])\n  }",
    to: "  function prepared(q, direct) { // patched by cdc-sink (scripts/patch-deps.mjs)\n    const bind = Bind(q.parameters, q.statement.types, q.statement.name, q.cursorName)\n        , tail = q.cursorFn ? Execute('', q.cursorRows) : ExecuteUnnamed\n    return direct && bind.length >= 65536 ? (write(bind), tail) : Buffer.concat([bind, tail])\n  }",
  },
  {
    what: "a large Bind not copied (prepared statement)",
    from: "          ? q.prepared\n            ? prepared(q)\n",
    to: "          ? q.prepared\n            ? prepared(q, true) // patched by cdc-sink (scripts/patch-deps.mjs)\n",
  },
  {
    what: "a large Bind not copied (described statement)",
    from: "query.describeFirst && !query.onlyDescribe && (write(prepared(query)), query.describeFirst = false)",
    to: "query.describeFirst && !query.onlyDescribe && (write(prepared(query, true)), query.describeFirst = false) // patched by cdc-sink (scripts/patch-deps.mjs)",
  },
  {
    what: "a large write paced by drain",
    from: "    const x = socket.write(chunk, fn)\n    nextWriteTimer !== null && clearImmediate(nextWriteTimer)\n    chunk = nextWriteTimer = null\n    return x\n  }\n",
    to: `    const x = paced || chunk.length > 1048576 ? pace(chunk, fn) : socket.write(chunk, fn) // patched by cdc-sink (scripts/patch-deps.mjs)
    nextWriteTimer !== null && clearImmediate(nextWriteTimer)
    chunk = nextWriteTimer = null
    return x
  }

  // patched by cdc-sink (scripts/patch-deps.mjs): a large message goes to the socket 1 MiB at a
  // time, each once the last drained (Bun copies what a socket does not take at once)
  var paced // var: nextWrite runs before this line during connect
  function pace(x, fn) {
    const start = !paced
    start && (paced = { socket, queue: [] })
    for (let i = 0; i < x.length; i += 1048576) paced.queue.push(x.subarray(i, i + 1048576))
    fn && paced.queue.push(fn)
    start && pump()
    return false
  }
  function pump() {
    while (paced && paced.queue.length) {
      if (!socket || socket !== paced.socket) return (paced = null)
      const x = paced.queue.shift()
      if (typeof x === 'function') { x(); continue }
      if (!socket.write(x)) return socket.once('drain', pump)
    }
    paced = null
  }
`,
  },
  {
    what: "a rejected COPY FROM ends its stream",
    from: "  function ErrorResponse(x) {\n    if (query) {",
    to: `  function ErrorResponse(x) {
    // patched by cdc-sink (scripts/patch-deps.mjs): a COPY FROM the server rejects ends its stream
    // with the error (its final callback waited for ever, also after CopyDone); no CopyFail follows
    if (final) {
      const f = final
      final = null
      f(Errors.postgres(parseError(x)))
    } else if (stream && !(stream instanceof Stream.Readable)) {
      const s = stream
      stream = null
      s._destroy = (error, callback) => callback(error)
      s.destroy(Errors.postgres(parseError(x)))
    }
    if (query) {`,
  },
  {
    what: "a failed type fetch fails the waiting query",
    from: `    const types = await new Query([\`
      select b.oid, b.typarray
      from pg_catalog.pg_type a
      left join pg_catalog.pg_type b on b.oid = a.typelem
      where a.typcategory = 'A'
      group by b.oid, b.typarray
      order by b.oid
    \`], [], execute)
    types.forEach`,
    to: `    const types = await new Query([\`
      select b.oid, b.typarray
      from pg_catalog.pg_type a
      left join pg_catalog.pg_type b on b.oid = a.typelem
      where a.typcategory = 'A'
      group by b.oid, b.typarray
      order by b.oid
    \`], [], execute).catch((e) => (errored(e), socket && socket.end(), null)) // patched by cdc-sink (scripts/patch-deps.mjs)
    if (!types) return
    types.forEach`,
  },
  {
    what: "a closed connection drops its unsent write",
    from: "    incomings = null\n    clearImmediate(nextWriteTimer)\n    socket.removeListener('data', data)",
    to: "    incomings = null\n    clearImmediate(nextWriteTimer)\n    chunk = nextWriteTimer = paced = null // patched by cdc-sink (scripts/patch-deps.mjs)\n    socket.removeListener('data', data)",
  },
  {
    what: "a closed connection fails what waits on it",
    from: "    !hadError && (query || sent.length) && error(Errors.connection('CONNECTION_CLOSED', options, socket))\n",
    to: "    if (query || sent.length) error(Errors.connection('CONNECTION_CLOSED', options, socket)) // patched by cdc-sink (scripts/patch-deps.mjs)\n    query = results = errorResponse = null\n    result = new Result()\n",
  },
  {
    file: "index.js",
    what: "a closed transaction runs nothing more",
    from: "    let savepoints = 0\n      , connection\n      , prepare = null\n\n    try {\n      await sql.unsafe('begin ' + options.replace(/[^a-z ]/ig, ''), [], { onexecute }).execute()\n      return await Promise.race([\n        scope(connection, fn),\n        new Promise((_, reject) => connection.onclose = reject)\n      ])",
    to: "    let savepoints = 0\n      , connection\n      , prepare = null\n      , closedError = null // patched by cdc-sink (scripts/patch-deps.mjs)\n\n    try {\n      await sql.unsafe('begin ' + options.replace(/[^a-z ]/ig, ''), [], { onexecute }).execute()\n      return await Promise.race([\n        scope(connection, fn),\n        new Promise((_, reject) => connection.onclose = (e) => { // patched by cdc-sink (scripts/patch-deps.mjs)\n          closedError = e\n          while (queries.length) queries.shift().reject(closedError)\n          reject(closedError)\n        })\n      ])",
  },
  {
    file: "index.js",
    what: "a closed transaction runs nothing more (its statements)",
    from: "      function handler(q) {\n        q.catch(e => uncaughtError || (uncaughtError = e))\n",
    to: "      function handler(q) {\n        q.catch(e => uncaughtError || (uncaughtError = e))\n        if (closedError) return q.reject(closedError) // patched by cdc-sink (scripts/patch-deps.mjs)\n",
  },
];
// Always from the file as installed (kept beside it once), so that running again applies the
// current patches whatever an earlier version of this script did.
for (const f of ["connection.js", "index.js"].flatMap((n) => ["src", "cjs/src", "cf/src"].map((d) => `${d}/${n}`))) {
  const file = join(root, f);
  const orig = `${file}.orig`;
  if (!existsSync(orig)) copyFileSync(file, orig);
  let text = readFileSync(orig, "utf8");
  const mine = patches.filter((p) => f.endsWith(`/${p.file ?? "connection.js"}`));
  for (const p of mine) {
    if (!text.includes(p.from)) throw new Error(`patch-deps: ${file} changed; review the postgres.js ${p.what}`);
    text = text.replace(p.from, p.to);
  }
  if (readFileSync(file, "utf8") !== text) {
    writeFileSync(file, text);
    console.log(`patch-deps: postgres.js ${f}: ${mine.map((p) => p.what).join(", ")}`);
  }
}
