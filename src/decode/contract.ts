// The decoding contract `check` prints for a Kafka mapping: per column, what the connector sends
// (under the mapping's encoding modes) and what the analytics column holds, with a warning where a
// value can lose precision or meaning on the way.
import type { Column, Target } from "../model.ts";

export interface ColumnContract {
  column: string;
  sqlType: string;
  /** what a schemaless message carries for this column */
  expects: string;
  warning?: string;
}

function expectation(c: Column, t: Target): { expects: string; warning?: string } {
  const e = t.encoding;
  const unit = (kind: "time" | "timestamp") => {
    if (e.timePrecision === "connect") return "milliseconds";
    if (kind === "time" && e.timePrecision === "adaptive_time_microseconds") return "microseconds";
    return c.precision !== null && c.precision <= 3 ? "milliseconds" : "microseconds";
  };
  switch (c.type) {
    case "numeric":
    case "money": {
      if (e.decimal === "double") {
        const digits = c.type === "money" ? 19 : c.precision;
        return {
          expects: "a JSON number (a double)",
          warning: digits === null || digits > 15 ? `a double holds 15 significant digits; ${c.sqlType} holds ${digits ?? "any number of"}: longer values are rounded (decimal.handling.mode = precise or string keeps them)` : undefined,
        };
      }
      if (e.decimal === "string") return { expects: "the decimal as text (NAN, POSITIVE_INFINITY, NEGATIVE_INFINITY)" };
      const scale = c.type === "money" ? e.moneyDigits : c.scale;
      return scale === null
        ? { expects: "{scale, value}: a base64 unscaled integer with its scale (NaN and Infinity arrive as null)" }
        : { expects: `a base64 unscaled integer, scale ${scale}` };
    }
    case "timestamp":
    case "timestamptz":
      if (c.type === "timestamptz") return { expects: "an ISO-8601 text in UTC (a timestamp source column sends a number, stored as UTC)" };
      return {
        expects: `${unit("timestamp")} since 1970-01-01 (a timestamptz source sends ISO text in UTC: stored as its UTC time, the zone is lost)`,
        warning:
          e.timePrecision === "adaptive" && unit("timestamp") === "milliseconds"
            ? `read as milliseconds because the column is ${c.sqlType}: a timestamp(4..6) source sends microseconds, misread 1000 times too large`
            : e.timePrecision === "connect" && (c.precision === null || c.precision > 3)
              ? `time.precision.mode = connect sends milliseconds: ${c.sqlType} gets no microseconds`
              : undefined,
      };
    case "time":
      return {
        expects: `${unit("time")} of the day`,
        warning:
          e.timePrecision === "adaptive" && unit("time") === "milliseconds"
            ? `read as milliseconds because the column is ${c.sqlType}: a time(4..6) source sends microseconds, misread 1000 times too large`
            : e.timePrecision === "connect" && (c.precision === null || c.precision > 3)
              ? `time.precision.mode = connect sends milliseconds: ${c.sqlType} gets no microseconds`
              : undefined,
      };
    case "timetz":
      return { expects: "a time text in UTC", warning: "Debezium converts timetz to UTC: the original offset is not kept" };
    case "date":
      return { expects: "days since 1970-01-01" };
    case "interval":
      return e.interval === "numeric"
        ? { expects: "microseconds", warning: "interval.handling.mode = numeric counts a month as 30.4375 days: months and years are approximate (string keeps them)" }
        : { expects: "an ISO-8601 duration" };
    case "bytea":
      return {
        expects: { bytes: "base64", base64: "base64", "base64-url-safe": "url-safe base64", hex: "hex" }[e.binary],
        warning:
          e.binary === "base64" || e.binary === "base64-url-safe"
            ? `binary.handling.mode = ${e.binary} sends an unchanged TOASTed value as null: such an update writes NULL (bytes or hex keep the stored value)`
            : undefined,
      };
    case "json":
    case "jsonb":
      return { expects: "the document as a JSON string" };
    case "varchar":
    case "bpchar":
      return { expects: "text", warning: c.precision !== null ? `values longer than ${c.precision} characters are dead-lettered` : undefined };
    default:
      return { expects: ["int2", "int4", "int8", "float4", "float8", "bool"].includes(c.type) ? "a JSON number or boolean" : "text" };
  }
}

export function decodingContract(t: Target): ColumnContract[] {
  const out: ColumnContract[] = [];
  for (const col of t.columns.values()) {
    const c = t.table.columns.get(col)!;
    const { expects, warning } = expectation(c, t);
    out.push({ column: col, sqlType: c.sqlType, expects: c.isArray ? `an array of ${expects}` : expects, warning });
  }
  return out;
}
