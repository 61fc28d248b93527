// A Kafka Connect field schema (Debezium's JSON with schemas.enable=true) -> the PostgreSQL type
// that holds its values. The schema names the semantic type (io.debezium.time.MicroTimestamp,
// org.apache.kafka.connect.data.Decimal and its precision and scale, …) but rarely a length: a
// `string` may have been varchar(20) at the source. Such types are `loose` (sink/evolve.ts takes
// any analytics column of the same family to fit). With column.propagate.source.type, Debezium
// adds the source's own type, length and scale, which are used when present.
import type { FieldSchema } from "../decode/values.ts";

export interface ConnectField extends FieldSchema {
  field?: string;
  fields?: ConnectField[];
}

export interface DerivedType {
  sqlType: string;
  /** the length or precision is unknown */
  loose: boolean;
}

const BY_NAME: Record<string, DerivedType> = {
  "io.debezium.data.VariableScaleDecimal": { sqlType: "numeric", loose: false },
  "io.debezium.time.Date": { sqlType: "date", loose: false },
  "org.apache.kafka.connect.data.Date": { sqlType: "date", loose: false },
  "io.debezium.time.Time": { sqlType: "time(3) without time zone", loose: true },
  "org.apache.kafka.connect.data.Time": { sqlType: "time(3) without time zone", loose: true },
  "io.debezium.time.MicroTime": { sqlType: "time without time zone", loose: true },
  "io.debezium.time.NanoTime": { sqlType: "time without time zone", loose: true },
  "io.debezium.time.ZonedTime": { sqlType: "time with time zone", loose: true },
  "io.debezium.time.Timestamp": { sqlType: "timestamp(3) without time zone", loose: true },
  "org.apache.kafka.connect.data.Timestamp": { sqlType: "timestamp(3) without time zone", loose: true },
  "io.debezium.time.MicroTimestamp": { sqlType: "timestamp without time zone", loose: true },
  "io.debezium.time.NanoTimestamp": { sqlType: "timestamp without time zone", loose: true },
  "io.debezium.time.ZonedTimestamp": { sqlType: "timestamp with time zone", loose: true },
  "io.debezium.time.MicroDuration": { sqlType: "interval", loose: false },
  "io.debezium.time.Interval": { sqlType: "interval", loose: false },
  "io.debezium.data.Json": { sqlType: "jsonb", loose: true },
  "io.debezium.data.Xml": { sqlType: "xml", loose: false },
  "io.debezium.data.Uuid": { sqlType: "uuid", loose: false },
  "io.debezium.data.Enum": { sqlType: "text", loose: true },
  "io.debezium.data.EnumSet": { sqlType: "text", loose: true },
  "io.debezium.data.Bits": { sqlType: "bit varying", loose: true },
  "io.debezium.data.Ltree": { sqlType: "text", loose: true },
};

const BY_TYPE: Record<string, DerivedType> = {
  int8: { sqlType: "smallint", loose: false },
  int16: { sqlType: "smallint", loose: false },
  int32: { sqlType: "integer", loose: false },
  int64: { sqlType: "bigint", loose: false },
  float: { sqlType: "real", loose: false },
  float32: { sqlType: "real", loose: false },
  double: { sqlType: "double precision", loose: false },
  float64: { sqlType: "double precision", loose: false },
  boolean: { sqlType: "boolean", loose: false },
  string: { sqlType: "text", loose: true },
  bytes: { sqlType: "bytea", loose: false },
};

/** The source's own type when Debezium propagates it (column.propagate.source.type), for the types whose length matters. */
function propagated(f: FieldSchema): DerivedType | undefined {
  const p = f.parameters;
  const raw = p?.["__debezium.source.column.type"];
  if (typeof raw !== "string") return undefined;
  const type = raw.toUpperCase();
  const length = Number(p!["__debezium.source.column.length"]);
  const scale = Number(p!["__debezium.source.column.scale"] ?? 0);
  const sized = Number.isInteger(length) && length > 0 && length < 2147483647;
  if (type === "VARCHAR") return { sqlType: sized ? `character varying(${length})` : "character varying", loose: false };
  if (type === "BPCHAR" || type === "CHAR") return { sqlType: sized ? `character(${length})` : "character", loose: false };
  if (type === "NUMERIC" || type === "DECIMAL") return { sqlType: sized && length <= 1000 ? `numeric(${length},${scale})` : "numeric", loose: false };
  return undefined;
}

/** The PostgreSQL type for a field's values, or undefined when the schema gives none (a struct or map Debezium does not name). */
export function connectSqlType(f: ConnectField): DerivedType | undefined {
  if (!f || typeof f !== "object") return undefined;
  const own = propagated(f);
  if (own) return own;
  if (f.name === "org.apache.kafka.connect.data.Decimal") {
    const scale = Number(f.parameters?.scale ?? 0);
    const precision = Number(f.parameters?.["connect.decimal.precision"]);
    return Number.isInteger(precision) && precision > 0 && precision <= 1000 ? { sqlType: `numeric(${precision},${scale})`, loose: false } : { sqlType: "numeric", loose: true };
  }
  if (typeof f.name === "string" && Object.hasOwn(BY_NAME, f.name)) return BY_NAME[f.name];
  if (f.type === "array") {
    const item = f.items && connectSqlType(f.items);
    return item && !item.sqlType.endsWith("[]") ? { sqlType: `${item.sqlType}[]`, loose: item.loose } : undefined;
  }
  return typeof f.type === "string" && Object.hasOwn(BY_TYPE, f.type) ? BY_TYPE[f.type] : undefined;
}
