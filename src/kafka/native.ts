// TypeScript face of the librdkafka addon: option checks, defaults, typed errors, columnar batches.
// The literal require path lets `bun build --compile` embed the addon in the binary.
import { createRequire } from "node:module";

const req = typeof require === "function" ? require : createRequire(import.meta.url);

interface Addon {
  Consumer: new (props: Record<string, string>) => NativeConsumer;
  Producer: new (props: Record<string, string>) => NativeProducer;
  MockCluster: new (brokers: number, props: Record<string, string>) => NativeMock;
  version: string;
  errorCodes: Record<string, number>;
}

function loadAddon(): Addon {
  try {
    return typeof require === "function"
      ? require("../../native/build/cdc_kafka.node")
      : req("../../native/build/cdc_kafka.node");
  } catch (e) {
    throw new Error(
      `cannot load the librdkafka addon (native/build/cdc_kafka.node): ${(e as Error).message}. ` +
        "Run scripts/setup.sh (installs librdkafka and builds the addon).",
    );
  }
}

let addonCache: Addon | undefined;
function addon(): Addon {
  return (addonCache ??= loadAddon());
}

export const librdkafkaVersion = (): string => addon().version;

/** Error from librdkafka, carrying its error name (e.g. `_TRANSPORT`, `ERR__UNKNOWN_PROPERTY`). */
export class KafkaError extends Error {
  override name = "KafkaError";
  readonly code: string;
  readonly errno: number | undefined;
  readonly property: string | undefined;
  readonly fatal: boolean;
  readonly retriable: boolean;
  constructor(message: string, code: string, extra: { errno?: number; property?: string; fatal?: boolean; retriable?: boolean } = {}) {
    super(message);
    this.code = code;
    this.errno = extra.errno;
    this.property = extra.property;
    this.fatal = extra.fatal ?? false;
    this.retriable = extra.retriable ?? false;
  }
}

function wrap(e: unknown): KafkaError {
  if (e instanceof KafkaError) return e;
  const x = e as { message?: string; code?: string; errno?: number; property?: string; fatal?: boolean; retriable?: boolean };
  const msg = x.property ? `${x.property}: ${x.message}` : (x.message ?? String(e));
  return new KafkaError(msg, x.code ?? "ERR__FAIL", x);
}

async function call<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw wrap(e);
  }
}
function callSync<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw wrap(e);
  }
}

export type Properties = Record<string, string | number | boolean>;

function toStrings(props: Properties, where: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null) continue;
    if (typeof v !== "string" && typeof v !== "number" && typeof v !== "boolean")
      throw new KafkaError(`${where}: property ${k} must be a string, number or boolean`, "ERR__INVALID_ARG", { property: k });
    out[k] = String(v);
  }
  return out;
}

export interface TopicPartition {
  topic: string;
  partition: number;
}
export interface TopicPartitionOffset extends TopicPartition {
  offset: number;
  error?: string;
}
export interface RebalanceEvent {
  type: "assign" | "revoke";
  partitions: TopicPartitionOffset[];
}
export interface LogEvent {
  level: number;
  facility: string;
  message: string;
}
export interface ErrorEvent {
  code: string;
  errno: number;
  message: string;
  fatal: boolean;
  topic?: string;
  partition?: number;
}
export interface ClientEvents {
  logs: LogEvent[];
  droppedLogs: number;
  errors: ErrorEvent[];
  rebalances: RebalanceEvent[];
  fatal?: boolean;
}

interface RawBatch extends ClientEvents {
  count: number;
  topicNames: string[];
  topicIdx: Uint16Array;
  partitions: Int32Array;
  offsets: Float64Array;
  timestamps: Float64Array;
  keyLens: Int32Array;
  valueLens: Int32Array;
  keys: Buffer;
  values: Buffer;
  headers?: { index: Int32Array; names: string[]; lens: Int32Array; values: Buffer };
  fatal: boolean;
}

interface NativeConsumer {
  subscribe(topics: string[]): void;
  unsubscribe(): void;
  consume(max: number, timeoutMs: number): Promise<RawBatch>;
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
interface NativeProducer {
  produce(
    topic: string,
    partitions: Int32Array,
    keys: Buffer,
    keyLens: Int32Array,
    values: Buffer,
    valueLens: Int32Array,
    headers?: { index: Int32Array; names: string[]; lens: Int32Array; values: Buffer },
  ): Promise<number>;
  flush(timeoutMs: number): Promise<DeliveryReport>;
  events(): DeliveryReport;
  close(timeoutMs: number): Promise<DeliveryReport | undefined>;
}
interface NativeMock {
  bootstrapServers(): string;
  createTopic(topic: string, partitions: number, replication: number): void;
  brokerDown(id: number): void;
  brokerUp(id: number): void;
  brokerRtt(id: number, ms: number): void;
  pushRequestErrors(apiKey: number, errors: number[]): void;
  clearRequestErrors(apiKey: number): void;
  close(): void;
}

export interface DeliveryReport extends ClientEvents {
  delivered: number;
  failed: TopicPartitionOffset[];
}

/** A consumed batch, columnar; per-message accessors slice the shared buffers lazily. */
export class MessageBatch {
  readonly count: number;
  readonly rebalances: RebalanceEvent[];
  readonly errors: ErrorEvent[];
  readonly logs: LogEvent[];
  #raw: RawBatch;
  #keyStart: Int32Array | undefined;
  #valueStart: Int32Array | undefined;
  #keysText: string | null | undefined;
  #valuesText: string | null | undefined;

  constructor(raw: RawBatch) {
    this.#raw = raw;
    this.count = raw.count;
    this.rebalances = raw.rebalances;
    this.errors = raw.errors;
    this.logs = raw.logs;
  }
  topic(i: number): string {
    return this.#raw.topicNames[this.#raw.topicIdx[i]!]!;
  }
  get topicNames(): readonly string[] {
    return this.#raw.topicNames;
  }
  topicIndex(i: number): number {
    return this.#raw.topicIdx[i]!;
  }
  partition(i: number): number {
    return this.#raw.partitions[i]!;
  }
  offset(i: number): number {
    return this.#raw.offsets[i]!;
  }
  timestamp(i: number): number {
    return this.#raw.timestamps[i]!;
  }
  /** Bytes of the key, `null` when the message has no key (distinct from an empty key). */
  key(i: number): Buffer | null {
    this.#keyStart ??= starts(this.#raw.keyLens);
    const len = this.#raw.keyLens[i]!;
    if (len < 0) return null;
    const s = this.#keyStart[i]!;
    return this.#raw.keys.subarray(s, s + len);
  }
  /** Bytes of the value, `null` for a tombstone. */
  value(i: number): Buffer | null {
    this.#valueStart ??= starts(this.#raw.valueLens);
    const len = this.#raw.valueLens[i]!;
    if (len < 0) return null;
    const s = this.#valueStart[i]!;
    return this.#raw.values.subarray(s, s + len);
  }
  /** The key as UTF-8 text, `null` when the message has no key. */
  keyText(i: number): string | null {
    this.#keyStart ??= starts(this.#raw.keyLens);
    this.#keysText ??= wholeText(this.#raw.keys);
    return sliceText(this.#raw.keys, this.#keysText, this.#keyStart[i]!, this.#raw.keyLens[i]!);
  }
  /** The value as UTF-8 text, `null` for a tombstone. */
  valueText(i: number): string | null {
    this.#valueStart ??= starts(this.#raw.valueLens);
    this.#valuesText ??= wholeText(this.#raw.values);
    return sliceText(this.#raw.values, this.#valuesText, this.#valueStart[i]!, this.#raw.valueLens[i]!);
  }
  /** Key plus value bytes of message `i`. */
  size(i: number): number {
    return Math.max(0, this.#raw.keyLens[i]!) + Math.max(0, this.#raw.valueLens[i]!);
  }
  /** Length of the value, -1 for a tombstone (no slice is made). */
  valueLength(i: number): number {
    return this.#raw.valueLens[i]!;
  }
  /** Total key + value bytes in the batch. */
  get bytes(): number {
    return this.#raw.keys.length + this.#raw.values.length;
  }
  headers(i: number): Array<[string, Buffer | null]> {
    const h = this.#raw.headers;
    if (!h) return [];
    const out: Array<[string, Buffer | null]> = [];
    let pos = 0;
    for (let j = 0; j < h.index.length; j++) {
      const len = h.lens[j]!;
      if (h.index[j] === i) out.push([h.names[j]!, len < 0 ? null : h.values.subarray(pos, pos + len)]);
      if (len > 0) pos += len;
    }
    return out;
  }
}

// One UTF-8 decode for the whole buffer instead of one per message. When the text has as many
// characters as the buffer has bytes, every byte decoded to exactly one character (a multi-byte
// character, or an invalid run of two or more bytes replaced by one U+FFFD, makes it shorter), so
// byte offsets are character offsets and a slice equals that message decoded alone. Otherwise
// null: messages are decoded one by one.
function wholeText(buf: Buffer): string | null {
  const text = buf.toString("utf8");
  return text.length === buf.length ? text : null;
}

function sliceText(buf: Buffer, text: string | null, start: number, len: number): string | null {
  if (len < 0) return null;
  return text !== null ? text.slice(start, start + len) : buf.toString("utf8", start, start + len);
}

function starts(lens: Int32Array): Int32Array {
  const out = new Int32Array(lens.length);
  let pos = 0;
  for (let i = 0; i < lens.length; i++) {
    out[i] = pos;
    const l = lens[i]!;
    if (l > 0) pos += l;
  }
  return out;
}

export interface ClientHooks {
  /** librdkafka log lines (otherwise dropped). */
  onLog?: (e: LogEvent) => void;
  /** Non-fatal client errors (broker down, transport); librdkafka retries these itself. */
  onError?: (e: ErrorEvent) => void;
}

const CONSUMER_DEFAULTS: Properties = {
  "enable.auto.commit": false,
  "enable.auto.offset.store": false,
  "auto.offset.reset": "earliest",
  "enable.partition.eof": false,
  "queued.max.messages.kbytes": 16384,
};

export class KafkaConsumer {
  #c: NativeConsumer;
  #hooks: ClientHooks;
  #busy = false;
  #closed = false;
  #fatal: ErrorEvent | undefined;

  /** `properties` are librdkafka consumer properties; `group.id` and `bootstrap.servers` are required. */
  constructor(properties: Properties, hooks: ClientHooks = {}) {
    for (const req of ["bootstrap.servers", "group.id"])
      if (!properties[req]) throw new KafkaError(`consumer: property ${req} is required`, "ERR__INVALID_ARG", { property: req });
    const props = toStrings({ ...CONSUMER_DEFAULTS, ...properties }, "consumer");
    this.#hooks = hooks;
    this.#c = callSync(() => new (addon().Consumer)(props));
  }

  subscribe(topics: string[]): void {
    if (!topics.length) throw new KafkaError("subscribe: no topics", "ERR__INVALID_ARG");
    callSync(() => this.#c.subscribe(topics));
  }
  unsubscribe(): void {
    callSync(() => this.#c.unsubscribe());
  }

  /** Waits up to `timeoutMs` for the first message, then returns whatever is queued (≤ `max`). */
  async consume(max = 10_000, timeoutMs = 100): Promise<MessageBatch> {
    if (!Number.isInteger(max) || max < 1) throw new KafkaError(`consume: max must be a positive integer, got ${max}`, "ERR__INVALID_ARG");
    if (this.#fatal) throw new KafkaError(this.#fatal.message, this.#fatal.code, { fatal: true });
    if (this.#busy) throw new KafkaError("consume: a consume call is already in flight", "ERR__STATE");
    this.#busy = true;
    try {
      const raw = await call(() => this.#c.consume(max, Math.max(0, Math.floor(timeoutMs))));
      this.#dispatch(raw);
      return new MessageBatch(raw);
    } finally {
      this.#busy = false;
    }
  }

  #dispatch(ev: ClientEvents): void {
    if (ev.droppedLogs && this.#hooks.onLog)
      this.#hooks.onLog({ level: 4, facility: "CDCSINK", message: `${ev.droppedLogs} librdkafka log lines dropped` });
    for (const l of ev.logs) this.#hooks.onLog?.(l);
    for (const e of ev.errors) {
      if (e.fatal) this.#fatal ??= e;
      this.#hooks.onError?.(e);
    }
  }

  /** Drains logs, errors and rebalance events outside of consume. */
  events(): ClientEvents {
    const ev = this.#c.events();
    this.#dispatch(ev);
    return ev;
  }
  get fatalError(): ErrorEvent | undefined {
    return this.#fatal;
  }

  seek(partitions: TopicPartitionOffset[], timeoutMs = 5000): Promise<TopicPartitionOffset[]> {
    return call(() => this.#c.seek(partitions, timeoutMs));
  }
  pause(partitions: TopicPartition[]): TopicPartitionOffset[] {
    return callSync(() => this.#c.pause(partitions));
  }
  resume(partitions: TopicPartition[]): TopicPartitionOffset[] {
    return callSync(() => this.#c.resume(partitions));
  }
  /** Commits the given next-offsets, or without them the stored ones (sync unless `async`). */
  async commit(offsets?: TopicPartitionOffset[], opts: { async?: boolean } = {}): Promise<void> {
    if (offsets && !offsets.length) return;
    await call(async () => this.#c.commit(offsets ?? null, opts.async ?? false));
  }
  /** Marks next-offsets as processed; they are committed by `commit()` and, always, on partition revoke. */
  storeOffsets(offsets: TopicPartitionOffset[]): void {
    if (offsets.length) callSync(() => this.#c.storeOffsets(offsets));
  }
  committed(partitions: TopicPartition[], timeoutMs = 5000): Promise<TopicPartitionOffset[]> {
    return call(() => this.#c.committed(partitions, timeoutMs));
  }
  assignment(): TopicPartitionOffset[] {
    return callSync(() => this.#c.assignment());
  }
  position(partitions: TopicPartition[]): TopicPartitionOffset[] {
    return callSync(() => this.#c.position(partitions));
  }
  watermarks(topic: string, partition: number, timeoutMs = 5000): Promise<{ low: number; high: number }> {
    return call(() => this.#c.queryWatermarks(topic, partition, timeoutMs));
  }
  cachedWatermarks(topic: string, partition: number): { low: number; high: number } {
    return callSync(() => this.#c.cachedWatermarks(topic, partition));
  }
  /** Every topic the cluster has, with its partition count (creates nothing). */
  listTopics(timeoutMs = 5000): Promise<Array<{ topic: string; partitions: number; error?: string }>> {
    return call(() => this.#c.listTopics(timeoutMs));
  }
  /** The latest statistics JSON (needs `statistics.interval.ms`), parsed. */
  stats(): Record<string, unknown> | null {
    const s = this.#c.stats();
    return s ? JSON.parse(s) : null;
  }
  memberId(): string | null {
    return callSync(() => this.#c.memberId());
  }
  /** Leaves the group cleanly and frees the handle. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const ev = await call(() => this.#c.close());
    if (ev) this.#dispatch(ev);
  }
}

export interface ProduceMessage {
  key?: string | Uint8Array | null;
  value: string | Uint8Array | null;
  partition?: number;
  headers?: Array<[string, string | Uint8Array | null]>;
}

const enc = new TextEncoder();
const toBytes = (v: string | Uint8Array): Uint8Array => (typeof v === "string" ? enc.encode(v) : v);

export class KafkaProducer {
  #p: NativeProducer;
  #closed = false;
  constructor(properties: Properties) {
    if (!properties["bootstrap.servers"])
      throw new KafkaError("producer: property bootstrap.servers is required", "ERR__INVALID_ARG", { property: "bootstrap.servers" });
    this.#p = callSync(() => new (addon().Producer)(toStrings({ "linger.ms": 5, ...properties }, "producer")));
  }

  /** Enqueues messages in one native call (waits while librdkafka's queue is full). */
  produce(topic: string, messages: ProduceMessage[]): Promise<number> {
    const n = messages.length;
    const partitions = new Int32Array(n);
    const keyLens = new Int32Array(n);
    const valueLens = new Int32Array(n);
    const keyParts: Uint8Array[] = [];
    const valueParts: Uint8Array[] = [];
    let hIndex: number[] | undefined;
    const hNames: string[] = [];
    const hLens: number[] = [];
    const hParts: Uint8Array[] = [];
    for (let i = 0; i < n; i++) {
      const m = messages[i]!;
      partitions[i] = m.partition ?? -1;
      if (m.key === undefined || m.key === null) keyLens[i] = -1;
      else {
        const b = toBytes(m.key);
        keyLens[i] = b.length;
        keyParts.push(b);
      }
      if (m.value === null) valueLens[i] = -1;
      else {
        const b = toBytes(m.value);
        valueLens[i] = b.length;
        valueParts.push(b);
      }
      if (m.headers?.length) {
        hIndex ??= [];
        for (const [name, v] of m.headers) {
          hIndex.push(i);
          hNames.push(name);
          if (v === null) hLens.push(-1);
          else {
            const b = toBytes(v);
            hLens.push(b.length);
            hParts.push(b);
          }
        }
      }
    }
    const headers = hIndex
      ? { index: Int32Array.from(hIndex), names: hNames, lens: Int32Array.from(hLens), values: Buffer.concat(hParts) }
      : undefined;
    return this.produceRaw(topic, partitions, Buffer.concat(keyParts), keyLens, Buffer.concat(valueParts), valueLens, headers);
  }

  /** Columnar produce: lengths of -1 mean null; partition -1 means the partitioner decides. */
  produceRaw(
    topic: string,
    partitions: Int32Array,
    keys: Buffer,
    keyLens: Int32Array,
    values: Buffer,
    valueLens: Int32Array,
    headers?: { index: Int32Array; names: string[]; lens: Int32Array; values: Buffer },
  ): Promise<number> {
    return call(() => this.#p.produce(topic, partitions, keys, keyLens, values, valueLens, headers));
  }

  /** Waits until every enqueued message is delivered or failed; returns the delivery report since the last call. */
  flush(timeoutMs = 30_000): Promise<DeliveryReport> {
    return call(() => this.#p.flush(timeoutMs));
  }
  deliveryReport(): DeliveryReport {
    return this.#p.events();
  }
  async close(timeoutMs = 5000): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await call(() => this.#p.close(timeoutMs));
  }
}

/** librdkafka's in-process mock cluster (rdkafka_mock.h): real brokers on 127.0.0.1 for tests. */
export class MockCluster {
  #m: NativeMock;
  readonly bootstrapServers: string;
  constructor(brokers = 1) {
    this.#m = callSync(() => new (addon().MockCluster)(brokers, {}));
    this.bootstrapServers = this.#m.bootstrapServers();
  }
  createTopic(topic: string, partitions: number, replicationFactor = 1): void {
    callSync(() => this.#m.createTopic(topic, partitions, replicationFactor));
  }
  brokerDown(brokerId: number): void {
    callSync(() => this.#m.brokerDown(brokerId));
  }
  brokerUp(brokerId: number): void {
    callSync(() => this.#m.brokerUp(brokerId));
  }
  brokerRtt(brokerId: number, ms: number): void {
    callSync(() => this.#m.brokerRtt(brokerId, ms));
  }
  /** Makes the next requests of Kafka API `apiKey` fail with these error names, in order. */
  pushRequestErrors(apiKey: number, errors: string[]): void {
    const codes = errors.map((e) => {
      const c = addon().errorCodes[e.replace(/^ERR_/, "")];
      if (c === undefined) throw new KafkaError(`unknown Kafka error name ${e}`, "ERR__INVALID_ARG");
      return c;
    });
    callSync(() => this.#m.pushRequestErrors(apiKey, codes));
  }
  clearRequestErrors(apiKey: number): void {
    callSync(() => this.#m.clearRequestErrors(apiKey));
  }
  close(): void {
    this.#m.close();
  }
}

/** Kafka protocol API keys used for fault injection. */
export const ApiKey = { Produce: 0, Fetch: 1, ListOffsets: 2, Metadata: 3, OffsetCommit: 8, OffsetFetch: 9, FindCoordinator: 10, JoinGroup: 11, Heartbeat: 12, SyncGroup: 14 } as const;
