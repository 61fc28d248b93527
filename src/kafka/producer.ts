// KafkaProducer: columnar produce (one native call per batch of messages) and delivery reports.
import { addon, type NativeProducer, toStrings } from "./addon.ts";
import { call, callSync, KafkaError } from "./errors.ts";
import type { DeliveryReport, Properties, RawHeaders } from "./types.ts";

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
    headers?: RawHeaders,
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
