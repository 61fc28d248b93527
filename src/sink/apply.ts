// Applies a batch in one analytics transaction: per table one delete and one unnest upsert
// statement, guarded by the row's source position; dead letters and the checkpoint in the same
// transaction, every statement sent at once. When part of the batch was already applied, or the
// database rejects a row, the batch goes again one step at a time, the rejected row isolated by
// bisecting under savepoints.
import type { Sql, TransactionSql } from "postgres";
import { type Batch, type Change, type Coord, type DeadLetter, Kind, partKey, type Target } from "../batch.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import { numberArray, textArray } from "./pgarray.ts";
import { quoteIdent } from "./schema.ts";

export interface ApplyResult {
  applied: number;
  skipped: number;
  deadLetters: number;
  /** checkpoint positions committed: part -> next position */
  positions: Map<string, { stream: string; part: string; next: number }>;
}

/** SQLSTATE classes a retry cannot fix: the row itself is bad. */
export function isDataError(e: unknown): boolean {
  const code = (e as { code?: string })?.code ?? "";
  return /^2[23]/.test(code) || code === "42804" || code === "54000";
}

const CONNECTION_CODES = new Set(["CONNECTION_CLOSED", "CONNECTION_ENDED", "CONNECTION_DESTROYED", "CONNECT_TIMEOUT", "ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENOTFOUND"]);
export function isConnectionError(e: unknown): boolean {
  const code = (e as { code?: string })?.code ?? "";
  return CONNECTION_CODES.has(code) || /^(08|57P0|53)/.test(code);
}

type Tx = TransactionSql;
type BatchPosition = { stream: string; part: string; first: number; next: number };
type TableCount = { table: string; upsert: number; delete: number; truncate?: number; changes: number };
type Outcome = { counts: TableCount[]; dead: DeadLetter[]; floor: Map<string, number> };

/** PostgreSQL text cannot hold NUL: shown as U+FFFD (dead letters keep the exact bytes beside it). */
const pgText = (s: string | null) => (s !== null && s.includes("\u0000") ? s.replaceAll("\u0000", "\uFFFD") : s);

/** The fast path saw checkpoint rows past the batch's start: it rolls back and takes the careful path. */
class AlreadyApplied extends Error {
  constructor(readonly floor: Map<string, number>) {
    super("part of the batch was already applied");
  }
}

// Named prepared statements: the batch statements are parsed and planned once per connection.
const PREPARED = { prepare: true };

interface Statements {
  upsert: Map<string, string>;
  delete?: string;
  tombstoneDelete?: string;
}

export function createApplier(deps: { sql: Sql; stateSchema: string; metrics?: Metrics; log: Logger }) {
  const { sql, metrics, log } = deps;
  const state = quoteIdent(deps.stateSchema);
  const cache = new Map<Target, Statements>();

  const stmts = (t: Target): Statements => {
    let s = cache.get(t);
    if (!s) cache.set(t, (s = { upsert: new Map() }));
    return s;
  };

  const keyCols = (t: Target) => t.key.map((k, i) => `t.${quoteIdent(k)} = u.k${i}::${t.table.columns.get(k)!.sqlType}`).join(" AND ");
  const unnestKeys = (t: Target, from: number) => t.key.map((_, i) => `$${from + i}::text[]`).join(", ");
  const keyAliases = (t: Target) => t.key.map((_, i) => `k${i}`).join(", ");
  const guard = `(COALESCE(t._cdc_commit_lsn, -1), COALESCE(t._cdc_lsn, -1))`;
  const soft = (t: Target) => (t.mapping.delete_mode === "soft" ? quoteIdent(t.mapping.soft_delete_column) : null);

  function upsertSql(t: Target, cols: string[]): string {
    const s = stmts(t);
    const sig = cols.join("\u0000");
    let q = s.upsert.get(sig);
    if (q) return q;
    const n = cols.length;
    const sd = soft(t);
    const keySet = new Set(t.key);
    const updates = cols.filter((c) => !keySet.has(c)).map((c) => `${quoteIdent(c)} = EXCLUDED.${quoteIdent(c)}`);
    updates.push("_cdc_commit_lsn = EXCLUDED._cdc_commit_lsn", "_cdc_lsn = EXCLUDED._cdc_lsn", "_cdc_synced_at = EXCLUDED._cdc_synced_at");
    // soft delete: dts is the deletion time of a row deleted within the batch (NULL: live row)
    if (sd) updates.push(`${sd} = EXCLUDED.${sd}`);
    const deletedAt = "CASE WHEN u.dts IS NULL THEN NULL WHEN u.dts > 0 THEN to_timestamp(u.dts / 1000.0) ELSE now() END";
    q = `INSERT INTO ${t.table.ident} AS t (${cols.map(quoteIdent).join(", ")}, _cdc_commit_lsn, _cdc_lsn, _cdc_synced_at${sd ? `, ${sd}` : ""})
SELECT ${cols.map((c, i) => `u.c${i}::${t.table.columns.get(c)!.sqlType}`).join(", ")}, u.ptx, u.p, now()${sd ? `, ${deletedAt}` : ""}
FROM unnest(${cols.map((_, i) => `$${i + 1}::text[]`).join(", ")}, $${n + 1}::int8[], $${n + 2}::int8[], $${n + 3}::text[]${sd ? `, $${n + 5}::float8[]` : ""})
  AS u(${cols.map((_, i) => `c${i}`).join(", ")}, ptx, p, kid${sd ? ", dts" : ""})
WHERE NOT EXISTS (SELECT 1 FROM ${state}.tombstones tb WHERE tb.tbl = $${n + 4} AND tb.key = u.kid AND (tb.commit_lsn, tb.lsn) >= (u.ptx, u.p))
ON CONFLICT (${t.key.map(quoteIdent).join(", ")}) DO UPDATE SET ${updates.join(", ")}
WHERE ${guard} < (EXCLUDED._cdc_commit_lsn, EXCLUDED._cdc_lsn)`;
    s.upsert.set(sig, q);
    return q;
  }

  function deleteSql(t: Target): string {
    const s = stmts(t);
    if (s.delete) return s.delete;
    const k = t.key.length;
    const sd = soft(t);
    // soft delete: flagged with the source's commit time when the event carries it
    const change = sd
      ? `UPDATE ${t.table.ident} t SET ${sd} = CASE WHEN u.ts > 0 THEN to_timestamp(u.ts / 1000.0) ELSE now() END, _cdc_commit_lsn = u.ptx, _cdc_lsn = u.p, _cdc_synced_at = now() FROM u`
      : `DELETE FROM ${t.table.ident} t USING u`;
    s.delete = `WITH u AS (SELECT * FROM unnest(${unnestKeys(t, 1)}, $${k + 1}::int8[], $${k + 2}::int8[], $${k + 3}::text[]${sd ? `, $${k + 5}::float8[]` : ""}) AS u(${keyAliases(t)}, ptx, p, kid${sd ? ", ts" : ""})),
del AS (${change} WHERE ${keyCols(t)} AND ${guard} < (u.ptx, u.p) RETURNING 1),
tomb AS (INSERT INTO ${state}.tombstones (tbl, key, commit_lsn, lsn) SELECT $${k + 4}, kid, ptx, p FROM u
  ON CONFLICT (tbl, key) DO UPDATE SET commit_lsn = EXCLUDED.commit_lsn, lsn = EXCLUDED.lsn, deleted_at = now()
  WHERE (tombstones.commit_lsn, tombstones.lsn) < (EXCLUDED.commit_lsn, EXCLUDED.lsn))
SELECT count(*)::int AS n FROM del`;
    return s.delete;
  }

  // A Kafka tombstone carries no position. It deletes the row unless a newer change is known:
  // when its delete event was applied, the tombstone table holds that delete's position.
  function tombstoneDeleteSql(t: Target): string {
    const s = stmts(t);
    if (s.tombstoneDelete) return s.tombstoneDelete;
    const k = t.key.length;
    const sd = soft(t);
    const from = `u LEFT JOIN ${state}.tombstones tb ON tb.tbl = $${k + 2} AND tb.key = u.kid`;
    const change = sd ? `UPDATE ${t.table.ident} t SET ${sd} = now(), _cdc_synced_at = now() FROM ${from}` : `DELETE FROM ${t.table.ident} t USING ${from}`;
    s.tombstoneDelete = `WITH u AS (SELECT * FROM unnest(${unnestKeys(t, 1)}, $${k + 1}::text[]) AS u(${keyAliases(t)}, kid)),
del AS (${change} WHERE ${keyCols(t)} AND (tb.key IS NULL OR ${guard} <= (tb.commit_lsn, tb.lsn)) RETURNING 1)
SELECT count(*)::int AS n FROM del`;
    return s.tombstoneDelete;
  }

  /** (commit position, position, key id) columns of the changes, as array literals. */
  const positionParams = (cs: Change[]) => [numberArray(cs.length, (j) => cs[j]!.posTx), numberArray(cs.length, (j) => cs[j]!.pos), textArray(cs.length, (j) => cs[j]!.keyId)];

  /** Sends a table's statements on the transaction's connection at once, without waiting between them. */
  function startTable(tx: Tx, t: Target, changes: Change[]): Promise<TableCount> {
    const deletes: Change[] = [];
    const tombstones: Change[] = [];
    // changes with unchanged-TOAST columns have fewer columns: one upsert per column set
    const groups = new Map<string, Change[]>();
    for (const c of changes) {
      if (c.kind === Kind.Delete) (c.posTx >= 0 ? deletes : tombstones).push(c);
      else {
        const sig = c.cols!.join("\u0000");
        const g = groups.get(sig);
        if (g) g.push(c);
        else groups.set(sig, [c]);
      }
    }
    const deleted: Promise<number>[] = [];
    const upserted: Promise<number>[] = [];
    const send = (q: string, params: unknown[]) => tx.unsafe(q, params as never[], PREPARED).execute();
    if (deletes.length) {
      const params: unknown[] = t.key.map((_, i) => textArray(deletes.length, (j) => deletes[j]!.key[i]!));
      params.push(...positionParams(deletes), t.table.name);
      if (soft(t)) params.push(numberArray(deletes.length, (j) => deletes[j]!.sourceTs));
      deleted.push(send(deleteSql(t), params).then((r) => r[0]!.n as number));
    }
    if (tombstones.length) {
      const params: unknown[] = t.key.map((_, i) => textArray(tombstones.length, (j) => tombstones[j]!.key[i]!));
      params.push(textArray(tombstones.length, (j) => tombstones[j]!.keyId), t.table.name);
      deleted.push(send(tombstoneDeleteSql(t), params).then((r) => r[0]!.n as number));
    }
    for (const g of groups.values()) {
      const cols = g[0]!.cols!;
      const params: unknown[] = cols.map((_, i) => textArray(g.length, (j) => g[j]!.vals![i]!));
      params.push(...positionParams(g), t.table.name);
      if (soft(t)) params.push(textArray(g.length, (j) => (g[j]!.deletedTs === undefined ? null : String(g[j]!.deletedTs))));
      // the command tag counts inserted and updated rows: no RETURNING rows to send and parse
      upserted.push(send(upsertSql(t, cols), params).then((r) => r.count));
    }
    const sum = (ns: number[]) => ns.reduce((a, b) => a + b, 0);
    return Promise.all([Promise.all(deleted), Promise.all(upserted)]).then(([d, u]) => ({ table: t.table.name, upsert: sum(u), delete: sum(d), changes: changes.length }));
  }

  /** All changes, every table's statements pipelined. */
  function applyAll(tx: Tx, changes: Change[]): Promise<TableCount[]> {
    const byTarget = new Map<Target, Change[]>();
    for (const c of changes) {
      const g = byTarget.get(c.target);
      if (g) g.push(c);
      else byTarget.set(c.target, [c]);
    }
    return Promise.all([...byTarget].map(([t, cs]) => startTable(tx, t, cs)));
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
        log.warn("row rejected by the database, dead-lettered", { table: c.target.table.name, key: c.keyId, code: err.code, error: err.message, part: c.coord.part, position: c.coord.position });
        dead.push({ coord: c.coord, table: c.target.table.name, stage: "apply", key: c.raw?.key ?? c.keyId, value: c.raw?.value ?? null, error: err.message, code: err.code ?? "DATA" });
        return [];
      }
      const mid = changes.length >> 1;
      const a = await applyIsolating(tx, changes.slice(0, mid), dead);
      const b = await applyIsolating(tx, changes.slice(mid), dead);
      return [...a, ...b];
    }
  }

  function truncate(tx: Tx, t: Target): Promise<TableCount> {
    const sd = soft(t);
    const rows = sd ? tx.unsafe(`UPDATE ${t.table.ident} SET ${sd} = now(), _cdc_synced_at = now() WHERE ${sd} IS NULL`).execute() : tx.unsafe(`DELETE FROM ${t.table.ident}`).execute();
    const tombs = tx.unsafe(`DELETE FROM ${state}.tombstones WHERE tbl = $1`, [t.table.name]).execute();
    return Promise.all([rows, tombs]).then(() => ({ table: t.table.name, upsert: 0, delete: 0, truncate: 1, changes: 0 }));
  }

  function writeDeadLetters(tx: Tx, dead: DeadLetter[]): Promise<unknown> {
    if (!dead.length) return Promise.resolve();
    const n = dead.length;
    const text = (f: (d: DeadLetter) => string | null) => textArray(n, (i) => pgText(f(dead[i]!)));
    const hex = (f: (d: DeadLetter) => Uint8Array | null | undefined) =>
      textArray(n, (i) => {
        const b = f(dead[i]!);
        return b ? Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex") : null;
      });
    return tx
      .unsafe(
        `INSERT INTO ${state}.dead_letters (stream, part, position, target_table, stage, key, value, error, error_code, key_bytes, value_bytes)
         SELECT s, p, pos, tbl, st, k, v, e, c, decode(kb, 'hex'), decode(vb, 'hex')
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])
           AS u(s, p, pos, tbl, st, k, v, e, c, kb, vb)`,
        [
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
        ] as never[],
      )
      .execute();
  }

  // Locks this batch's checkpoint rows: another member that applied part of these events (after a
  // rebalance, or a zombie) is seen here, and what it applied is not applied again.
  function lockCheckpoints(tx: Tx, positions: BatchPosition[]): Promise<Map<string, number>> {
    if (!positions.length) return Promise.resolve(new Map());
    return tx
      .unsafe(
        `SELECT stream, part, position FROM ${state}.checkpoints
         WHERE (stream, part) IN (SELECT * FROM unnest($1::text[], $2::text[])) FOR UPDATE`,
        [textArray(positions.length, (i) => positions[i]!.stream), textArray(positions.length, (i) => positions[i]!.part)] as never[],
        PREPARED,
      )
      .execute()
      .then((stored) => {
        const first = new Map(positions.map((p) => [partKey(p), p.first]));
        const floor = new Map<string, number>();
        for (const r of stored) {
          const k = partKey(r as unknown as { stream: string; part: string });
          const pos = Number(r.position);
          if (pos > first.get(k)!) floor.set(k, pos);
        }
        return floor;
      });
  }

  function writeCheckpoints(tx: Tx, positions: BatchPosition[]): Promise<unknown> {
    if (!positions.length) return Promise.resolve();
    return tx
      .unsafe(
        `INSERT INTO ${state}.checkpoints (stream, part, position, updated_at)
         SELECT s, p, pos, now() FROM unnest($1::text[], $2::text[], $3::int8[]) AS u(s, p, pos)
         ON CONFLICT (stream, part) DO UPDATE SET position = GREATEST(checkpoints.position, EXCLUDED.position), updated_at = now()`,
        [textArray(positions.length, (i) => positions[i]!.stream), textArray(positions.length, (i) => positions[i]!.part), numberArray(positions.length, (i) => positions[i]!.next)] as never[],
        PREPARED,
      )
      .execute();
  }

  const pendingChanges = (batch: Batch, keep?: (c: Coord) => boolean): Change[] => {
    const out: Change[] = [];
    for (const st of batch.tables.values()) for (const c of st.pending.values()) if (!keep || keep(c.coord)) out.push(c);
    return out;
  };

  /**
   * The usual case, in about three round trips: every statement is sent at once. When the locked
   * checkpoints show part of the batch already applied, or the database rejects a row, it rolls
   * back and the batch goes through `careful`.
   */
  async function fast(tx: Tx, batch: Batch, positions: BatchPosition[]): Promise<Outcome> {
    const floor = lockCheckpoints(tx, positions);
    const truncated = [...batch.truncates].map((t) => truncate(tx, t));
    const applied = applyAll(tx, pendingChanges(batch));
    const rest = [writeDeadLetters(tx, batch.deadLetters), writeCheckpoints(tx, positions)];
    const [f, counts] = await Promise.all([floor, Promise.all([...truncated, applied]).then((cs) => cs.flat()), ...rest]);
    if (f.size) throw new AlreadyApplied(f);
    return { counts, dead: batch.deadLetters, floor: f };
  }

  /** One statement group at a time: skips what another member applied, isolates rejected rows. */
  async function careful(tx: Tx, batch: Batch, positions: BatchPosition[]): Promise<Outcome> {
    const floor = await lockCheckpoints(tx, positions);
    const keep = (coord: Coord) => {
      const f = floor.get(partKey(coord));
      return f === undefined || coord.position >= f;
    };
    if (floor.size) log.info("part of the batch was already applied; skipping it", { parts: [...floor.keys()].map((k) => k.replace("\u0000", " ")) });
    const dead = batch.deadLetters.filter((d) => keep(d.coord));
    const counts = await Promise.all([...batch.truncates].map((t) => truncate(tx, t)));
    const changes = pendingChanges(batch, floor.size ? keep : undefined);
    if (changes.length) counts.push(...(await applyIsolating(tx, changes, dead)));
    await writeDeadLetters(tx, dead);
    await writeCheckpoints(tx, positions);
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

  return {
    /** Applies the batch and its checkpoint atomically; throws (and commits nothing) on any non-data error. */
    async apply(batch: Batch): Promise<ApplyResult> {
      const positions = [...batch.positions.values()];
      let o: Outcome;
      try {
        o = await sql.begin((tx) => fast(tx, batch, positions));
      } catch (e) {
        if (!(e instanceof AlreadyApplied) && !isDataError(e)) throw e;
        o = await sql.begin((tx) => careful(tx, batch, positions));
      }
      record(o);
      let applied = 0;
      let skipped = 0;
      for (const c of o.counts) {
        applied += c.upsert + c.delete;
        skipped += c.changes - c.upsert - c.delete;
      }
      const out = new Map<string, { stream: string; part: string; next: number }>();
      for (const p of positions) out.set(partKey(p), { stream: p.stream, part: p.part, next: Math.max(p.next, o.floor.get(partKey(p)) ?? 0) });
      return { applied, skipped, deadLetters: o.dead.length, positions: out };
    },

    /** Stored checkpoint positions of a stream: part -> next position. */
    async checkpoints(stream: string): Promise<Map<string, number>> {
      const rows = await sql.unsafe(`SELECT part, position FROM ${state}.checkpoints WHERE stream = $1`, [stream]);
      return new Map(rows.map((r) => [r.part as string, Number(r.position)]));
    },

    /** Forgets statements built for a target (after its table was re-introspected). */
    invalidate(t: Target): void {
      cache.delete(t);
    },
  };
}

export type Applier = ReturnType<typeof createApplier>;
