// SQL column types compared: whether an analytics column holds every value of a source column's
// type, and which change of the analytics column is a safe widening (varchar(n) to a longer
// varchar or text, smallint/integer to bigint, numeric with more digits). Types are read as
// format_type() spells them (`character varying(20)`, `numeric(12,2)`, `timestamp(3) without
// time zone`, `integer[]`), or in their short forms (`varchar(20)`, `int4`, `timestamptz`).

export interface SqlType {
  /** canonical base name: int4, varchar, numeric, timestamptz, … (a user type keeps its name) */
  base: string;
  /** type modifiers as written: varchar(20) -> [20], numeric(12,2) -> [12, 2]; empty when unconstrained */
  mods: number[];
  array: boolean;
}

const ALIASES: Record<string, string> = {
  integer: "int4",
  int: "int4",
  bigint: "int8",
  smallint: "int2",
  "character varying": "varchar",
  character: "bpchar",
  char: "bpchar",
  decimal: "numeric",
  "double precision": "float8",
  real: "float4",
  boolean: "bool",
  "timestamp without time zone": "timestamp",
  "timestamp with time zone": "timestamptz",
  "time without time zone": "time",
  "time with time zone": "timetz",
  "bit varying": "varbit",
};

export function parseSqlType(text: string): SqlType {
  let s = text.trim().toLowerCase();
  let array = false;
  while (s.endsWith("[]")) {
    array = true;
    s = s.slice(0, -2).trimEnd();
  }
  let mods: number[] = [];
  const m = /\(([^)]*)\)/.exec(s);
  if (m) {
    mods = m[1]!.split(",").map((x) => Number(x.trim()));
    s = (s.slice(0, m.index) + s.slice(m.index + m[0].length)).replace(/\s+/g, " ").trim();
  }
  // `character` alone is char(1); as a base it is bpchar either way
  return { base: ALIASES[s] ?? s, mods, array };
}

const INT_RANK: Record<string, number> = { int2: 1, int4: 2, int8: 3 };
/** integer digits each integer type needs in a numeric */
const INT_DIGITS: Record<string, number> = { int2: 5, int4: 10, int8: 19 };
const TEXTUAL = new Set(["text", "varchar", "bpchar"]);

/** Types whose values have the same text in each member (a change within one keeps every value). */
export function family(base: string): string {
  if (base in INT_RANK) return "integer";
  if (TEXTUAL.has(base)) return "text";
  if (base === "json" || base === "jsonb") return "json";
  if (base === "float4" || base === "float8") return "float";
  return base;
}

/** Length limit of a character type (Infinity: unlimited). */
const lengthOf = (t: SqlType) => (t.base === "text" || !t.mods.length ? Infinity : t.mods[0]!);

/** Does a column of type `col` hold every value of type `src`, unchanged? */
export function holds(col: SqlType, src: SqlType): boolean {
  if (col.array !== src.array) return false;
  if (col.base === src.base && col.mods.join() === src.mods.join()) return true;
  if (col.base in INT_RANK && src.base in INT_RANK) return INT_RANK[col.base]! >= INT_RANK[src.base]!;
  if (col.base === "numeric" && src.base in INT_RANK) return !col.mods.length || col.mods[0]! - (col.mods[1] ?? 0) >= INT_DIGITS[src.base]!;
  if ((col.base === "text" || col.base === "varchar") && TEXTUAL.has(src.base)) return lengthOf(col) >= lengthOf(src);
  if (col.base === "numeric" && src.base === "numeric") {
    if (!col.mods.length) return true;
    if (!src.mods.length) return false;
    const [cp, cs = 0] = col.mods;
    const [sp, ss = 0] = src.mods;
    return cs! >= ss! && cp! - cs! >= sp! - ss!;
  }
  return false;
}

export const formatSqlType = (t: SqlType): string => {
  const name = { int2: "smallint", int4: "integer", int8: "bigint", varchar: "character varying", bpchar: "character", float8: "double precision", float4: "real", bool: "boolean" }[t.base] ?? t.base;
  return `${name}${t.mods.length ? `(${t.mods.join(",")})` : ""}${t.array ? "[]" : ""}`;
};

export type Judgement =
  /** the column holds every value of the source's type */
  | { verdict: "fits" }
  /** it does not, and ALTER COLUMN … TYPE `to` is a safe widening that does */
  | { verdict: "widen"; to: string }
  /** it does not, and no safe widening makes it */
  | { verdict: "incompatible" };

/**
 * The analytics column `col` against a source type `src`. `loose`: the source type's length or
 * precision is unknown (a Kafka Connect schema says `string`, not `varchar(20)`): a column of the
 * same family is taken to fit.
 */
export function judge(col: string, src: string, loose = false): Judgement {
  const c = parseSqlType(col);
  const s = parseSqlType(src);
  if (holds(c, s)) return { verdict: "fits" };
  if (loose && c.array === s.array && family(c.base) === family(s.base)) return { verdict: "fits" };
  if (c.array !== s.array) return { verdict: "incompatible" };
  const widen = (t: SqlType) => ({ verdict: "widen" as const, to: formatSqlType({ ...t, array: c.array }) });
  if (c.base in INT_RANK && s.base in INT_RANK) return widen(s);
  if (c.base === "varchar" && (s.base === "varchar" || s.base === "text")) return widen(s);
  if (c.base === "numeric" && s.base === "numeric") {
    if (!s.mods.length) return widen(s);
    const [cp, cs = 0] = c.mods;
    const [sp, ss = 0] = s.mods;
    const scale = Math.max(cs!, ss!);
    const digits = Math.max(cp! - cs!, sp! - ss!) + scale;
    return widen(digits <= 1000 ? { base: "numeric", mods: [digits, scale], array: false } : { base: "numeric", mods: [], array: false });
  }
  return { verdict: "incompatible" };
}
