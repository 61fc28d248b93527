// KafkaConsumer: a batch consumer over the addon, with the daemon's safe defaults (manual offset
// store and commit, earliest reset) and librdkafka's logs and errors handed to hooks.
import { addon, type NativeConsumer, toStrings } from "./addon.ts";
import { MessageBatch } from "./batch.ts";
import { call, callSync, KafkaError } from "./errors.ts";
import type { ClientEvents, ErrorEvent, LogEvent, Properties, TopicPartition, TopicPartitionOffset } from "./types.ts";

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
  #inflight: Promise<unknown> | undefined;
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

  /** Waits up to `timeoutMs` for the first message, then returns whatever is queued (≤ `max` messages, about `maxBytes` of keys and values, at least one). */
  async consume(max = 10_000, timeoutMs = 100, maxBytes = Number.MAX_SAFE_INTEGER): Promise<MessageBatch> {
    if (!Number.isInteger(max) || max < 1) throw new KafkaError(`consume: max must be a positive integer, got ${max}`, "ERR__INVALID_ARG");
    if (!(maxBytes > 0)) throw new KafkaError(`consume: maxBytes must be positive, got ${maxBytes}`, "ERR__INVALID_ARG");
    if (this.#fatal) throw new KafkaError(this.#fatal.message, this.#fatal.code, { fatal: true });
    if (this.#inflight) throw new KafkaError("consume: a consume call is already in flight", "ERR__STATE");
    const pending = call(() => this.#c.consume(max, Math.max(0, Math.floor(timeoutMs)), maxBytes));
    this.#inflight = pending;
    try {
      const raw = await pending;
      this.#dispatch(raw);
      return new MessageBatch(raw);
    } finally {
      this.#inflight = undefined;
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
    // the handle is freed by close: let a consume call still polling it finish first (≤ its timeout)
    await this.#inflight?.catch(() => undefined);
    const ev = await call(() => this.#c.close());
    if (ev) this.#dispatch(ev);
  }
}
