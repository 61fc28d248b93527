// A small Prometheus registry: counters, gauges and histograms with bounded label sets.
type Labels = Record<string, string | number>;

const esc = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
const labelKey = (names: readonly string[], l: Labels) => names.map((n) => String(l[n] ?? "")).join("\u0000");
const render = (names: readonly string[], values: string[], extra?: [string, string]) => {
  const parts = names.map((n, i) => `${n}="${esc(values[i]!)}"`);
  if (extra) parts.push(`${extra[0]}="${extra[1]}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
};
const fmt = (v: number) => (Number.isFinite(v) ? String(v) : v > 0 ? "+Inf" : v < 0 ? "-Inf" : "NaN");

interface Metric {
  name: string;
  render(): string;
}

abstract class Base<L extends string> implements Metric {
  protected series = new Map<string, { values: string[]; v: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly L[],
    readonly type: string,
  ) {}
  protected get(l: Partial<Record<L, string | number>>) {
    const k = labelKey(this.labelNames, l as Labels);
    let s = this.series.get(k);
    if (!s) {
      s = { values: this.labelNames.map((n) => String((l as Labels)[n] ?? "")), v: 0 };
      this.series.set(k, s);
    }
    return s;
  }
  /** Makes a series exist (at 0) before anything happened, so dashboards see it from start. */
  init(l: Partial<Record<L, string | number>> = {}): this {
    this.get(l);
    return this;
  }
  value(l: Partial<Record<L, string | number>> = {}): number {
    return this.series.get(labelKey(this.labelNames, l as Labels))?.v ?? 0;
  }
  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} ${this.type}\n`;
    for (const s of this.series.values()) out += `${this.name}${render(this.labelNames, s.values)} ${fmt(s.v)}\n`;
    return out;
  }
}

export class Counter<L extends string = never> extends Base<L> {
  constructor(name: string, help: string, labelNames: readonly L[] = []) {
    super(name, help, labelNames, "counter");
  }
  inc(l: Partial<Record<L, string | number>> = {}, by = 1): void {
    this.get(l).v += by;
  }
}

export class Gauge<L extends string = never> extends Base<L> {
  constructor(name: string, help: string, labelNames: readonly L[] = []) {
    super(name, help, labelNames, "gauge");
  }
  set(l: Partial<Record<L, string | number>>, v: number): void {
    this.get(l).v = v;
  }
  remove(l: Partial<Record<L, string | number>>): void {
    this.series.delete(labelKey(this.labelNames, l as Labels));
  }
}

export class Histogram<L extends string = never> implements Metric {
  #series = new Map<string, { values: string[]; counts: number[]; sum: number; count: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
    readonly labelNames: readonly L[] = [],
  ) {}
  #get(l: Partial<Record<L, string | number>>) {
    // observed per event: skip building a label key when there are no labels
    const k = this.labelNames.length ? labelKey(this.labelNames, l as Labels) : "";
    let s = this.#series.get(k);
    if (!s) {
      s = { values: this.labelNames.map((n) => String((l as Labels)[n] ?? "")), counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.#series.set(k, s);
    }
    return s;
  }
  init(l: Partial<Record<L, string | number>> = {}): this {
    this.#get(l);
    return this;
  }
  observe(l: Partial<Record<L, string | number>>, v: number, times = 1): void {
    const s = this.#get(l);
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]!) s.counts[i]! += times;
    s.sum += v * times;
    s.count += times;
  }
  count(l: Partial<Record<L, string | number>> = {}): number {
    return this.#series.get(labelKey(this.labelNames, l as Labels))?.count ?? 0;
  }
  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} histogram\n`;
    for (const s of this.#series.values()) {
      this.buckets.forEach((b, i) => (out += `${this.name}_bucket${render(this.labelNames, s.values, ["le", fmt(b)])} ${s.counts[i]}\n`));
      out += `${this.name}_bucket${render(this.labelNames, s.values, ["le", "+Inf"])} ${s.count}\n`;
      out += `${this.name}_sum${render(this.labelNames, s.values)} ${fmt(s.sum)}\n`;
      out += `${this.name}_count${render(this.labelNames, s.values)} ${s.count}\n`;
    }
    return out;
  }
}

export class Registry {
  #metrics: Metric[] = [];
  #collectors: Array<() => void> = [];
  register<M extends Metric>(m: M): M {
    this.#metrics.push(m);
    return m;
  }
  /** Runs before each scrape (refreshes gauges computed on demand). */
  onCollect(fn: () => void): void {
    this.#collectors.push(fn);
  }
  render(): string {
    for (const c of this.#collectors) c();
    return this.#metrics.map((m) => m.render()).join("");
  }
}

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const SIZE_BUCKETS = [1, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 50000];

/** Every metric cdc-sink exports; README's operating section lists them. */
export function createMetrics() {
  const r = new Registry();
  const m = {
    registry: r,
    eventsConsumed: r.register(new Counter("cdc_sink_events_consumed_total", "Source records read, per topic (Kafka) or slot (PostgreSQL).", ["topic"])),
    rowsApplied: r.register(new Counter("cdc_sink_rows_applied_total", "Row changes committed to the analytics database, per table and op.", ["table", "op"])),
    rowsSkipped: r.register(new Counter("cdc_sink_rows_skipped_total", "Changes not applied because the stored row is newer (stale or replayed).", ["table"])),
    deadLetters: r.register(new Counter("cdc_sink_dead_letters_total", "Events written to the dead-letter table, per table and reason.", ["table", "reason"])),
    truncatesIgnored: r.register(new Counter("cdc_sink_truncates_ignored_total", "Truncate events not applied because the mapping's truncate policy is ignore.", ["table"])),
    batches: r.register(new Counter("cdc_sink_batches_total", "Batches committed.")),
    batchSize: r.register(new Histogram("cdc_sink_batch_size_events", "Events per committed batch.", SIZE_BUCKETS)),
    applyDuration: r.register(new Histogram("cdc_sink_apply_duration_seconds", "Time to apply and commit one batch.", LATENCY_BUCKETS)),
    endToEndLag: r.register(new Histogram("cdc_sink_end_to_end_lag_seconds", "Analytics commit time minus source commit time, per event.", LATENCY_BUCKETS)),
    consumerLag: r.register(new Gauge("cdc_sink_consumer_lag_messages", "Kafka consumer lag per partition (librdkafka statistics).", ["topic", "partition"])),
    snapshotRows: r.register(new Counter("cdc_sink_snapshot_rows_total", "Rows copied by the initial snapshot (PostgreSQL source), per table.", ["table"])),
    snapshotRowsEstimated: r.register(new Gauge("cdc_sink_snapshot_rows_estimated", "The source's row estimate of a table whose snapshot is being copied.", ["table"])),
    standby: r.register(new Gauge("cdc_sink_standby", "1 while this instance waits for a replication slot another instance streams from.", ["slot"])),
    walRetained: r.register(new Gauge("cdc_sink_replication_slot_retained_wal_bytes", "WAL retained by the replication slot.", ["slot"])),
    lastCheckpoint: r.register(new Gauge("cdc_sink_last_checkpoint_timestamp_seconds", "Unix time of the last committed checkpoint.")),
    errors: r.register(new Counter("cdc_sink_errors_total", "Errors by pipeline stage and code.", ["stage", "code"])),
    retries: r.register(new Counter("cdc_sink_retries_total", "Retried operations by stage.", ["stage"])),
    up: r.register(new Gauge("cdc_sink_source_connected", "1 when the source is connected (partitions assigned or slot streaming).")),
    dbUp: r.register(new Gauge("cdc_sink_database_up", "1 when the analytics database answered the last statement.")),
    dependencyDown: r.register(new Gauge("cdc_sink_dependency_down", "1 while a dependency (analytics, kafka, source) fails, with the cause: authentication, authorization, unreachable, timeout, error.", ["dependency", "cause"])),
    schemaChanges: r.register(new Counter("cdc_sink_schema_changes_total", "Source schema changes met, per analytics table and what was done: added, widened, accepted, ignored, refused (the mapping stopped).", ["table", "action"])),
    mappingStopped: r.register(new Gauge("cdc_sink_mapping_stopped", "1 while a mapping is stopped by a schema change it cannot apply: its events wait, its source position does not advance.", ["table"])),
    deadLettersPending: r.register(new Gauge("cdc_sink_dead_letters_pending", "Dead letters not yet retried or discarded (cdc-sink dlq), per analytics table.", ["table"])),
  };
  m.batches.init();
  m.batchSize.init();
  m.applyDuration.init();
  m.endToEndLag.init();
  m.lastCheckpoint.init();
  m.up.init();
  m.dbUp.init();
  for (const stage of ["source", "decode", "apply", "checkpoint"]) m.retries.init({ stage });
  registerProcessMetrics(r);
  return m;
}
export type Metrics = ReturnType<typeof createMetrics>;

function registerProcessMetrics(r: Registry): void {
  const cpu = r.register(new Counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds."));
  const rss = r.register(new Gauge("process_resident_memory_bytes", "Resident memory size in bytes."));
  const heap = r.register(new Gauge("process_heap_bytes", "Process heap size in bytes."));
  const start = r.register(new Gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds."));
  const fds = r.register(new Gauge("process_open_fds", "Number of open file descriptors."));
  start.set({}, Math.round(Date.now() / 1000 - process.uptime()));
  let lastCpu = 0;
  r.onCollect(() => {
    const u = process.cpuUsage();
    const total = (u.user + u.system) / 1e6;
    cpu.inc({}, total - lastCpu);
    lastCpu = total;
    const mem = process.memoryUsage();
    rss.set({}, mem.rss);
    heap.set({}, mem.heapUsed);
    try {
      fds.set({}, require("node:fs").readdirSync("/proc/self/fd").length);
    } catch {
      /* not Linux */
    }
  });
}
