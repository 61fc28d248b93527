// Kafka source: Debezium topics through the librdkafka addon. On assignment it seeks to the
// positions stored in the checkpoint table (the truth); Kafka's committed offsets are a mirror.
import type { Batch, Coord, Target } from "../batch.ts";
import type { Config } from "../config.ts";
import { decodeDebezium } from "../decode/debezium.ts";
import { KafkaConsumer, type Properties, type TopicPartition } from "../kafka/native.ts";
import { errorInfo, type Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { Source } from "../pipeline.ts";
import type { Applier, ApplyResult } from "../sink/apply.ts";

// librdkafka log levels are syslog levels
const LOG_LEVEL = (l: number) => (l <= 3 ? "error" : l <= 4 ? "warn" : l <= 6 ? "info" : "debug") as "error" | "warn" | "info" | "debug";

/** The record's bytes when its decoded text does not hold them exactly (NUL, invalid UTF-8); else null. */
function inexact(text: string | null, bytes: Buffer | null): Buffer | null {
  if (text === null || bytes === null) return null;
  return text.includes("\u0000") || !Buffer.from(text, "utf8").equals(bytes) ? bytes : null;
}

export function createKafkaSource(deps: {
  config: NonNullable<Config["kafka"]>;
  targets: Target[];
  applier: Applier;
  metrics: Metrics;
  log: Logger;
}): Source & { consumer(): KafkaConsumer | undefined } {
  const { config, applier, metrics, log } = deps;
  const byTopic = new Map<string, Target>();
  for (const t of deps.targets) byTopic.set(t.mapping.topic!, t);
  const stream = `kafka:${config.group_id}`;
  const assigned = new Set<string>();
  const unknownFields = new Set<string>();
  let consumer: KafkaConsumer | undefined;
  let fatal: string | undefined;

  const props: Properties = {
    "bootstrap.servers": config.bootstrap_servers,
    "group.id": config.group_id,
    "fetch.wait.max.ms": 100,
    "statistics.interval.ms": 5000,
    "client.id": "cdc-sink",
    ...config.properties,
  };

  function updateLag(): void {
    const stats = consumer?.stats() as { topics?: Record<string, { partitions?: Record<string, { consumer_lag?: number }> }> } | null;
    if (!stats?.topics) return;
    for (const [topic, t] of Object.entries(stats.topics))
      for (const [p, s] of Object.entries(t.partitions ?? {})) {
        if (p === "-1" || !assigned.has(`${topic}/${p}`)) continue;
        if (typeof s.consumer_lag === "number" && s.consumer_lag >= 0) metrics.consumerLag.set({ topic, partition: p }, s.consumer_lag);
      }
  }
  metrics.registry.onCollect(updateLag);

  async function onAssign(parts: TopicPartition[]): Promise<void> {
    for (const p of parts) assigned.add(`${p.topic}/${p.partition}`);
    metrics.up.set({}, assigned.size ? 1 : 0);
    // positions in the checkpoint table win over Kafka's committed offsets
    let stored: Map<string, number> | undefined;
    for (let attempt = 1; !stored; attempt++) {
      try {
        stored = await applier.checkpoints(stream);
      } catch (e) {
        metrics.retries.inc({ stage: "source" });
        log.error("reading checkpoints failed; retrying", { ...errorInfo(e), attempt });
        await new Promise((r) => setTimeout(r, Math.min(30_000, 200 * 2 ** attempt)));
      }
    }
    const seeks = parts
      .map((p) => ({ ...p, offset: stored.get(`${p.topic}/${p.partition}`) }))
      .filter((p): p is TopicPartition & { offset: number } => p.offset !== undefined);
    if (seeks.length) {
      const r = await consumer!.seek(seeks, 10_000);
      log.info("partitions assigned; resumed from checkpoint table", { partitions: r.map((p) => `${p.topic}/${p.partition}@${p.offset}`) });
    } else {
      log.info("partitions assigned", { partitions: parts.map((p) => `${p.topic}/${p.partition}`) });
    }
  }

  return {
    kind: "kafka",
    consumer: () => consumer,
    async start() {
      consumer = new KafkaConsumer(props, {
        onLog: (l) => log[LOG_LEVEL(l.level)]("librdkafka", { facility: l.facility, message: l.message }),
        onError: (e) => {
          metrics.errors.inc({ stage: "source", code: e.code });
          if (e.fatal) fatal = `${e.code}: ${e.message}`;
          log[e.fatal ? "error" : "warn"]("kafka client error", { code: e.code, error: e.message, fatal: e.fatal });
        },
      });
      consumer.subscribe([...byTopic.keys()]);
      for (const topic of byTopic.keys()) metrics.eventsConsumed.init({ topic });
      log.info("subscribed", { topics: [...byTopic.keys()], group: config.group_id });
    },

    async read(batch: Batch, waitMs: number): Promise<number> {
      const b = await consumer!.consume(config.fetch_max_messages, Math.max(1, waitMs));
      for (const r of b.rebalances) {
        if (r.type === "revoke") {
          for (const p of r.partitions) {
            assigned.delete(`${p.topic}/${p.partition}`);
            metrics.consumerLag.remove({ topic: p.topic, partition: p.partition });
          }
          metrics.up.set({}, assigned.size ? 1 : 0);
          log.info("partitions revoked", { partitions: r.partitions.map((p) => `${p.topic}/${p.partition}`) });
        } else {
          await onAssign(r.partitions);
        }
      }
      const now = Date.now();
      const names = b.topicNames;
      const counts = new Array<number>(names.length).fill(0);
      for (let i = 0; i < b.count; i++) {
        const ti = b.topicIndex(i);
        counts[ti]!++;
        const topic = names[ti]!;
        const t = byTopic.get(topic);
        const offset = b.offset(i);
        const coord: Coord = { stream, part: `${topic}/${b.partition(i)}`, position: offset };
        batch.advance(coord, offset + 1, b.size(i), now);
        if (!t) continue;
        const keyText = b.keyText(i);
        const valueText = b.valueText(i);
        try {
          const c = decodeDebezium(t, keyText, valueText, coord, unknownFields);
          if (c) batch.add(c, now);
        } catch (e) {
          const info = errorInfo(e);
          metrics.errors.inc({ stage: "decode", code: String(info.code ?? "DECODE") });
          log.warn("event cannot be decoded; dead-lettered", { topic, partition: b.partition(i), offset, error: info.error });
          batch.deadLetter({
            coord,
            table: t.table.name,
            stage: "decode",
            key: keyText,
            value: valueText,
            keyBytes: inexact(keyText, b.key(i)),
            valueBytes: inexact(valueText, b.value(i)),
            error: String(info.error),
            code: String(info.code ?? "DECODE"),
          });
        }
      }
      for (let ti = 0; ti < names.length; ti++) if (counts[ti]) metrics.eventsConsumed.inc({ topic: names[ti]! }, counts[ti]);
      if (unknownFields.size) {
        log.warn("source fields with no analytics column are ignored", { fields: [...unknownFields] });
        unknownFields.clear();
      }
      return b.count;
    },

    async committed(result: ApplyResult) {
      if (!config.commit_offsets || !consumer) return;
      const offsets = [];
      for (const p of result.positions.values()) {
        if (p.stream !== stream || !assigned.has(p.part)) continue;
        const slash = p.part.lastIndexOf("/");
        offsets.push({ topic: p.part.slice(0, slash), partition: Number(p.part.slice(slash + 1)), offset: p.next });
      }
      consumer.storeOffsets(offsets);
      await consumer.commit(undefined, { async: true });
    },

    ready: () => assigned.size > 0 && !fatal,
    get fatalError() {
      return fatal;
    },

    async close() {
      await consumer?.close();
      metrics.up.set({}, 0);
    },
  } as Source & { consumer(): KafkaConsumer | undefined };
}
