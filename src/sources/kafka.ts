// Kafka source: Debezium topics through the librdkafka addon. On assignment it seeks to the
// positions stored in the checkpoint table (the truth); Kafka's committed offsets are a mirror.
import { retry, type RetryPolicy } from "../backoff.ts";
import type { Config } from "../config.ts";
import { type Cause, causeOf, errorInfo } from "../errors.ts";
import { failpoint } from "../failpoints.ts";
import { KafkaConsumer, type MessageBatch, type Properties, type TopicPartition } from "../kafka/index.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import { partKey } from "../model.ts";
import type { CheckpointStore, CommittedPart, Source } from "../pipeline.ts";
import type { Fences } from "../sink/fence.ts";

// librdkafka log levels are syslog levels
const LOG_LEVEL = (l: number) => (l <= 3 ? "error" : l <= 4 ? "warn" : l <= 6 ? "info" : "debug") as "error" | "warn" | "info" | "debug";

export type KafkaConfig = NonNullable<Config["kafka"]>;

type Stats = {
  ts?: number;
  brokers?: Record<string, { name?: string; nodeid?: number; state?: string; stateage?: number; rxidle?: number; txidle?: number; waitresp_cnt?: number; rx?: number }>;
  topics?: Record<string, { partitions?: Record<string, { consumer_lag?: number }> }>;
};
/** broker states of a connection made but not yet usable: one stuck in them is not answering */
const HANDSHAKE = new Set(["CONNECT", "SSL_HANDSHAKE", "AUTH_LEGACY", "AUTH_HANDSHAKE", "AUTH_REQ", "APIVERSION_QUERY", "REAUTH"]);

/** librdkafka's logical offset for a partition's first record */
const OFFSET_BEGINNING = -2;

/**
 * The consumer properties the daemon runs with: its defaults, then the configured ones.
 * fetch.queue.backoff.ms: librdkafka's default (1000) stops fetching for a second whenever the
 * prefetch queue is full; 10 measured no stall at any rate (bench kafka-consume), with the queue
 * kept at 16 MiB (a 64 MiB queue was no faster and took 10-20 MiB more).
 * Group: roundrobin spreads topics of one partition each over the members (range gives every such
 * topic to the first member, and a second instance never becomes ready); a 1 s heartbeat and a
 * 10 s session make a join or a leave settle in about half a second and a dead member be replaced
 * in about 10 s (bench rebalance, real broker: librdkafka's 3 s heartbeat and 45 s session took
 * 1.5 s and 43 s). The classic protocol: KIP-848's "consumer" protocol took 5 s per join.
 * Statistics twice a second: a broker that stops answering shows in readiness within about 1.5 s.
 * Reconnecting at least every second (librdkafka's backoff grows to 10 s): the fault suite's
 * network scenario saw a broker back for 2 s before the first attempt.
 * Metadata every 5 s: a subscribed topic that does not exist yet (Debezium creates a table's topic
 * with its first record) was found at librdkafka's next refresh, up to 5 minutes later.
 */
export function consumerProperties(config: KafkaConfig): Properties {
  return {
    "bootstrap.servers": config.bootstrap_servers,
    "group.id": config.group_id,
    "fetch.wait.max.ms": 100,
    "fetch.queue.backoff.ms": 10,
    "queued.max.messages.kbytes": 16384,
    "partition.assignment.strategy": "roundrobin",
    "heartbeat.interval.ms": 1000,
    "session.timeout.ms": 10000,
    "statistics.interval.ms": 500,
    "reconnect.backoff.max.ms": 1000,
    "topic.metadata.refresh.interval.ms": 5000,
    "client.id": "cdc-sink",
    ...config.properties,
  };
}

/** The checkpoint stream of a consumer group. */
export const kafkaStream = (config: KafkaConfig) => `kafka:${config.group_id}`;

export function createKafkaSource(deps: {
  config: KafkaConfig;
  topics: string[];
  checkpoints: CheckpointStore;
  /** the owner generations this instance claimed, checked by the applier (zombie fencing) */
  fences?: Fences;
  retry: RetryPolicy;
  metrics: Metrics;
  log: Logger;
}): Source<MessageBatch> & { consumer(): KafkaConsumer | undefined } {
  const { config, checkpoints, metrics, log } = deps;
  const stream = kafkaStream(config);
  const assigned = new Set<string>();
  const closing = new AbortController();
  let consumer: KafkaConsumer | undefined;
  let fatal: string | undefined;
  /** the brokers cannot be used, and why; cleared when a broker is up again */
  let brokers: { error: string; cause: Cause } | undefined;
  let brokersCheckedAt = 0;

  function brokersFailed(code: string, message: string): void {
    const cause = causeOf({ code });
    if (brokers?.cause !== cause) {
      if (brokers) metrics.dependencyDown.remove({ dependency: "kafka", cause: brokers.cause });
      metrics.dependencyDown.set({ dependency: "kafka", cause }, 1);
    }
    brokers = { error: `${code}: ${message}`, cause };
  }

  function brokersUp(): void {
    if (!brokers) return;
    metrics.dependencyDown.remove({ dependency: "kafka", cause: brokers.cause });
    log.info("kafka brokers reachable again");
    brokers = undefined;
  }

  /** While the brokers are failing, librdkafka's statistics tell when one is up again (at most once a second). */
  function recheckBrokers(): void {
    if (!brokers || Date.now() - brokersCheckedAt < 1000) return;
    brokersCheckedAt = Date.now();
    if (Object.values(latestStats()?.brokers ?? {}).some((b) => (b.nodeid ?? -1) >= 0 && b.state === "UP")) brokersUp();
  }

  let statsCache: { at: number; stats: Stats | null } | undefined;
  /** librdkafka's statistics, parsed at most once per 250 ms for all their readers. */
  function latestStats(): Stats | null {
    if (!statsCache || Date.now() - statsCache.at > 250) statsCache = { at: Date.now(), stats: consumer?.stats() as Stats | null };
    return statsCache.stats;
  }
  // a connected broker answers every fetch within fetch.wait.max.ms: silence beyond it is a link that drops packets
  const silenceUs = (Math.max(800, Number(consumerProperties(config)["fetch.wait.max.ms"]) + 700) || 800) * 1000;

  /**
   * Per broker, the first statistics of the current run in which requests were waiting and nothing
   * was received: what was waiting then had been sent at least `txidle` earlier.
   */
  const waitingSince = new Map<string, { ts: number; rx: number; txidle: number }>();
  /** Brokers with a request waiting longer than they take to answer. */
  function silentBrokers(): string[] {
    const out: string[] = [];
    const stats = latestStats();
    for (const [key, b] of Object.entries(stats?.brokers ?? {})) {
      if ((b.nodeid ?? -1) < 0) continue;
      let waitedUs = 0;
      if ((b.waitresp_cnt ?? 0) > 0 && stats?.ts !== undefined && b.rx !== undefined) {
        let w = waitingSince.get(key);
        if (!w || w.rx !== b.rx) waitingSince.set(key, (w = { ts: stats.ts, rx: b.rx, txidle: b.txidle ?? 0 }));
        // txidle alone restarts with every request sent (a heartbeat, a metadata refresh) into a silent link
        waitedUs = stats.ts - w.ts + w.txidle;
      } else waitingSince.delete(key);
      if (b.state === "UP" ? waitedUs > silenceUs && (b.rxidle ?? -1) > silenceUs : HANDSHAKE.has(b.state ?? "") && (b.stateage ?? 0) > silenceUs)
        out.push(`${b.name ?? b.nodeid} (${b.state === "UP" ? `nothing received for ${((b.rxidle ?? 0) / 1e6).toFixed(1)} s` : `${b.state} for ${((b.stateage ?? 0) / 1e6).toFixed(1)} s`})`);
    }
    return out;
  }

  function updateLag(): void {
    const stats = latestStats();
    if (!stats?.topics) return;
    for (const [topic, t] of Object.entries(stats.topics))
      for (const [p, s] of Object.entries(t.partitions ?? {})) {
        if (p === "-1" || !assigned.has(`${topic}/${p}`)) continue;
        if (typeof s.consumer_lag === "number" && s.consumer_lag >= 0) metrics.consumerLag.set({ topic, partition: p }, s.consumer_lag);
      }
  }
  metrics.registry.onCollect(updateLag);

  /** A read of the checkpoint table, retried until it answers or the source closes. */
  function readCheckpoints<T>(read: () => Promise<T>): Promise<T> {
    return retry(read, {
      policy: deps.retry,
      signal: closing.signal,
      onError(e, attempt, waitMs) {
        metrics.retries.inc({ stage: "source" });
        log.error("reading checkpoints failed; retrying", { ...errorInfo(e), attempt, retryInMs: waitMs });
      },
    });
  }

  async function onAssign(parts: TopicPartition[]): Promise<void> {
    for (const p of parts) assigned.add(`${p.topic}/${p.partition}`);
    metrics.up.set({}, assigned.size ? 1 : 0);
    // positions in the checkpoint table win over Kafka's committed offsets; claiming the parts makes
    // an instance that owned them before (stopped, not dead) commit nothing more
    const names = parts.map((p) => `${p.topic}/${p.partition}`);
    const claimed = await readCheckpoints(() => checkpoints.claim(stream, names));
    for (const [part, c] of claimed) deps.fences?.set(partKey({ stream, part }), c.generation, c.position);
    const seeks = parts
      .map((p) => ({ ...p, offset: claimed.get(`${p.topic}/${p.partition}`)?.position }))
      .filter((p): p is TopicPartition & { offset: bigint } => p.offset !== undefined)
      .map((p) => ({ topic: p.topic, partition: p.partition, offset: Number(p.offset) }));
    if (seeks.length) {
      const r = await consumer!.seek(seeks, 10_000);
      log.info("partitions assigned; resumed from checkpoint table", { partitions: r.map((p) => `${p.topic}/${p.partition}@${p.offset}`) });
    } else {
      log.info("partitions assigned", { partitions: parts.map((p) => `${p.topic}/${p.partition}`) });
    }
  }

  function onRevoke(parts: TopicPartition[]): void {
    failpoint("during-revoke");
    for (const p of parts) {
      assigned.delete(`${p.topic}/${p.partition}`);
      metrics.consumerLag.remove({ topic: p.topic, partition: p.partition });
    }
    metrics.up.set({}, assigned.size ? 1 : 0);
    log.info("partitions revoked", { partitions: parts.map((p) => `${p.topic}/${p.partition}`) });
  }

  return {
    kind: "kafka",
    consumer: () => consumer,

    async start() {
      consumer = new KafkaConsumer(consumerProperties(config), {
        onLog: (l) => log[LOG_LEVEL(l.level)]("librdkafka", { facility: l.facility, message: l.message }),
        onError: (e) => {
          metrics.errors.inc({ stage: "source", code: e.code });
          if (e.fatal) fatal = `${e.code}: ${e.message}`;
          // one broker connection dropping (an idle timeout) is routine: only these mean the brokers cannot be used
          if (/ALL_BROKERS_DOWN|AUTHENTICATION|AUTHORIZATION|RESOLVE/.test(e.code)) brokersFailed(e.code, e.message);
          log[e.fatal ? "error" : "warn"]("kafka client error", { code: e.code, error: e.message, fatal: e.fatal, cause: causeOf(e) });
        },
      });
      consumer.subscribe(deps.topics);
      for (const topic of deps.topics) metrics.eventsConsumed.init({ topic });
      log.info("subscribed", { topics: deps.topics, group: config.group_id });
    },

    async read(max: number, waitMs: number, maxBytes?: number): Promise<MessageBatch> {
      const b = await consumer!.consume(Math.min(max, config.fetch_max_messages), Math.max(1, waitMs), Math.max(1, maxBytes ?? Number.MAX_SAFE_INTEGER));
      if (b.count) failpoint("after-fetch");
      for (const r of b.rebalances) {
        if (r.type === "revoke") onRevoke(r.partitions);
        else await onAssign(r.partitions);
      }
      if (b.count) brokersUp();
      else recheckBrokers();
      return b;
    },

    async resync() {
      // dropped batches' records are read again: every part still assigned goes back to its
      // checkpoint, one without any to its first record (what it held may be among them)
      const stored = await readCheckpoints(() => checkpoints.load(stream));
      const seeks = [...assigned].map((part) => {
        const slash = part.lastIndexOf("/");
        const offset = stored.get(part);
        const key = partKey({ stream, part });
        if (offset === undefined) deps.fences?.positions.delete(key);
        else deps.fences?.positions.set(key, offset);
        return { topic: part.slice(0, slash), partition: Number(part.slice(slash + 1)), offset: offset === undefined ? OFFSET_BEGINNING : Number(offset) };
      });
      if (seeks.length) await consumer!.seek(seeks, 10_000);
      const fromStart = seeks.filter((p) => p.offset === OFFSET_BEGINNING).length;
      log.info("read again from the checkpoint table", { partitions: seeks.length, fromFirstRecord: fromStart });
    },

    async acknowledge(parts: CommittedPart[]) {
      if (!config.commit_offsets || !consumer) return;
      const offsets = [];
      for (const p of parts) {
        if (p.stream !== stream || !assigned.has(p.part)) continue;
        const slash = p.part.lastIndexOf("/");
        offsets.push({ topic: p.part.slice(0, slash), partition: Number(p.part.slice(slash + 1)), offset: Number(p.next) });
      }
      consumer.storeOffsets(offsets);
      await consumer.commit(undefined, { async: true });
    },

    status() {
      if (fatal) return { ready: false, reason: `kafka client failed: ${fatal}`, fatal };
      if (brokers) return { ready: false, reason: `kafka brokers not usable (${brokers.cause}): ${brokers.error}` };
      if (!assigned.size) return { ready: false, reason: "no partitions assigned (joining the consumer group)" };
      const silent = silentBrokers();
      if (silent.length) return { ready: false, reason: `kafka brokers not answering: ${silent.join(", ")}` };
      return { ready: true };
    },

    async close() {
      closing.abort();
      await consumer?.close();
      metrics.up.set({}, 0);
    },
  };
}

