// Loads the librdkafka addon (native/build/cdc_kafka.node, librdkafka linked in statically).
// The literal require path lets `bun build --compile` embed the addon in the binary.
import { createRequire } from "node:module";
import { KafkaError } from "./errors.ts";
import type { ClientEvents, DeliveryReport, RawBatch, RawHeaders, TopicPartition, TopicPartitionOffset } from "./types.ts";

const req = typeof require === "function" ? require : createRequire(import.meta.url);

export interface NativeConsumer {
  subscribe(topics: string[]): void;
  unsubscribe(): void;
  consume(max: number, timeoutMs: number, maxBytes?: number): Promise<RawBatch>;
  seek(tps: TopicPartitionOffset[], timeoutMs: number): Promise<TopicPartitionOffset[]>;
  pause(tps: TopicPartition[]): TopicPartitionOffset[];
  resume(tps: TopicPartition[]): TopicPartitionOffset[];
  commit(tps: TopicPartitionOffset[] | null, async: boolean): Promise<void> | undefined;
  storeOffsets(tps: TopicPartitionOffset[]): void;
  committed(tps: TopicPartition[], timeoutMs: number): Promise<TopicPartitionOffset[]>;
  assignment(): TopicPartitionOffset[];
  position(tps: TopicPartition[]): TopicPartitionOffset[];
  queryWatermarks(topic: string, partition: number, timeoutMs: number): Promise<{ low: number; high: number }>;
  cachedWatermarks(topic: string, partition: number): { low: number; high: number };
  listTopics(timeoutMs: number): Promise<Array<{ topic: string; partitions: number; error?: string }>>;
  stats(): string | null;
  events(): ClientEvents;
  memberId(): string | null;
  close(): Promise<ClientEvents | undefined>;
}
export interface NativeProducer {
  produce(
    topic: string,
    partitions: Int32Array,
    keys: Buffer,
    keyLens: Int32Array,
    values: Buffer,
    valueLens: Int32Array,
    headers?: RawHeaders,
  ): Promise<number>;
  flush(timeoutMs: number): Promise<DeliveryReport>;
  events(): DeliveryReport;
  close(timeoutMs: number): Promise<DeliveryReport | undefined>;
}
export interface NativeMock {
  bootstrapServers(): string;
  createTopic(topic: string, partitions: number, replication: number): void;
  brokerDown(id: number): void;
  brokerUp(id: number): void;
  brokerRtt(id: number, ms: number): void;
  pushRequestErrors(apiKey: number, errors: number[]): void;
  clearRequestErrors(apiKey: number): void;
  close(): void;
}

export interface Addon {
  Consumer: new (props: Record<string, string>) => NativeConsumer;
  Producer: new (props: Record<string, string>) => NativeProducer;
  MockCluster: new (brokers: number, props: Record<string, string>) => NativeMock;
  /** rd_kafka_version_str() */
  version: string;
  /** librdkafka's builtin.features, comma-separated */
  features: string;
  /** error name (without ERR_) → code */
  errorCodes: Record<string, number>;
  /** every property librdkafka refuses, set on a scratch config (offline) */
  checkProperties(props: Record<string, string>): Array<{ property: string; error: string; unknown: boolean }>;
}

function loadAddon(): Addon {
  try {
    return typeof require === "function"
      ? require("../../native/build/cdc_kafka.node")
      : req("../../native/build/cdc_kafka.node");
  } catch (e) {
    throw new Error(
      `cannot load the librdkafka addon (native/build/cdc_kafka.node): ${(e as Error).message}. ` +
        "Run scripts/setup.sh (builds librdkafka and the addon).",
    );
  }
}

let addonCache: Addon | undefined;
/** The addon, loaded on first use. */
export function addon(): Addon {
  return (addonCache ??= loadAddon());
}

/** The version of the librdkafka linked into the addon, e.g. `2.15.1`. */
export const librdkafkaVersion = (): string => addon().version;

/** librdkafka's built-in features (`builtin.features`), e.g. `ssl`, `sasl_scram`, `zstd`. */
export const librdkafkaFeatures = (): string[] => addon().features.split(",").filter(Boolean);

/**
 * Properties that run commands or load code: refused unless the config names them in
 * allow_unsafe_kafka_properties.
 */
export const UNSAFE_PROPERTIES = ["sasl.kerberos.kinit.cmd", "ssl.engine.location", "plugin.library.paths", "ssl.providers"];

/** What librdkafka would refuse of these properties, and the unsafe ones not allowed, checked offline: [property, problem]. */
export function propertyProblems(props: Record<string, unknown>, allowUnsafe: readonly string[] = []): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const k of Object.keys(props))
    if (UNSAFE_PROPERTIES.includes(k) && !allowUnsafe.includes(k))
      out.push([k, `runs commands or loads code: refused unless allow_unsafe_kafka_properties names it`]);
  // an unsafe property is never set, not even to check it (plugin.library.paths loads the library at once)
  const strings: Record<string, string> = {};
  for (const [k, v] of Object.entries(props))
    if (!UNSAFE_PROPERTIES.includes(k) && (typeof v === "string" || typeof v === "number" || typeof v === "boolean")) strings[k] = String(v);
  for (const p of addon().checkProperties(strings)) out.push([p.property, p.unknown ? "not a librdkafka property" : p.error]);
  return out;
}

/** librdkafka properties as the strings the addon takes; rejects other value types. */
export function toStrings(props: Record<string, unknown>, where: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null) continue;
    if (typeof v !== "string" && typeof v !== "number" && typeof v !== "boolean")
      throw new KafkaError(`${where}: property ${k} must be a string, number or boolean`, "ERR__INVALID_ARG", { property: k });
    out[k] = String(v);
  }
  return out;
}
