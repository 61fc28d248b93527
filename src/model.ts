// The pipeline's data model: what each stage hands to the next (source -> decode -> batch -> apply -> checkpoint).
import type { Mapping } from "./config.ts";

/** A source position: a PostgreSQL LSN or a Kafka offset, exact over the whole unsigned 64-bit range. */
export type Position = bigint;

/** What decoding needs to know of an analytics column. */
export interface ColumnType {
  name: string;
  /** base type name (pg_type.typname), e.g. int8, numeric, timestamptz; the element type for arrays, the base type for domains */
  type: string;
  isArray: boolean;
  /** numeric: digits after the point; null when unconstrained */
  scale: number | null;
  /** numeric: total digits; time/timestamp/interval: fractional-second digits; varchar/char: length; null when unconstrained */
  precision: number | null;
}

export interface Column extends ColumnType {
  /** format_type(), e.g. numeric(12,2) */
  sqlType: string;
  /**
   * The type without its modifier, e.g. character varying: what values are cast to. An explicit
   * cast to varchar(10) truncates silently; the assignment to the column then rejects a value too
   * long (22001), which is a dead letter.
   */
  castType: string;
  notNull: boolean;
  hasDefault: boolean;
}

/** An analytics table as introspected. */
export interface TableInfo {
  /** as configured: table or schema.table */
  name: string;
  /** quoted, schema-qualified identifier for SQL */
  ident: string;
  columns: Map<string, Column>;
  primaryKey: string[];
  uniqueKeys: string[][];
}

/** How a Debezium connector encodes values (its encoding modes; Debezium's defaults where the config is silent). */
export interface Encoding {
  timePrecision: "adaptive" | "adaptive_time_microseconds" | "connect";
  decimal: "precise" | "double" | "string";
  binary: "bytes" | "base64" | "base64-url-safe" | "hex";
  interval: "numeric" | "string";
  /** the unchanged-TOAST placeholder */
  placeholder: string;
  /** the placeholder of a bytea column in `bytes` mode: base64 of its bytes */
  placeholderBase64: string;
  /** scale of money values in `precise` mode */
  moneyDigits: number;
}

/** A mapping resolved against its analytics table. Immutable: a schema change makes a new one. */
export interface Target {
  readonly mapping: Mapping;
  readonly table: TableInfo;
  /** target key columns */
  readonly key: string[];
  /** source column name -> target column name, for every column that is copied */
  readonly columns: ReadonlyMap<string, string>;
  /** source key field name -> target key column */
  readonly keyFields: ReadonlyMap<string, string>;
  /** target key column -> its index in `key` */
  readonly keyIndex: ReadonlyMap<string, number>;
  /** Kafka mappings: how the connector encodes values */
  readonly encoding: Encoding;
  /**
   * Set when a schema change stopped this mapping (sink/evolve.ts): why. Its records are not
   * applied and its source parts do not advance past them until a restart finds the table fixed.
   */
  readonly stopped?: string;
}

/** Where a record came from: enough to find it again and to checkpoint past it. */
export interface Coord {
  /** checkpoint stream: kafka:<group> or pg:<slot> */
  stream: string;
  /** topic/partition, or the source name */
  part: string;
  /** Kafka offset, or the commit LSN of the record's transaction */
  position: Position;
}

/** Key of a checkpoint stream/part. */
export const partKey = (p: { stream: string; part: string }) => `${p.stream}\u0000${p.part}`;

export const enum Kind {
  Upsert = 0,
  Delete = 1,
  Truncate = 2,
}

/** One decoded row change, positioned in source commit order. */
export interface Change {
  target: Target;
  kind: Kind;
  /** key values as PostgreSQL text, in target.key order */
  key: (string | null)[];
  /** canonical text of the key (tombstone identity, coalescing) */
  keyText: string;
  /** upserts: target columns present (absent unchanged-TOAST columns left out) and their text values */
  cols?: string[];
  vals?: (string | null)[];
  /** an update that left unchanged-TOAST columns out: it can only update a stored row */
  partial?: boolean;
  /**
   * Source position, compared as the pair (commitLsn, lsn). Streamed: the commit LSN of the
   * transaction (Debezium: the previous commit's, see decode/debezium.ts) and the record's place in
   * it. Snapshot rows: (0, snapshot LSN). A Kafka tombstone has none: commitLsn = -1.
   */
  commitLsn: Position;
  lsn: Position;
  /** source commit time, ms since epoch (0 when unknown) */
  sourceTs: number;
  /** soft-delete targets: this upsert also flags the row deleted, at this source time (0: unknown) */
  deletedAt?: number;
  coord: Coord;
  raw?: RawRecord;
}

/**
 * The record a change came from, for its dead letter. A value larger than the dead-letter cap is
 * kept only as its first characters, byte size and SHA-256 (taken at decode, so that the record's
 * text is not held until the batch commits).
 */
export interface RawRecord {
  key: string | null;
  value: string | null;
  valueBytes?: Uint8Array;
  valueSize?: number;
  valueSha256?: string;
}

export const NO_POSITION = -1n;

export interface DeadLetter {
  coord: Coord;
  table: string | null;
  stage: "decode" | "apply";
  key: string | null;
  value: string | null;
  /** the record's exact bytes, when the text above is not exact (NUL bytes, invalid UTF-8) */
  keyBytes?: Uint8Array | null;
  valueBytes?: Uint8Array | null;
  /** set when `value`/`valueBytes` hold only the first bytes of a larger value */
  valueSize?: number;
  valueSha256?: string;
  error: string;
  code: string;
}

/**
 * Source columns with their types, for the sink to compare with the analytics table before the
 * changes that follow: a column the table lacks may be added, a retyped one widened, or the mapping
 * stopped (sink/evolve.ts). A pgoutput decoder knows the source's type by OID and the source
 * describes it as SQL (`sqlType`); a Debezium decoder derives it from the message schema (`loose`:
 * the schema does not tell the length or precision), or has none (schemaless: `sqlType` unset).
 */
export interface SchemaChange {
  target: Target;
  add: Array<{ source: string; column: string; sqlType?: string; typeOid?: number; typmod?: number; loose?: boolean }>;
}
