// The statements verify and repair run on both databases, built from a table plan. Every value
// is rendered inside the database to one canonical text: the source casts each column to the
// analytics column's type and prints it with ::text, the analytics side prints its own column, and
// both sessions run with the same settings (UTC, ISO dates, postgres intervals, shortest-exact
// floats, hex bytea), so equal values print equal. money is compared as numeric (its text follows
// lc_monetary); a type the source does not know (an enum or domain of the analytics database) is
// compared as text. Identifiers go through quoteIdent; every value is a bind parameter.
import { quoteIdent } from "../sink/schema.ts";

export type Side = "source" | "analytics";

/** One compared column: its names and types on both sides. */
export interface ColumnPlan {
  /** source column name */
  source: string;
  /** analytics column name */
  target: string;
  /** analytics type, format_type(): the type both sides render */
  sqlType: string;
  /** the analytics type without its modifier (numeric for numeric(12,2)); absent: the same */
  castType?: string;
  /** source type, format_type() */
  sourceType: string;
  /** the analytics type is money: compared as numeric */
  money: boolean;
  /** the source does not know the analytics type: compared as text */
  viaText: boolean;
}

export interface KeyPlan extends ColumnPlan {
  /** the two sides order this text key differently (collations differ): order and compare it under "C" */
  collateC: boolean;
}

/** What is compared for one mapping. */
export interface TablePlan {
  /** the analytics table, as configured */
  table: string;
  /** quoted, qualified source table */
  sourceIdent: string;
  /** quoted, qualified analytics table */
  analyticsIdent: string;
  key: KeyPlan[];
  /** compared columns (the key included), in analytics column order */
  columns: ColumnPlan[];
  /** soft-delete mappings: the quoted flag column; live rows have it NULL */
  softDelete: string | null;
  /** chunk hashes: hashtextextended when both sides compute it alike, else md5 (portable, slower) */
  fastHash: boolean;
}

/** Session settings both sides run with: what makes their ::text output comparable. */
export const SESSION_SETTINGS: Record<string, string> = {
  TimeZone: "UTC",
  DateStyle: "ISO, YMD",
  IntervalStyle: "postgres",
  extra_float_digits: "1",
  bytea_output: "hex",
};

const col = (c: ColumnPlan, side: Side) => `t.${quoteIdent(side === "source" ? c.source : c.target)}`;

/** A column's value as the analytics type (money as numeric; unknown types as text). */
export function valueExpr(c: ColumnPlan, side: Side): string {
  const v = col(c, side);
  if (c.viaText) return `${v}::text`;
  const typed = side === "source" && c.sourceType !== c.sqlType ? asAnalytics(v, c) : v;
  return c.money ? `${typed}::numeric` : typed;
}

/**
 * A source value as the analytics type, unless its modifier would change it: an explicit cast to
 * varchar(10) cuts text, to numeric(12,2) rounds. Such a value keeps its own, so it differs from
 * whatever analytics holds (the sink never stores it cut: a dead letter), instead of comparing
 * equal. Fractional seconds are the exception: the database rounds them on every write the sink
 * makes to a time, timestamp or interval of lower precision, so a source value compares as
 * rounded the same way (else repair could never make it equal).
 */
function asAnalytics(v: string, c: ColumnPlan): string {
  if (!c.castType || c.castType === c.sqlType || ROUNDED_ON_WRITE.test(c.castType)) return `${v}::${c.sqlType}`;
  const base = `${v}::${c.castType}`;
  return `CASE WHEN (${base})::${c.sqlType} = ${base} THEN (${base})::${c.sqlType} ELSE ${base} END`;
}

const ROUNDED_ON_WRITE = /^(time|timetz|timestamp|timestamptz|interval|time with(out)? time zone|timestamp with(out)? time zone)(\[\])?$/;

/** A column's canonical text. */
export const textExpr = (c: ColumnPlan, side: Side) => `(${valueExpr(c, side)})::text`;

/** The row as one text: a record literal tells NULL from an empty string and quotes separators. */
export const rowText = (p: TablePlan, side: Side) => `ROW(${p.columns.map((c) => valueExpr(c, side)).join(", ")})::text`;

/** A 64-bit hash of the row, summed per chunk (order-independent; count goes beside it). */
export function rowHash64(p: TablePlan, side: Side): string {
  return p.fastHash ? `hashtextextended((${rowText(p, side)}) COLLATE "C", 0)` : `('x' || left(md5(${rowText(p, side)}), 16))::bit(64)::int8`;
}

/** A key column as it is ordered and compared in ranges (a key compared as text: in "C" order on both sides). */
const keyOrder = (k: KeyPlan, side: Side) => (k.viaText ? `${col(k, side)}::text COLLATE "C"` : k.collateC ? `${col(k, side)} COLLATE "C"` : col(k, side));
const keyParam = (k: KeyPlan, side: Side, n: number) =>
  k.viaText ? `$${n}::text COLLATE "C"` : `$${n}::${side === "source" ? k.sourceType : k.sqlType}${k.collateC ? ` COLLATE "C"` : ""}`;
const tuple = (xs: string[]) => (xs.length === 1 ? xs[0]! : `(${xs.join(", ")})`);

/** The canonical key texts, as k0, k1, … */
export const keySelect = (p: TablePlan, side: Side) => p.key.map((k, i) => `${textExpr(k, side)} AS k${i}`).join(", ");

export const orderBy = (p: TablePlan, side: Side) => p.key.map((k) => keyOrder(k, side)).join(", ");

/** Live rows only on the analytics side of a soft-delete mapping. */
const liveCond = (p: TablePlan, side: Side) => (side === "analytics" && p.softDelete ? [`t.${p.softDelete} IS NULL`] : []);

/**
 * WHERE for the key range (lo, hi]: either bound may be absent. Parameters from `first`: the lower
 * bound's key texts, then the upper bound's.
 */
export function rangeWhere(p: TablePlan, side: Side, lo: boolean, hi: boolean, first = 1): { sql: string; next: number } {
  const conds = liveCond(p, side);
  let n = first;
  const keys = tuple(p.key.map((k) => keyOrder(k, side)));
  const bound = () => tuple(p.key.map((k) => keyParam(k, side, n++)));
  if (lo) conds.push(`${keys} > ${bound()}`);
  if (hi) conds.push(`${keys} <= ${bound()}`);
  return { sql: conds.length ? `WHERE ${conds.join(" AND ")}` : "", next: n };
}

const identOf = (p: TablePlan, side: Side) => (side === "source" ? p.sourceIdent : p.analyticsIdent);

/**
 * The last key of the chunk that starts after `lo` and holds `size` keys (range (lo, hi] when
 * `hi`): found in the key's index. No row: the range holds fewer keys, the chunk runs to its end.
 * Parameters: lo, hi, then the offset (size - 1).
 */
export function boundaryQuery(p: TablePlan, side: Side, lo: boolean, hi = false): string {
  const w = rangeWhere(p, side, lo, hi);
  return `SELECT ${keySelect(p, side)} FROM ${identOf(p, side)} t ${w.sql} ORDER BY ${orderBy(p, side)} OFFSET $${w.next} LIMIT 1`;
}

/** A row's digest as text, to compare one key's rows: the 64-bit hash when both sides compute it alike, else md5. */
export const rowDigest = (p: TablePlan, side: Side) => (p.fastHash ? `${rowHash64(p, side)}::text` : `md5(${rowText(p, side)})`);

/** Rows and the sum of their 64-bit hashes in (lo, hi]: n, h (text). */
export function chunkHashQuery(p: TablePlan, side: Side, lo: boolean, hi: boolean): string {
  const w = rangeWhere(p, side, lo, hi);
  return `SELECT count(*)::text AS n, coalesce(sum(${rowHash64(p, side)}), 0)::text AS h FROM ${identOf(p, side)} t ${w.sql}`;
}

/** Every key in (lo, hi] with its row's digest: k0…, h. */
export function keyHashQuery(p: TablePlan, side: Side, lo: boolean, hi: boolean): string {
  const w = rangeWhere(p, side, lo, hi);
  return `SELECT ${keySelect(p, side)}, ${rowDigest(p, side)} AS h FROM ${identOf(p, side)} t ${w.sql}`;
}

/**
 * The rows of the listed keys (one text[] parameter per key column): key texts k0…, column texts
 * c0… (plan.columns order), h (the row's digest). The analytics side reads soft-deleted rows too, with their
 * position: pc, pl (NULL when never written by the sink) and live.
 */
export function rowsQuery(p: TablePlan, side: Side): string {
  const cols = p.columns.map((c, i) => `${textExpr(c, side)} AS c${i}`).join(", ");
  const extra = side === "analytics" ? `, t._cdc_commit_lsn::text AS pc, t._cdc_lsn::text AS pl, ${p.softDelete ? `t.${p.softDelete} IS NULL` : "true"} AS live` : "";
  const typeOf = (k: KeyPlan) => (side === "source" ? k.sourceType : k.sqlType);
  const keys = tuple(p.key.map((k) => col(k, side)));
  const wanted = `SELECT ${p.key.map((k, i) => `u.k${i}::${typeOf(k)}`).join(", ")} FROM unnest(${p.key.map((_, i) => `$${i + 1}::text[]`).join(", ")}) AS u(${p.key.map((_, i) => `k${i}`).join(", ")})`;
  return `SELECT ${keySelect(p, side)}, ${cols}, ${rowDigest(p, side)} AS h${extra} FROM ${identOf(p, side)} t WHERE ${keys} IN (${wanted})`;
}

/** The key's identity in tombstones and batches: the same text the decoders give it. */
export const keyTextOf = (key: (string | null)[]) => JSON.stringify(key);

/** Key texts k0… of a result row. */
export const keyOf = (row: Record<string, unknown>, n: number): (string | null)[] => Array.from({ length: n }, (_, i) => row[`k${i}`] as string | null);
