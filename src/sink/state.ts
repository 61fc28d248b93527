// The sink's own tables in the state schema: checkpoints, dead letters (and the audit of their
// handling), tombstones of deleted keys, the log of schema changes and the source column types last
// seen per mapping.
import type { Sql } from "postgres";
import type { CheckpointStore } from "../pipeline.ts";
import { textArray } from "./pgarray.ts";
import { quoteIdent } from "./schema.ts";
import { stateStatements } from "./statements.ts";

export async function ensureStateTables(sql: Sql, schema: string): Promise<void> {
  const s = quoteIdent(schema);
  await sql.begin(async (tx) => {
    // concurrent instances starting together would race on CREATE ... IF NOT EXISTS
    await tx`SELECT pg_advisory_xact_lock(hashtext(${"cdc_sink_state:" + schema}))`;
    await tx.unsafe(`CREATE SCHEMA IF NOT EXISTS ${s}`);
    await tx.unsafe(`CREATE TABLE IF NOT EXISTS ${s}.checkpoints (
      stream text NOT NULL, part text NOT NULL, position bigint NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (stream, part))`);
    await tx.unsafe(`CREATE TABLE IF NOT EXISTS ${s}.dead_letters (
      id bigserial PRIMARY KEY, failed_at timestamptz NOT NULL DEFAULT now(),
      stream text NOT NULL, part text NOT NULL, position text NOT NULL,
      target_table text, stage text NOT NULL, key text, value text, error text NOT NULL, error_code text,
      key_bytes bytea, value_bytes bytea)`);
    // the owner generation of each part (zombie fencing, sink/fence.ts)
    await tx.unsafe(`CREATE TABLE IF NOT EXISTS ${s}.claims (
      stream text NOT NULL, part text NOT NULL, generation bigint NOT NULL, claimed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (stream, part))`);
    await tx.unsafe(`ALTER TABLE ${s}.dead_letters ADD COLUMN IF NOT EXISTS key_bytes bytea, ADD COLUMN IF NOT EXISTS value_bytes bytea,
      ADD COLUMN IF NOT EXISTS value_size bigint, ADD COLUMN IF NOT EXISTS value_sha256 text`);
    await tx.unsafe(`CREATE TABLE IF NOT EXISTS ${s}.tombstones (
      tbl text NOT NULL, key text NOT NULL, commit_lsn numeric(20,0) NOT NULL, lsn numeric(20,0) NOT NULL,
      deleted_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (tbl, key))`);
    // the newest tombstone position per table and source part: new changes above it skip the per-key probe
    const [horizon] = await tx`SELECT to_regclass(${`${s}.tombstone_horizon`}) AS oid`;
    await tx.unsafe(`CREATE TABLE IF NOT EXISTS ${s}.tombstone_horizon (
      tbl text NOT NULL, part text NOT NULL, commit_lsn numeric(20,0) NOT NULL, lsn numeric(20,0) NOT NULL, PRIMARY KEY (tbl, part))`);
    // tombstones written before the horizon existed: one row per table holds their newest position
    if (!horizon?.oid)
      await tx.unsafe(`INSERT INTO ${s}.tombstone_horizon (tbl, part, commit_lsn, lsn)
        SELECT DISTINCT ON (tbl) tbl, '', commit_lsn, lsn FROM ${s}.tombstones ORDER BY tbl, commit_lsn DESC, lsn DESC`);
    // `cdc-sink dlq`: retries of a dead letter; a retried or discarded one moves to the audit table
    await tx.unsafe(`ALTER TABLE ${s}.dead_letters ADD COLUMN IF NOT EXISTS retries integer NOT NULL DEFAULT 0,
      ADD COLUMN IF NOT EXISTS last_retry_at timestamptz`);
    await tx.unsafe(`CREATE TABLE IF NOT EXISTS ${s}.dead_letter_audit (
      audit_id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), actor text NOT NULL DEFAULT current_user,
      action text NOT NULL, outcome text NOT NULL, note text,
      id bigint NOT NULL, failed_at timestamptz, stream text, part text, position text, target_table text, stage text,
      key text, value text, error text, error_code text, key_bytes bytea, value_bytes bytea, value_size bigint, value_sha256 text,
      retries integer)`);
    // every schema change met (init, a source column added or retyped) and what was done about it
    await tx.unsafe(`CREATE TABLE IF NOT EXISTS ${s}.schema_log (
      id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), tbl text NOT NULL, mapping text NOT NULL,
      col text, change text NOT NULL, action text NOT NULL, policy text, source_type text, old_type text, new_type text,
      statement text, detail text)`);
    // the source type of each mapped column as last judged: a change is what differs from it
    await tx.unsafe(`CREATE TABLE IF NOT EXISTS ${s}.source_columns (
      tbl text NOT NULL, mapping text NOT NULL, col text NOT NULL, source_type text, seen_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (tbl, mapping, col))`);
    // every initial copy of a PostgreSQL source, by its snapshot's LSN: a copy taken again removes the rows an earlier one left
    await tx.unsafe(`CREATE TABLE IF NOT EXISTS ${s}.snapshots (
      stream text NOT NULL, lsn numeric(20,0) NOT NULL, started_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (stream, lsn))`);
    // positions are unsigned 64-bit: installations from before kept them in bigint
    const [old] = await tx`SELECT 1 FROM information_schema.columns WHERE table_schema = ${schema} AND table_name = 'tombstones' AND column_name = 'lsn' AND data_type = 'bigint'`;
    if (old) await tx.unsafe(`ALTER TABLE ${s}.tombstones ALTER COLUMN commit_lsn TYPE numeric(20,0), ALTER COLUMN lsn TYPE numeric(20,0)`);
  });
}

/** Checkpoints as committed with the rows: what each source part resumes from. */
export function createCheckpointStore(sql: Sql, schema: string): CheckpointStore {
  const own = stateStatements(quoteIdent(schema));
  return {
    async load(stream) {
      const rows = await sql.unsafe(own.readCheckpoints, [stream]);
      return new Map(rows.map((r) => [r.part as string, BigInt(r.position as string)]));
    },
    async claim(stream, parts) {
      const rows = await sql.unsafe(own.claimParts, [stream, textArray(parts.length, (i) => parts[i]!)] as never[]);
      return new Map(rows.map((r) => [r.part as string, { position: r.position === null ? undefined : BigInt(r.position as string), generation: BigInt(r.generation as string) }]));
    },
  };
}

/** Checkpoint rows of one part (`part`), or of every partition of a topic (`topic`: parts `<topic>/<n>`). */
export type CheckpointRows = { stream: string; part: string } | { stream: string; topic: string };

/**
 * Runs `fn` while another transaction on `sql` holds the pipeline's checkpoint rows `rows` locked:
 * the pipeline's batches (which lock them first) and `fn`'s writes commit one after the other.
 */
export async function withCheckpointsHeld<T>(sql: Sql, schema: string, rows: CheckpointRows | undefined, fn: () => Promise<T>): Promise<T> {
  if (!rows) return fn();
  const held = await sql.reserve();
  try {
    await held.unsafe("BEGIN");
    const table = `${quoteIdent(schema)}.checkpoints`;
    if ("part" in rows) await held.unsafe(`SELECT 1 FROM ${table} WHERE stream = $1 AND part = $2 FOR UPDATE`, [rows.stream, rows.part]);
    else await held.unsafe(`SELECT 1 FROM ${table} WHERE stream = $1 AND left(part, length($2) + 1) = $2 || '/' FOR UPDATE`, [rows.stream, rows.topic]);
    const out = await fn();
    await held.unsafe("COMMIT");
    return out;
  } catch (e) {
    await held.unsafe("ROLLBACK").catch(() => {});
    throw e;
  } finally {
    held.release();
  }
}
