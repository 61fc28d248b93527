// The dead-letter table as `cdc-sink dlq` reads and changes it. A dead letter is pending while it
// is in <state_schema>.dead_letters; retried successfully or discarded, it moves to
// dead_letter_audit (with who, when, what was done and the dead letter itself); a failed retry
// leaves it pending with the new error, counted in `retries`, and an audit row of the attempt.
import type { Sql } from "postgres";
import { quoteIdent } from "../sink/schema.ts";

export interface DeadLetterRow {
  id: string;
  failed_at: Date;
  stream: string;
  part: string;
  position: string;
  target_table: string | null;
  stage: string;
  key: string | null;
  value: string | null;
  error: string;
  error_code: string | null;
  key_bytes: Buffer | null;
  value_bytes: Buffer | null;
  value_size: string | null;
  value_sha256: string | null;
  retries: number;
  last_retry_at: Date | null;
}

export interface AuditRow extends Omit<DeadLetterRow, "last_retry_at"> {
  audit_id: string;
  at: Date;
  actor: string;
  action: string;
  outcome: string;
  note: string | null;
}

export interface Filter {
  table?: string;
  ids?: bigint[];
}

/** The dead-letter columns, in the order both tables have them. */
const COLUMNS = "id, failed_at, stream, part, position, target_table, stage, key, value, error, error_code, key_bytes, value_bytes, value_size, value_sha256, retries";

const where = (f: Filter) => `($1::text IS NULL OR target_table = $1) AND ($2::int8[] IS NULL OR id = ANY($2::int8[]))`;
const params = (f: Filter) => [f.table ?? null, f.ids ? `{${f.ids.join(",")}}` : null] as never[];

/** Names of the SQLSTATEs dead letters usually carry. */
const SQLSTATE: Record<string, string> = {
  "22001": "value too long for the column",
  "22003": "number out of range",
  "22007": "invalid date/time format",
  "22008": "date/time out of range",
  "22P02": "invalid text for the type",
  "23502": "NOT NULL violated",
  "23505": "unique violation",
  "23514": "check constraint violated",
  "42804": "type mismatch",
};

/** How `list` names why a dead letter exists: its stage and code. */
export const reasonOf = (stage: string, code: string | null) => `${stage} ${code ?? "?"}${code && SQLSTATE[code] ? ` (${SQLSTATE[code]})` : ""}`;

export class DeadLetterStore {
  readonly #s: string;
  constructor(
    readonly sql: Sql,
    stateSchema: string,
  ) {
    this.#s = quoteIdent(stateSchema);
  }

  /** Pending dead letters per table and reason. */
  async summary(f: Filter = {}): Promise<Array<{ table: string; stage: string; code: string | null; count: number; oldest: Date; newest: Date }>> {
    const rows = await this.sql.unsafe(
      `SELECT coalesce(target_table, '') AS table, stage, error_code AS code, count(*)::int AS count, min(failed_at) AS oldest, max(failed_at) AS newest
       FROM ${this.#s}.dead_letters WHERE ${where(f)} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`,
      params(f),
    );
    return rows as never;
  }

  /** Pending dead letters, oldest first (after `afterId`), at most `limit`. */
  async list(f: Filter = {}, limit = 1000, afterId = 0n): Promise<DeadLetterRow[]> {
    const rows = await this.sql.unsafe(
      `SELECT ${COLUMNS}, last_retry_at FROM ${this.#s}.dead_letters WHERE ${where(f)} AND id > $3 ORDER BY id LIMIT $4`,
      [...params(f), String(afterId), limit] as never[],
    );
    return rows as unknown as DeadLetterRow[];
  }

  async count(f: Filter = {}): Promise<number> {
    const [r] = await this.sql.unsafe(`SELECT count(*)::int AS n FROM ${this.#s}.dead_letters WHERE ${where(f)}`, params(f));
    return r!.n as number;
  }

  async get(id: bigint): Promise<DeadLetterRow | undefined> {
    const [r] = await this.sql.unsafe(`SELECT ${COLUMNS}, last_retry_at FROM ${this.#s}.dead_letters WHERE id = $1`, [String(id)]);
    return r as DeadLetterRow | undefined;
  }

  /** What was done with dead letter `id`, newest last. */
  async history(id: bigint): Promise<AuditRow[]> {
    const rows = await this.sql.unsafe(`SELECT audit_id, at, actor, action, outcome, note, ${COLUMNS} FROM ${this.#s}.dead_letter_audit WHERE id = $1 ORDER BY audit_id`, [String(id)]);
    return rows as unknown as AuditRow[];
  }

  async maxId(): Promise<bigint> {
    const [r] = await this.sql.unsafe(`SELECT coalesce(max(id), 0)::text AS id FROM ${this.#s}.dead_letters`);
    return BigInt(r!.id as string);
  }

  /** Moves dead letters to the audit table; returns the ids moved. */
  async resolve(f: Filter, action: "retry" | "discard", outcome: string, note: string | null): Promise<string[]> {
    const rows = await this.sql.unsafe(
      `WITH moved AS (DELETE FROM ${this.#s}.dead_letters WHERE ${where(f)} RETURNING ${COLUMNS})
       INSERT INTO ${this.#s}.dead_letter_audit (action, outcome, note, ${COLUMNS}) SELECT $3, $4, $5, ${COLUMNS} FROM moved RETURNING id::text AS id`,
      [...params(f), action, outcome, note] as never[],
    );
    return rows.map((r) => r.id as string);
  }

  /** A retry that failed again: the dead letter stays, with the new error; the attempt is audited. */
  async failedAgain(id: bigint, error: string, code: string | null): Promise<void> {
    await this.sql.begin(async (tx) => {
      await tx.unsafe(`UPDATE ${this.#s}.dead_letters SET retries = retries + 1, last_retry_at = now(), error = $2, error_code = $3 WHERE id = $1`, [String(id), error, code] as never[]);
      await tx.unsafe(`INSERT INTO ${this.#s}.dead_letter_audit (action, outcome, note, id, target_table, error, error_code) SELECT 'retry', 'failed', $2, id, target_table, error, error_code FROM ${this.#s}.dead_letters WHERE id = $1`, [String(id), error] as never[]);
    });
  }

  /** Dead letters written after `afterId` at these coordinates (a retry's own, when it was rejected again); deleted, returned. */
  async takeNew(afterId: bigint, match: { stream: string; part?: string; position?: string; key?: string | null }): Promise<Array<{ error: string; error_code: string | null }>> {
    const rows = await this.sql.unsafe(
      `DELETE FROM ${this.#s}.dead_letters WHERE id > $1 AND stream = $2 AND ($3::text IS NULL OR part = $3) AND ($4::text IS NULL OR position = $4) AND ($5::text IS NULL OR key = $5)
       RETURNING error, error_code`,
      [String(afterId), match.stream, match.part ?? null, match.position ?? null, match.key ?? null] as never[],
    );
    return rows as never;
  }

  /** Pending dead letters per table. */
  async pendingByTable(): Promise<Map<string, number>> {
    const rows = await this.sql.unsafe(`SELECT coalesce(target_table, '') AS t, count(*)::int AS n FROM ${this.#s}.dead_letters GROUP BY 1`);
    return new Map(rows.map((r) => [r.t as string, r.n as number]));
  }
}
