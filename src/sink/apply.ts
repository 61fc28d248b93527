// The apply stage: a batch in one analytics transaction — per table one delete and one unnest upsert
// statement, guarded by the row's source position — with its dead letters and its checkpoint, every
// statement sent at once. When part of the batch was already applied (another group member, a
// zombie), or the database rejects a row, it rolls back and goes again one step at a time, the
// rejected row isolated by bisecting under savepoints.
import { createHash } from "node:crypto";
import type { Sql, TransactionSql } from "postgres";
import type { ChangeBatch, PartProgress } from "../batch.ts";
import { isDataError } from "../errors.ts";
import { failpoint } from "../failpoints.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import { type Change, type Coord, type DeadLetter, Kind, partKey, type Target } from "../model.ts";
import type { ApplyResult, Sink } from "../pipeline.ts";
import { evolveTable } from "./evolve.ts";
import { CheckpointLost, Fenced, type Fences } from "./fence.ts";
import { numberArray, textArray } from "./pgarray.ts";
import { quoteIdent } from "./schema.ts";
import { softDeleteColumn, stateStatements, TargetStatements } from "./statements.ts";

type Tx = TransactionSql;
type TableCount = { table: string; upsert: number; delete: number; truncate?: number; changes: number; dead?: DeadLetter[] };
type Outcome = { counts: TableCount[]; dead: DeadLetter[]; floor: Map<string, bigint> };

/** PostgreSQL text cannot hold NUL: shown as U+FFFD (dead letters keep the exact bytes beside it). */
const pgText = (s: string | null) => (s !== null && s.includes("\u0000") ? s.replaceAll("\u0000", "\uFFFD") : s);

/** The pipelined attempt saw checkpoint rows past the batch's start: it rolls back and takes the careful path. */
class AlreadyApplied extends Error {
  constructor(readonly floor: Map<string, bigint>) {
    super("part of the batch was already applied");
  }
}

// Named prepared statements: the batch statements are parsed and planned once per connection.
const PREPARED = { prepare: true };

/** The analytics database as the pipeline's sink. */
export function createSink(deps: { sql: Sql; stateSchema: string; metrics?: Metrics; log: Logger; maxValueBytes?: number; fences?: Fences }): Sink {
  return { apply: createApplier(deps), evolve: (change) => evolveTable(deps.sql, change, deps.log) };
}

const rawOf = (c: Change) => ({ key: c.raw?.key ?? c.keyText, value: c.raw?.value ?? null, valueBytes: c.raw?.valueBytes, valueSize: c.raw?.valueSize, valueSha256: c.raw?.valueSha256 });

const CAPPED = "record larger than the dead-letter cap: first 1024 bytes kept, with its size and SHA-256";

/** Size of a record's value in bytes: its exact bytes when kept, else its UTF-8 text. */
const byteLength = (text: string | null, bytes?: Uint8Array | null) => (bytes ? bytes.byteLength : text === null ? 0 : Buffer.byteLength(text));

/**
 * A dead letter whose value is larger than `max` bytes keeps its size, SHA-256 and first bytes:
 * the table stays small and writing it never costs more than the cap (the record is in the
 * source, found by its coordinates).
 */
export function capped(d: DeadLetter, max: number): DeadLetter {
  if (d.valueSize !== undefined) return { ...d, error: `${d.error} (${CAPPED})` };
  const size = byteLength(d.value, d.valueBytes);
  const keyTooBig = d.key !== null && d.key.length > max;
  if (size <= max && !keyTooBig) return d;
  const bytes = d.valueBytes ?? (d.value === null ? null : Buffer.from(d.value));
  const head = (t: string | null) => (t === null ? null : `${t.slice(0, 1024)}…`);
  return {
    ...d,
    key: keyTooBig ? head(d.key) : d.key,
    keyBytes: keyTooBig ? null : d.keyBytes,
    value: size > max ? head(d.value) : d.value,
    valueBytes: size > max ? (bytes ? bytes.subarray(0, 1024) : null) : d.valueBytes,
    valueSize: size,
    valueSha256: bytes ? createHash("sha256").update(bytes).digest("hex") : undefined,
    error: size > max || keyTooBig ? `${d.error} (${CAPPED})` : d.error,
  };
}

export function createApplier(deps: { sql: Sql; stateSchema: string; metrics?: Metrics; log: Logger; maxValueBytes?: number; fences?: Fences }) {
  const { sql, metrics, log } = deps;
  /** the checkpoint this instance last claimed or committed per part: the database holding less lost commits */
  const committed = deps.fences?.positions ?? new Map<string, bigint>();
  const maxValueBytes = deps.maxValueBytes ?? 1 << 20;
  const state = quoteIdent(deps.stateSchema);
  const own = stateStatements(state);
  const statements = new WeakMap<Target, TargetStatements>();
  const stmts = (t: Target) => {
    let s = statements.get(t);
    if (!s) statements.set(t, (s = new TargetStatements(t, state)));
    return s;
  };

  /** (commit LSN, LSN, key text) columns of the changes, as array literals. */
  const positionParams = (cs: Change[]) => [numberArray(cs.length, (j) => cs[j]!.commitLsn), numberArray(cs.length, (j) => cs[j]!.lsn), textArray(cs.length, (j) => cs[j]!.keyText)];

  /** Sends a table's statements on the transaction's connection at once, without waiting between them. */
  function startTable(tx: Tx, t: Target, changes: Change[]): Promise<TableCount> {
    const s = stmts(t);
    const deletes: Change[] = [];
    const tombstones: Change[] = [];
    // changes with unchanged-TOAST columns have fewer columns: one statement per column set
    const groups = new Map<string, Change[]>();
    for (const c of changes) {
      if (c.kind === Kind.Delete) (c.commitLsn >= 0n ? deletes : tombstones).push(c);
      else {
        const sig = (c.partial ? "partial\u0000" : "\u0000") + c.cols!.join("\u0000");
        const g = groups.get(sig);
        if (g) g.push(c);
        else groups.set(sig, [c]);
      }
    }
    const deleted: Promise<number>[] = [];
    const upserted: Promise<number>[] = [];
    const send = (q: string, params: unknown[]) => tx.unsafe(q, params as never[], PREPARED).execute();
    const soft = softDeleteColumn(t) !== null;
    if (deletes.length) {
      const params: unknown[] = t.key.map((_, i) => textArray(deletes.length, (j) => deletes[j]!.key[i]!));
      params.push(...positionParams(deletes), t.table.name, textArray(deletes.length, (j) => `${deletes[j]!.coord.stream} ${deletes[j]!.coord.part}`));
      if (soft) params.push(numberArray(deletes.length, (j) => deletes[j]!.sourceTs));
      deleted.push(send(s.delete(), params).then((r) => r[0]!.n as number));
    }
    if (tombstones.length) {
      const params: unknown[] = t.key.map((_, i) => textArray(tombstones.length, (j) => tombstones[j]!.key[i]!));
      params.push(textArray(tombstones.length, (j) => tombstones[j]!.keyText), t.table.name);
      deleted.push(send(s.tombstoneDelete(), params).then((r) => r[0]!.n as number));
    }
    const dead: DeadLetter[] = [];
    for (const g of groups.values()) {
      const cols = g[0]!.cols!;
      const single = g.length === 1;
      const deletedAt = (c: Change) => (c.deletedAt === undefined ? null : String(c.deletedAt));
      let params: unknown[];
      if (single) {
        const c = g[0]!;
        params = [...c.vals!, String(c.commitLsn), String(c.lsn), c.keyText, t.table.name];
        if (soft) params.push(deletedAt(c));
      } else {
        params = cols.map((_, i) => textArray(g.length, (j) => g[j]!.vals![i]!));
        params.push(...positionParams(g), t.table.name);
        if (soft) params.push(textArray(g.length, (j) => deletedAt(g[j]!)));
      }
      if (!g[0]!.partial) {
        // the command tag counts inserted and updated rows: no RETURNING rows to send and parse
        upserted.push(send(s.upsert(cols, single), params).then((r) => r.count));
        continue;
      }
      const partial = s.partialUpsert(cols, single);
      upserted.push(
        send(partial.sql, params).then((r) => {
          const row = r[0] as unknown as { updated: number; inserted: number; missing: string[] };
          if (row.missing.length) dead.push(...missingRows(t, g, new Set(row.missing), partial.absentNotNull));
          return row.updated + row.inserted;
        }),
      );
    }
    const sum = (ns: number[]) => ns.reduce((a, b) => a + b, 0);
    return Promise.all([Promise.all(deleted), Promise.all(upserted)]).then(([d, u]) => ({ table: t.table.name, upsert: sum(u), delete: sum(d), changes: changes.length - dead.length, dead }));
  }

  /** Dead letters for updates of rows that are not stored and cannot be created without the columns they left out. */
  function missingRows(t: Target, changes: Change[], keys: Set<string>, absent: string[]): DeadLetter[] {
    return changes
      .filter((c) => keys.has(c.keyText))
      .map((c) => {
        const error = `row ${c.keyText} is not in ${t.table.name}, and this update left out NOT NULL column(s) ${absent.join(", ")} (unchanged TOAST values): it cannot be inserted`;
        log.warn("update of a row not stored yet, without its unchanged-TOAST columns; dead-lettered", { table: t.table.name, key: c.keyText, columns: absent });
        return { coord: c.coord, table: t.table.name, stage: "apply" as const, ...rawOf(c), error, code: "TOAST_ROW_MISSING" };
      });
  }

  /** All changes, every table's statements pipelined. */
  function applyAll(tx: Tx, changes: Change[]): Promise<TableCount[]> {
    const byTable = new Map<Target, Change[]>();
    for (const c of changes) {
      const g = byTable.get(c.target);
      if (g) g.push(c);
      else byTable.set(c.target, [c]);
    }
    return Promise.all([...byTable].map(([t, cs]) => startTable(tx, t, cs)));
  }

  /** Applies `changes`; a data error bisects under savepoints down to the rejected rows. */
  async function applyIsolating(tx: Tx, changes: Change[], dead: DeadLetter[]): Promise<TableCount[]> {
    try {
      return await tx.savepoint((sp) => applyAll(sp as unknown as Tx, changes));
    } catch (e) {
      if (!isDataError(e)) throw e;
      if (changes.length === 1) {
        const c = changes[0]!;
        const err = e as { message: string; code?: string };
        const column = await rejectedColumn(tx, c);
        // PostgreSQL's message can quote the value: it stays in the dead-letter table, out of the logs
        log.warn("row rejected by the database, dead-lettered", { table: c.target.table.name, key: c.keyText, code: err.code, column, part: c.coord.part, position: c.coord.position });
        const error = column ? `column ${column}: ${err.message}` : err.message;
        dead.push({ coord: c.coord, table: c.target.table.name, stage: "apply", ...rawOf(c), error, code: err.code ?? "DATA" });
        return [];
      }
      const mid = changes.length >> 1;
      const a = await applyIsolating(tx, changes.slice(0, mid), dead);
      const b = await applyIsolating(tx, changes.slice(mid), dead);
      return [...a, ...b];
    }
  }

  /**
   * The column whose value the database rejects, found by casting each value alone to its column's
   * declared type (under a savepoint); undefined when each casts (a constraint rejected the row:
   * PostgreSQL's message names it).
   */
  async function rejectedColumn(tx: Tx, c: Change): Promise<string | undefined> {
    if (c.kind !== Kind.Upsert || !c.cols) return undefined;
    for (let i = 0; i < c.cols.length; i++) {
      const v = c.vals![i];
      const col = c.target.table.columns.get(c.cols[i]!);
      if (v === null || v === undefined || !col) continue;
      // an explicit cast to varchar(n)/char(n) cuts instead of failing: their length is counted here
      // (an excess of trailing spaces is cut on assignment too, for both)
      if ((col.type === "varchar" || col.type === "bpchar") && !col.isArray && col.precision !== null) {
        if (longerThan(v, col.precision)) return c.cols[i];
        continue;
      }
      try {
        // the parameter as text: postgres.js would serialize a timestamp parameter through Date
        await tx.savepoint((sp) => sp.unsafe(`SELECT (($1::text)::${col.castType})::${col.sqlType}`, [v]));
      } catch (e) {
        // anything else (the connection lost) fails the batch's next statement, which is retried
        return isDataError(e) ? c.cols[i] : undefined;
      }
    }
    return undefined;
  }

  /**
   * True when `s` has more than `limit` characters (code points), trailing spaces aside. Counted in
   * place: spreading a 16 MiB string made an array of 16 million strings.
   */
  function longerThan(s: string, limit: number): boolean {
    let end = s.length;
    while (end > 0 && s.charCodeAt(end - 1) === 32) end--;
    let n = 0;
    for (let i = 0; i < end; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < end) {
        const d = s.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) i++;
      }
      if (++n > limit) return true;
    }
    return false;
  }

  function truncate(tx: Tx, t: Target): Promise<TableCount> {
    return Promise.all(stmts(t).truncate().map(([q, params]) => tx.unsafe(q, params).execute())).then(() => ({ table: t.table.name, upsert: 0, delete: 0, truncate: 1, changes: 0 }));
  }

  function writeDeadLetters(tx: Tx, all: DeadLetter[]): Promise<unknown> {
    if (!all.length) return Promise.resolve();
    failpoint("mid-dead-letters");
    const dead = all.map((d) => capped(d, maxValueBytes));
    const n = dead.length;
    const text = (f: (d: DeadLetter) => string | null) => textArray(n, (i) => pgText(f(dead[i]!)));
    const hex = (f: (d: DeadLetter) => Uint8Array | null | undefined) =>
      textArray(n, (i) => {
        const b = f(dead[i]!);
        return b ? Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex") : null;
      });
    const params = [
      text((d) => d.coord.stream),
      text((d) => d.coord.part),
      text((d) => String(d.coord.position)),
      text((d) => d.table),
      text((d) => d.stage),
      text((d) => d.key),
      text((d) => d.value),
      text((d) => d.error),
      text((d) => d.code),
      hex((d) => d.keyBytes),
      hex((d) => d.valueBytes),
      numberArray(n, (i) => dead[i]!.valueSize ?? byteLength(dead[i]!.value, dead[i]!.valueBytes)),
      textArray(n, (i) => dead[i]!.valueSha256 ?? null),
    ];
    return tx.unsafe(own.writeDeadLetters, params).execute();
  }

  /**
   * Locks the batch's checkpoint rows; returns the stored position of each part another member
   * already moved past the batch's start. Throws Fenced when another instance claimed a part since
   * this one did, CheckpointLost when the database holds less than this instance committed.
   */
  function lockCheckpoints(tx: Tx, parts: PartProgress[]): Promise<Map<string, bigint>> {
    if (!parts.length) return Promise.resolve(new Map());
    const params = [textArray(parts.length, (i) => parts[i]!.stream), textArray(parts.length, (i) => parts[i]!.part)];
    // sent together: the claims are read after the checkpoint rows are locked
    const locked = tx.unsafe(own.lockCheckpoints, params, PREPARED).execute();
    const claims = deps.fences ? tx.unsafe(own.readClaims, params, PREPARED).execute() : Promise.resolve([]);
    return Promise.all([locked, claims]).then(([stored, owners]) => {
      const fenced = owners.filter((r) => {
        const claimed = deps.fences!.get(partKey(r as unknown as { stream: string; part: string }));
        return claimed !== undefined && BigInt(r.generation as string) !== claimed;
      });
      if (fenced.length) throw new Fenced(fenced.map((r) => r.part as string));
      const first = new Map(parts.map((p) => [partKey(p), p.first]));
      const have = new Map<string, bigint>();
      const floor = new Map<string, bigint>();
      for (const r of stored) {
        const k = partKey(r as unknown as { stream: string; part: string });
        const pos = BigInt(r.position as string);
        have.set(k, pos);
        if (pos > first.get(k)!) floor.set(k, pos);
      }
      const lost = [];
      for (const p of parts) {
        const k = partKey(p);
        const mine = committed.get(k);
        const now = have.get(k);
        if (mine !== undefined && (now === undefined || now < mine)) lost.push({ part: p.part, committed: mine, stored: now, k });
      }
      if (lost.length) {
        // the source reads again from what the database holds: expect that from now on
        for (const l of lost) if (l.stored === undefined) committed.delete(l.k);
        else committed.set(l.k, l.stored);
        throw new CheckpointLost(lost);
      }
      return floor;
    });
  }

  function writeCheckpoints(tx: Tx, parts: PartProgress[]): Promise<unknown> {
    if (!parts.length) return Promise.resolve();
    const params = [textArray(parts.length, (i) => parts[i]!.stream), textArray(parts.length, (i) => parts[i]!.part), numberArray(parts.length, (i) => parts[i]!.next)];
    return tx.unsafe(own.writeCheckpoints, params, PREPARED).execute();
  }

  /** The usual case, in about three round trips: every statement is sent at once. */
  async function pipelined(tx: Tx, batch: ChangeBatch, parts: PartProgress[]): Promise<Outcome> {
    failpoint("after-begin");
    const floor = lockCheckpoints(tx, parts);
    const truncated = [...batch.truncates.values()].map((t) => truncate(tx, t));
    const applied = applyAll(tx, batch.changes());
    const rest = [writeDeadLetters(tx, batch.deadLetters), writeCheckpoints(tx, parts)];
    const [f, counts] = await Promise.all([floor, Promise.all([...truncated, applied]).then((cs) => cs.flat()), ...rest]);
    if (f.size) throw new AlreadyApplied(f);
    const found = counts.flatMap((c) => c.dead ?? []);
    if (found.length) await writeDeadLetters(tx, found);
    // runs once the COMMIT this return triggers is on its way, before its answer is read
    setImmediate(() => failpoint("commit-sent"));
    return { counts, dead: [...batch.deadLetters, ...found], floor: f };
  }

  /** One statement group at a time: skips what another member applied, isolates rejected rows. */
  async function careful(tx: Tx, batch: ChangeBatch, parts: PartProgress[]): Promise<Outcome> {
    const floor = await lockCheckpoints(tx, parts);
    const keep = (coord: Coord) => {
      const f = floor.get(partKey(coord));
      return f === undefined || coord.position >= f;
    };
    if (floor.size) log.info("part of the batch was already applied; skipping it", { parts: [...floor.keys()].map((k) => k.replace("\u0000", " ")) });
    const dead = batch.deadLetters.filter((d) => keep(d.coord));
    const counts = await Promise.all([...batch.truncates.values()].map((t) => truncate(tx, t)));
    const changes = batch.changes(floor.size ? keep : undefined);
    if (changes.length) counts.push(...(await applyIsolating(tx, changes, dead)));
    for (const c of counts) if (c.dead) dead.push(...c.dead);
    await writeDeadLetters(tx, dead);
    await writeCheckpoints(tx, parts);
    return { counts, dead, floor };
  }

  function record(o: Outcome): void {
    if (!metrics) return;
    for (const c of o.counts) {
      if (c.upsert) metrics.rowsApplied.inc({ table: c.table, op: "upsert" }, c.upsert);
      if (c.delete) metrics.rowsApplied.inc({ table: c.table, op: "delete" }, c.delete);
      if (c.truncate) metrics.rowsApplied.inc({ table: c.table, op: "truncate" }, c.truncate);
      if (c.changes > c.upsert + c.delete) metrics.rowsSkipped.inc({ table: c.table }, c.changes - c.upsert - c.delete);
    }
    for (const d of o.dead) metrics.deadLetters.inc({ table: d.table ?? "", reason: d.stage === "decode" ? "decode" : d.code });
  }

  /** Applies the batch and its checkpoint atomically; throws (and commits nothing) on any non-data error. */
  return async function apply(batch: ChangeBatch): Promise<ApplyResult> {
    const parts = [...batch.parts.values()];
    let o: Outcome;
    try {
      o = await sql.begin((tx) => pipelined(tx, batch, parts));
    } catch (e) {
      if (!(e instanceof AlreadyApplied) && !isDataError(e)) throw e;
      o = await sql.begin((tx) => careful(tx, batch, parts));
    }
    record(o);
    let applied = 0;
    let skipped = 0;
    for (const c of o.counts) {
      applied += c.upsert + c.delete;
      skipped += c.changes - c.upsert - c.delete;
    }
    const done = parts.map((p) => {
      const f = o.floor.get(partKey(p));
      const next = f !== undefined && f > p.next ? f : p.next;
      committed.set(partKey(p), next);
      return { stream: p.stream, part: p.part, next };
    });
    return { applied, skipped, deadLetters: o.dead.length, parts: done };
  };
}
