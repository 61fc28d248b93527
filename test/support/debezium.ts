// Debezium PostgreSQL events as the connector would publish them (JSON converter), for tests and benchmarks.
type Row = Record<string, unknown>;

export interface SourceClock {
  lsn: number;
  lastCommit: number;
  txId: number;
}
export const newClock = (): SourceClock => ({ lsn: 30_000_000, lastCommit: 29_999_000, txId: 700 });

/** One change inside its own transaction (advances the clock like a commit would). */
export function envelope(
  clock: SourceClock,
  table: string,
  op: "c" | "u" | "d" | "r" | "t",
  row: { before?: Row | null; after?: Row | null },
  opts: { snapshot?: string; tsMs?: number; db?: string } = {},
): Row {
  clock.lsn += 100;
  const lsn = clock.lsn;
  const ts = opts.tsMs ?? Date.now();
  const env = {
    before: row.before ?? null,
    after: row.after ?? null,
    source: {
      version: "2.7.3.Final",
      connector: "postgresql",
      name: "ecom-connector",
      ts_ms: ts,
      snapshot: opts.snapshot ?? (op === "r" ? "true" : "false"),
      db: opts.db ?? "ecom",
      sequence: op === "r" ? JSON.stringify([null, String(lsn)]) : JSON.stringify([String(clock.lastCommit), String(lsn)]),
      schema: "public",
      table,
      txId: clock.txId,
      lsn,
      xmin: null,
    },
    op,
    ts_ms: ts + 3,
    transaction: null,
  };
  if (op !== "r") {
    clock.lastCommit = lsn + 50;
    clock.txId++;
  }
  return env;
}

/** The `schemas.enable=true` form: {schema, payload}, with the semantic names Debezium uses. */
export function withSchema(payload: Row, fields: Record<string, { type: string; name?: string; parameters?: Record<string, string> }>): Row {
  const rowSchema = {
    type: "struct",
    optional: true,
    fields: Object.entries(fields).map(([field, f]) => ({ field, optional: true, ...f })),
  };
  return {
    schema: {
      type: "struct",
      name: "envelope",
      fields: [
        { field: "before", ...rowSchema },
        { field: "after", ...rowSchema },
        { field: "source", type: "struct", fields: [] },
        { field: "op", type: "string" },
      ],
    },
    payload,
  };
}

export const keyOf = (id: number | string, field = "id", schema = false) =>
  schema
    ? JSON.stringify({ schema: { type: "struct", fields: [{ field, type: "int64", optional: false }] }, payload: { [field]: id } })
    : JSON.stringify({ [field]: id });
