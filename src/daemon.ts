// The daemon: the pipeline wired from a config — analytics database, targets, source, decoder,
// sink — with the HTTP endpoints and its health. `cdc-sink run`, the tests and the benches all
// start it through createDaemon.
import { retry } from "./backoff.ts";
import type { Config } from "./config.ts";
import { createDebeziumDecoder } from "./decode/debezium.ts";
import { startPendingGauge } from "./dlq/pending.ts";
import { createPgChangeDecoder } from "./decode/pgchanges.ts";
import { causeOf, errorCode, errorInfo, SchemaError, Stopped } from "./errors.ts";
import { createHttpApp, serve } from "./http.ts";
import type { Logger } from "./log.ts";
import { createMetrics, type Metrics } from "./metrics.ts";
import type { Target } from "./model.ts";
import { createPipeline, type Pipeline, type RecordSet, type Source, type Decoder } from "./pipeline.ts";
import { provisionAtStart, SourceUnavailable } from "./provision/cli.ts";
import { createSink } from "./sink/apply.ts";
import { createDatabaseHealth, openAnalytics } from "./sink/database.ts";
import { createEvolver } from "./sink/evolve.ts";
import { Fences } from "./sink/fence.ts";
import { createBulkLoader } from "./sink/load.ts";
import { createCheckpointStore, ensureStateTables } from "./sink/state.ts";
import { loadTargets } from "./sink/targets.ts";
import { registerVerifyMetrics, startVerifyLoop } from "./verify/index.ts";
import { createKafkaSource, kafkaStream } from "./sources/kafka.ts";
import { createPgSource, pgSourceInfo } from "./sources/postgres/index.ts";

export const EXIT = { OK: 0, FAILURE: 1, USAGE: 64, CONFIG: 78 } as const;

/** /healthz fails when the loop has not turned for this long. */
const STALL_MS = 120_000;

export interface Daemon {
  readonly metrics: Metrics;
  /** the HTTP port once listening (0: disabled) */
  readonly port: number;
  /** Runs until stop() or a fatal error; resolves with the exit code. */
  run(): Promise<number>;
  /** Stops reading; the batch in flight finishes; run() then resolves with 0. */
  stop(): void;
  /** Reasons the daemon is not ready; empty when ready. */
  readiness(): string[];
}

export function createDaemon(config: Config, opts: { log: Logger; metrics?: Metrics }): Daemon {
  const { log } = opts;
  const metrics = opts.metrics ?? createMetrics();
  const policy = { initialMs: config.retry.initial_ms, maxMs: config.retry.max_ms };
  const stopping = new AbortController();
  let lastBeat = Date.now();
  const database = createDatabaseHealth(config.postgres, metrics, log);
  const fences = new Fences();
  if (config.verify.interval) registerVerifyMetrics(metrics.registry);
  let source: { status(): { ready: boolean; reason?: string; fatal?: string } } | undefined;
  let pipeline: Pipeline | undefined;
  let port = 0;

  function readiness(): string[] {
    const r: string[] = [];
    if (stopping.signal.aborted) r.push("draining (shutdown in progress)");
    const s = source?.status();
    if (!s) r.push("starting");
    else if (!s.ready) r.push(s.reason ?? "source not connected");
    const db = database.reason();
    if (db) r.push(db);
    return r;
  }

  function liveness(): string | null {
    const fatal = source?.status().fatal;
    if (fatal) return fatal;
    const idle = Date.now() - lastBeat;
    return idle > STALL_MS ? `processing loop stalled for ${Math.round(idle / 1000)} s` : null;
  }

  /** State tables and targets; retried while the database is unreachable, never for a schema that does not fit. */
  async function prepare(sql: ReturnType<typeof openAnalytics>): Promise<Target[]> {
    return retry(
      async () => {
        await ensureStateTables(sql, config.postgres.state_schema);
        if (config.postgres.auto_provision) await provisionAtStart(config, sql, log);
        const targets = await loadTargets(sql, config.mappings);
        database.ok();
        return targets;
      },
      {
        policy,
        signal: stopping.signal,
        wake: () => database.up(),
        onError(e, attempt, waitMs) {
          if (e instanceof SchemaError) throw e;
          const source = e instanceof SourceUnavailable;
          // before the first answer every failure counts as the database being unusable
          if (!source) database.failed(e, true);
          metrics.retries.inc({ stage: source ? "source" : "apply" });
          metrics.errors.inc({ stage: source ? "source" : "apply", code: errorCode(e) });
          lastBeat = Date.now();
          log.error(source ? "auto_provision cannot read the source; retrying" : "analytics database not reachable; retrying", { ...errorInfo(e), cause: causeOf(e), attempt, retryInMs: waitMs });
        },
      },
    );
  }

  function build<R extends RecordSet>(sql: ReturnType<typeof openAnalytics>, s: Source<R>, decoder: Decoder<R>): Pipeline {
    source = s;
    const sink = createSink({ sql, stateSchema: config.postgres.state_schema, metrics, log, maxValueBytes: config.dead_letters.max_value_bytes, fences });
    return createPipeline({
      source: s,
      decoder,
      database,
      sink: { ...sink, evolve: createEvolver({ sql, stateSchema: config.postgres.state_schema, log, metrics }) },
      limits: { maxEvents: config.batch.max_events, maxBytes: config.batch.max_bytes, maxLatencyMs: config.batch.max_latency_ms },
      retry: policy,
      metrics,
      log,
      heartbeat: () => (lastBeat = Date.now()),
    });
  }

  /** The source and its decoder for the configured source kind. */
  function wire(targets: Target[], sql: ReturnType<typeof openAnalytics>): Pipeline {
    const checkpoints = createCheckpointStore(sql, config.postgres.state_schema);
    const onConsumed = (topic: string, n: number) => metrics.eventsConsumed.inc({ topic }, n);
    for (const t of targets) metrics.mappingStopped.init({ table: t.table.name });
    if (config.source.kind === "kafka") {
      const kafka = config.kafka!;
      const decoder = createDebeziumDecoder({
        stream: kafkaStream(kafka),
        targets,
        maxValueBytes: config.dead_letters.max_value_bytes,
        onConsumed,
        onDeadLetter: (d) => {
          metrics.errors.inc({ stage: "decode", code: d.code });
          // the error can quote the value: it stays in the dead-letter table, out of the logs
          log.warn("event cannot be decoded; dead-lettered", { topic: d.topic, partition: d.partition, offset: d.offset, code: d.code });
        },
      });
      return build(sql, createKafkaSource({ config: kafka, topics: targets.map((t) => t.mapping.topic!), checkpoints, fences, retry: policy, metrics, log }), decoder);
    }
    const decoder = createPgChangeDecoder({
      sources: pgSourceInfo(config),
      targets,
      onConsumed,
    });
    for (const t of targets) metrics.eventsConsumed.init({ topic: `${t.mapping.source}.${t.mapping.source_table}` });
    return build(sql, createPgSource({ config, targets, checkpoints, loader: createBulkLoader(sql, config.postgres.state_schema, { log, metrics, maxValueBytes: config.dead_letters.max_value_bytes, maxBatchBytes: config.batch.max_bytes }), metrics, log }), decoder);
  }

  return {
    metrics,
    get port() {
      return port;
    },
    readiness,
    stop() {
      if (stopping.signal.aborted) return;
      stopping.abort();
      pipeline?.stop();
    },
    async run(): Promise<number> {
      let http: Awaited<ReturnType<typeof serve>> | undefined;
      try {
        if (config.http.enabled) http = await serve(createHttpApp({ metrics: () => metrics.registry.render(), liveness, readiness }), config.http.listen);
      } catch (e) {
        log.error(`http.listen ${config.http.listen}: cannot listen`, errorInfo(e));
        return EXIT.CONFIG;
      }
      const sql = openAnalytics(config.postgres);
      database.watch(sql);
      let verifying: Promise<void> | undefined;
      let stopPending: (() => void) | undefined;
      port = http?.port ?? 0;
      if (http) log.info("http listening", { listen: config.http.listen, port });
      try {
        let targets: Target[];
        try {
          targets = await prepare(sql);
        } catch (e) {
          if (e instanceof Stopped) return EXIT.OK;
          if (e instanceof SchemaError) {
            log.error("analytics schema does not fit the mappings", { problems: e.problems });
            return EXIT.CONFIG;
          }
          throw e;
        }
        pipeline = wire(targets, sql);
        stopPending = startPendingGauge({ sql, stateSchema: config.postgres.state_schema, metrics, log, tables: targets.map((t) => t.table.name) });
        verifying = startVerifyLoop(config, { metrics, log, signal: stopping.signal });
        if (stopping.signal.aborted) pipeline.stop();
        try {
          await pipeline.run();
        } catch (e) {
          if (e instanceof Stopped) return EXIT.OK;
          log.error("pipeline failed", { ...errorInfo(e), stack: (e as Error).stack });
          return EXIT.FAILURE;
        }
        log.info("stopped cleanly");
        return EXIT.OK;
      } finally {
        await verifying;
        stopPending?.();
        database.close();
        await http?.close();
        await sql.end({ timeout: 5 });
      }
    },
  };
}
