// The SQL of the apply stage, built once per target and column set: one statement per table and
// kind of change, every row guarded by its source position (commit LSN, LSN).
import type { Target } from "../model.ts";
import { quoteIdent } from "./schema.ts";

const GUARD = `(COALESCE(t._cdc_commit_lsn, -1), COALESCE(t._cdc_lsn, -1))`;

/**
 * May a tombstone hold back this change (u)? Only if the table has one at or above the change's
 * position: the horizon (the newest tombstone position per source part, written with the
 * tombstones) says so once per statement, and the per-key probe runs only for such changes. A
 * stream of new changes is newer than every tombstone, so its rows skip the probe. A key's
 * tombstones come from its own source part, whose checkpoint row this transaction holds locked,
 * so the horizon read here includes them.
 */
export const notDeletedLater = (state: string, tblParam: string) => `(NOT EXISTS (SELECT 1 FROM ${state}.tombstone_horizon WHERE tbl = ${tblParam})
  OR (u.commit_lsn, u.lsn) > (SELECT commit_lsn, lsn FROM ${state}.tombstone_horizon WHERE tbl = ${tblParam} ORDER BY commit_lsn DESC, lsn DESC LIMIT 1)
  OR NOT EXISTS (SELECT 1 FROM ${state}.tombstones tb WHERE tb.tbl = ${tblParam} AND tb.key = u.key_text AND (tb.commit_lsn, tb.lsn) >= (u.commit_lsn, u.lsn)))`;

export const softDeleteColumn = (t: Target) => (t.mapping.delete_mode === "soft" ? quoteIdent(t.mapping.soft_delete_column) : null);

const keyMatch = (t: Target) => t.key.map((k, i) => `t.${quoteIdent(k)} = u.k${i}::${t.table.columns.get(k)!.castType}`).join(" AND ");
const keyArrays = (t: Target, from: number) => t.key.map((_, i) => `$${from + i}::text[]`).join(", ");
const keyAliases = (t: Target) => t.key.map((_, i) => `k${i}`).join(", ");

/**
 * The one-row form of a statement over unnest(…) of array parameters: each parameter a value, not
 * an array literal. A large value (a batch of its own) then goes to the wire as it is, without the
 * escaped copy and the literal an array of one would cost.
 */
const scalarParams = (sql: string) => sql.replace(/\$(\d+)::(\w+)\[\]/g, "ARRAY[$$$1::$2]");

/** Statements of one target, cached per column set (and for one row). */
export class TargetStatements {
  readonly #upserts = new Map<string, string>();
  readonly #partials = new Map<string, { sql: string; absentNotNull: string[] }>();
  #delete?: string;
  #tombstoneDelete?: string;

  constructor(
    readonly target: Target,
    readonly state: string,
  ) {}

  /**
   * Parameters: one text[] per column, commit LSNs numeric[], LSNs numeric[] (exact over 64 bits), key texts text[], the table
   * name; soft-delete targets also the deletion time (ms, NULL for a live row) text[].
   */
  upsert(cols: string[], single = false): string {
    const sig = (single ? "1\u0000" : "\u0000") + cols.join("\u0000");
    let q = this.#upserts.get(sig);
    if (q) return q;
    const t = this.target;
    const n = cols.length;
    const softCol = softDeleteColumn(t);
    const keySet = new Set(t.key);
    const updates = cols.filter((c) => !keySet.has(c)).map((c) => `${quoteIdent(c)} = EXCLUDED.${quoteIdent(c)}`);
    updates.push("_cdc_commit_lsn = EXCLUDED._cdc_commit_lsn", "_cdc_lsn = EXCLUDED._cdc_lsn", "_cdc_synced_at = EXCLUDED._cdc_synced_at");
    if (softCol) updates.push(`${softCol} = EXCLUDED.${softCol}`);
    const deletedAt = "CASE WHEN u.deleted_at IS NULL THEN NULL WHEN u.deleted_at > 0 THEN to_timestamp(u.deleted_at / 1000.0) ELSE now() END";
    q = `INSERT INTO ${t.table.ident} AS t (${cols.map(quoteIdent).join(", ")}, _cdc_commit_lsn, _cdc_lsn, _cdc_synced_at${softCol ? `, ${softCol}` : ""})
SELECT ${cols.map((c, i) => `u.c${i}::${t.table.columns.get(c)!.castType}`).join(", ")}, u.commit_lsn, u.lsn, now()${softCol ? `, ${deletedAt}` : ""}
FROM unnest(${cols.map((_, i) => `$${i + 1}::text[]`).join(", ")}, $${n + 1}::numeric[], $${n + 2}::numeric[], $${n + 3}::text[]${softCol ? `, $${n + 5}::float8[]` : ""})
  AS u(${cols.map((_, i) => `c${i}`).join(", ")}, commit_lsn, lsn, key_text${softCol ? ", deleted_at" : ""})
WHERE ${notDeletedLater(this.state, `$${n + 4}`)}
ON CONFLICT (${t.key.map(quoteIdent).join(", ")}) DO UPDATE SET ${updates.join(", ")}
WHERE ${GUARD} < (EXCLUDED._cdc_commit_lsn, EXCLUDED._cdc_lsn)`;
    if (single) q = scalarParams(q);
    this.#upserts.set(sig, q);
    return q;
  }

  /**
   * An update that left unchanged-TOAST columns out cannot go through INSERT … ON CONFLICT:
   * PostgreSQL checks NOT NULL on the proposed row before it looks for the conflict. It updates the
   * stored row instead (position-guarded, the present columns only). A key not stored yet (and not
   * deleted later) is inserted when every absent column may be NULL; otherwise it is returned in
   * `missing`, to be dead-lettered. Parameters as for upsert(); returns one row
   * (updated, inserted, missing text[]).
   */
  partialUpsert(cols: string[], single = false): { sql: string; absentNotNull: string[] } {
    const sig = (single ? "1\u0000" : "\u0000") + cols.join("\u0000");
    const cached = this.#partials.get(sig);
    if (cached) return cached;
    const t = this.target;
    const n = cols.length;
    const softCol = softDeleteColumn(t);
    const present = new Set(cols);
    const absentNotNull = [...t.columns.values()].filter((c) => !present.has(c) && t.table.columns.get(c)!.notNull);
    const cast = (c: string, i: number) => `u.c${i}::${t.table.columns.get(c)!.castType}`;
    const keyMatch = t.key.map((k) => `t.${quoteIdent(k)} = ${cast(k, cols.indexOf(k))}`).join(" AND ");
    const keySet = new Set(t.key);
    const deletedAt = "CASE WHEN u.deleted_at IS NULL THEN NULL WHEN u.deleted_at > 0 THEN to_timestamp(u.deleted_at / 1000.0) ELSE now() END";
    const sets = cols.flatMap((c, i) => (keySet.has(c) ? [] : [`${quoteIdent(c)} = ${cast(c, i)}`]));
    sets.push("_cdc_commit_lsn = u.commit_lsn", "_cdc_lsn = u.lsn", "_cdc_synced_at = now()");
    if (softCol) sets.push(`${softCol} = ${deletedAt}`);
    const insert = absentNotNull.length
      ? ""
      : `,
ins AS (INSERT INTO ${t.table.ident} (${cols.map(quoteIdent).join(", ")}, _cdc_commit_lsn, _cdc_lsn, _cdc_synced_at${softCol ? `, ${softCol}` : ""})
  SELECT ${cols.map(cast).join(", ")}, u.commit_lsn, u.lsn, now()${softCol ? `, ${deletedAt}` : ""} FROM absent u
  ON CONFLICT DO NOTHING RETURNING 1)`;
    const sql = `WITH u AS (SELECT * FROM unnest(${cols.map((_, i) => `$${i + 1}::text[]`).join(", ")}, $${n + 1}::numeric[], $${n + 2}::numeric[], $${n + 3}::text[]${softCol ? `, $${n + 5}::float8[]` : ""})
  AS u(${cols.map((_, i) => `c${i}`).join(", ")}, commit_lsn, lsn, key_text${softCol ? ", deleted_at" : ""})),
upd AS (UPDATE ${t.table.ident} t SET ${sets.join(", ")} FROM u WHERE ${keyMatch} AND ${GUARD} < (u.commit_lsn, u.lsn) RETURNING 1),
absent AS (SELECT u.* FROM u WHERE NOT EXISTS (SELECT 1 FROM ${t.table.ident} t WHERE ${keyMatch})
  AND ${notDeletedLater(this.state, `$${n + 4}`)})${insert}
SELECT (SELECT count(*) FROM upd)::int AS updated, ${absentNotNull.length ? "0" : "(SELECT count(*) FROM ins)::int"} AS inserted,
  ${absentNotNull.length ? "ARRAY(SELECT key_text FROM absent)" : "'{}'::text[]"} AS missing`;
    const out = { sql: single ? scalarParams(sql) : sql, absentNotNull };
    this.#partials.set(sig, out);
    return out;
  }

  /**
   * Deletes (soft: flags) rows older than the delete and records the tombstone and the table's
   * tombstone horizon. Parameters: key text[] per key column, commit LSNs, LSNs, key texts, the
   * table name, source parts (stream and part of each change); soft: source times (ms).
   */
  delete(): string {
    if (this.#delete) return this.#delete;
    const t = this.target;
    const k = t.key.length;
    const softCol = softDeleteColumn(t);
    const change = softCol
      ? `UPDATE ${t.table.ident} t SET ${softCol} = CASE WHEN u.ts > 0 THEN to_timestamp(u.ts / 1000.0) ELSE now() END, _cdc_commit_lsn = u.commit_lsn, _cdc_lsn = u.lsn, _cdc_synced_at = now() FROM u`
      : `DELETE FROM ${t.table.ident} t USING u`;
    this.#delete = `WITH u AS (SELECT * FROM unnest(${keyArrays(t, 1)}, $${k + 1}::numeric[], $${k + 2}::numeric[], $${k + 3}::text[], $${k + 5}::text[]${softCol ? `, $${k + 6}::float8[]` : ""}) AS u(${keyAliases(t)}, commit_lsn, lsn, key_text, part${softCol ? ", ts" : ""})),
del AS (${change} WHERE ${keyMatch(t)} AND ${GUARD} < (u.commit_lsn, u.lsn) RETURNING 1),
tomb AS (INSERT INTO ${this.state}.tombstones (tbl, key, commit_lsn, lsn) SELECT $${k + 4}, key_text, commit_lsn, lsn FROM u
  ON CONFLICT (tbl, key) DO UPDATE SET commit_lsn = EXCLUDED.commit_lsn, lsn = EXCLUDED.lsn, deleted_at = now()
  WHERE (tombstones.commit_lsn, tombstones.lsn) < (EXCLUDED.commit_lsn, EXCLUDED.lsn)),
horizon AS (INSERT INTO ${this.state}.tombstone_horizon (tbl, part, commit_lsn, lsn)
  SELECT DISTINCT ON (part) $${k + 4}, part, commit_lsn, lsn FROM u ORDER BY part, commit_lsn DESC, lsn DESC
  ON CONFLICT (tbl, part) DO UPDATE SET commit_lsn = EXCLUDED.commit_lsn, lsn = EXCLUDED.lsn
  WHERE (tombstone_horizon.commit_lsn, tombstone_horizon.lsn) < (EXCLUDED.commit_lsn, EXCLUDED.lsn))
SELECT count(*)::int AS n FROM del`;
    return this.#delete;
  }

  /**
   * A Kafka tombstone carries no position. It deletes the row unless a newer change is known: when
   * its delete event was applied, the tombstone table holds that delete's position.
   * Parameters: key text[] per key column, key texts, the table name.
   */
  tombstoneDelete(): string {
    if (this.#tombstoneDelete) return this.#tombstoneDelete;
    const t = this.target;
    const k = t.key.length;
    const softCol = softDeleteColumn(t);
    const from = `u LEFT JOIN ${this.state}.tombstones tb ON tb.tbl = $${k + 2} AND tb.key = u.key_text`;
    const change = softCol ? `UPDATE ${t.table.ident} t SET ${softCol} = now(), _cdc_synced_at = now() FROM ${from}` : `DELETE FROM ${t.table.ident} t USING ${from}`;
    this.#tombstoneDelete = `WITH u AS (SELECT * FROM unnest(${keyArrays(t, 1)}, $${k + 1}::text[]) AS u(${keyAliases(t)}, key_text)),
del AS (${change} WHERE ${keyMatch(t)} AND (tb.key IS NULL OR ${GUARD} <= (tb.commit_lsn, tb.lsn)) RETURNING 1)
SELECT count(*)::int AS n FROM del`;
    return this.#tombstoneDelete;
  }

  /** Empties the table (soft: flags every live row) and forgets its tombstones: statements with their parameters. */
  truncate(): Array<[string, string[]]> {
    const t = this.target;
    const softCol = softDeleteColumn(t);
    return [
      [softCol ? `UPDATE ${t.table.ident} SET ${softCol} = now(), _cdc_synced_at = now() WHERE ${softCol} IS NULL` : `DELETE FROM ${t.table.ident}`, []],
      [`DELETE FROM ${this.state}.tombstones WHERE tbl = $1`, [t.table.name]],
      [`DELETE FROM ${this.state}.tombstone_horizon WHERE tbl = $1`, [t.table.name]],
    ];
  }
}

/** The sink's own statements in the state schema. */
export function stateStatements(state: string) {
  return {
    /** Locks this batch's checkpoint rows: what another member applied meanwhile is seen here. */
    lockCheckpoints: `SELECT stream, part, position FROM ${state}.checkpoints
      WHERE (stream, part) IN (SELECT * FROM unnest($1::text[], $2::text[])) FOR UPDATE`,
    writeCheckpoints: `INSERT INTO ${state}.checkpoints (stream, part, position, updated_at)
      SELECT s, p, pos, now() FROM unnest($1::text[], $2::text[], $3::int8[]) AS u(s, p, pos)
      ON CONFLICT (stream, part) DO UPDATE SET position = GREATEST(checkpoints.position, EXCLUDED.position), updated_at = now()`,
    readCheckpoints: `SELECT part, position FROM ${state}.checkpoints WHERE stream = $1`,
    /** a new owner's claim: the next generation of each part, with the part's checkpoint if it has one */
    claimParts: `WITH c AS (INSERT INTO ${state}.claims (stream, part, generation)
        SELECT $1, p, 1 FROM unnest($2::text[]) AS u(p)
        ON CONFLICT (stream, part) DO UPDATE SET generation = claims.generation + 1, claimed_at = now()
        RETURNING part, generation)
      SELECT c.part, c.generation, k.position FROM c LEFT JOIN ${state}.checkpoints k ON k.stream = $1 AND k.part = c.part`,
    /** the owner generation of the batch's parts */
    readClaims: `SELECT stream, part, generation FROM ${state}.claims WHERE (stream, part) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
    writeDeadLetters: `INSERT INTO ${state}.dead_letters (stream, part, position, target_table, stage, key, value, error, error_code, key_bytes, value_bytes, value_size, value_sha256)
      SELECT s, p, pos, tbl, st, k, v, e, c, decode(kb, 'hex'), decode(vb, 'hex'), vs, vh
      FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::int8[], $13::text[])
        AS u(s, p, pos, tbl, st, k, v, e, c, kb, vb, vs, vh)`,
  };
}
