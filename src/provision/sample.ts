// The newest Debezium records of a topic, read with a throwaway consumer group (cdc-sink-init-<random>,
// nothing committed) from the last few offsets of each partition: what `init` derives a table from
// when the events carry their schema.
import { randomUUID } from "node:crypto";
import { parseJson } from "../decode/json.ts";
import { KafkaConsumer } from "../kafka/index.ts";
import { consumerProperties, type KafkaConfig } from "../sources/kafka.ts";

type Obj = Record<string, unknown>;

export interface Sampled {
  /** records read */
  records: number;
  /** the newest record whose value carries a schema with an `after` struct */
  withSchema?: { key: string | null; value: Obj };
  /** a record's key without its value (schemaless topics still tell the key fields) */
  anyKey?: string | null;
}

/** Offsets read back from the end of each partition. */
const TAIL = 20;

const isObj = (x: unknown): x is Obj => !!x && typeof x === "object" && !Array.isArray(x);

/** True when the record's value is `{schema, payload}` with an `after` struct in the schema. */
export function hasRowSchema(value: unknown): value is Obj {
  if (!isObj(value) || !isObj(value.schema) || !("payload" in value)) return false;
  const fields = (value.schema as Obj).fields;
  return Array.isArray(fields) && fields.some((f) => isObj(f) && f.field === "after" && Array.isArray(f.fields));
}

export async function sampleTopic(kafka: KafkaConfig, topic: string, opts: { timeoutMs?: number } = {}): Promise<Sampled> {
  const c = new KafkaConsumer({ ...consumerProperties(kafka), "group.id": `cdc-sink-init-${randomUUID()}`, "enable.auto.commit": false, "auto.offset.reset": "earliest", "socket.timeout.ms": 5000 });
  const out: Sampled = { records: 0 };
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  /** partition -> the offset after the last one, once known; deleted when read to there */
  const pending = new Map<number, number>();
  let assigned = false;
  try {
    c.subscribe([topic]);
    while (Date.now() < deadline && (!assigned || pending.size)) {
      const b = await c.consume(500, 200);
      for (const r of b.rebalances) {
        if (r.type !== "assign") continue;
        assigned = true;
        const seeks = [];
        for (const p of r.partitions) {
          const w = await c.watermarks(p.topic, p.partition, 5000);
          if (w.high <= w.low) continue;
          pending.set(p.partition, w.high);
          seeks.push({ topic: p.topic, partition: p.partition, offset: Math.max(w.low, w.high - TAIL) });
        }
        if (seeks.length) await c.seek(seeks, 10_000);
      }
      for (let i = 0; i < b.count; i++) {
        out.records++;
        const key = b.keyText(i);
        if (out.anyKey === undefined && key !== null) out.anyKey = key;
        const text = b.valueText(i);
        if (text !== null) {
          try {
            const value = parseJson(text);
            if (hasRowSchema(value)) out.withSchema = { key, value };
          } catch {
            /* not JSON: nothing to learn from it */
          }
        }
        if (b.offset(i) + 1 >= (pending.get(b.partition(i)) ?? Infinity)) pending.delete(b.partition(i));
      }
    }
  } finally {
    await c.close();
  }
  return out;
}
