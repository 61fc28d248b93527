// deploy/ and docker-compose.yml checked against the code they deploy: probe paths and ports the
// daemon serves, metric names it exports, config keys and CDC_SINK_* variables it accepts, the
// shutdown budget, the container's security settings, the alert rules (promtool check and unit
// tests), the dashboard's queries, and the compose stack's wiring (connectors, secrets, databases).
// Nothing here needs a network or a Docker engine; promtool comes from Debian's prometheus package
// (scripts/setup.sh installs it) and the analytics grants are tried on a throwaway PostgreSQL.
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import postgres from "postgres";
import { parse as parseToml } from "smol-toml";
import { environmentKeys, parseConfig, type Config } from "../src/config.ts";
import { createHttpApp } from "../src/http.ts";
import { createMetrics } from "../src/metrics.ts";
import { ensureStateTables } from "../src/sink/state.ts";
import { loadTargets } from "../src/sink/targets.ts";
import { tempDir } from "./support/cleanup.ts";
import { ROOT } from "./support/harness.ts";
import { sharedCluster } from "./support/pg.ts";

type Obj = Record<string, any>;
const read = (p: string) => readFileSync(join(ROOT, p), "utf8");
const yaml = (p: string): Obj => Bun.YAML.parse(read(p)) as Obj;

// --- what the code provides ----------------------------------------------------------------------

/** The paths the daemon's HTTP app routes (the 404 handler answers anything else). */
const app = createHttpApp({ metrics: () => "", liveness: () => null, readiness: () => [] });
const served = async (path: string) => (await app.request(path)).status !== 404;
const httpSource = read("src/http.ts");
const ROUTES = [...httpSource.matchAll(/app\.get\("([^"]+)"/g)].map((m) => m[1]!);

/** The daemon's shutdown budget (src/main.ts), in seconds. */
const SHUTDOWN_BUDGET_S = Number(/SHUTDOWN_BUDGET_MS = ([\d_]+)/.exec(read("src/main.ts"))![1]!.replace(/_/g, "")) / 1000;

/** Every metric the daemon exports, sample names included (histogram _bucket/_sum/_count), with its labels. */
function exportedMetrics(): Map<string, string[]> {
  const m = createMetrics() as Obj;
  const labels = new Map<string, string[]>();
  for (const v of Object.values(m)) if (v && typeof v === "object" && typeof v.name === "string") labels.set(v.name, [...(v.labelNames ?? [])]);
  const out = new Map<string, string[]>();
  for (const [, name, type] of m.registry.render().matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const l = labels.get(name) ?? [];
    out.set(name, l);
    if (type === "histogram") {
      out.set(`${name}_bucket`, [...l, "le"]);
      out.set(`${name}_sum`, l);
      out.set(`${name}_count`, l);
    }
  }
  return out;
}
const EXPORTED = exportedMetrics();

// Names the alerts and the dashboard may use that the daemon does not export, each with its labels.
// The verify feature (`cdc-sink verify`) is being added: until it lands these two are not in the
// registry. Exactly these two may be missing; any other unknown name fails the test.
const PENDING_VERIFY: Record<string, string[]> = {
  cdc_sink_verify_rows_different: ["table"],
  cdc_sink_verify_last_run_timestamp_seconds: [],
};
// Not the daemon's: Prometheus' own scrape health, and kube-state-metrics' pod readiness.
const EXTERNAL: Record<string, string[]> = {
  up: [],
  kube_pod_status_ready: ["namespace", "pod", "condition", "uid"],
};
// labels Prometheus adds to every scraped series (the PodMonitor adds namespace, pod and container)
const TARGET_LABELS = ["instance", "job", "namespace", "pod", "container", "service", "endpoint"];

function labelsOf(name: string): string[] | undefined {
  return EXPORTED.get(name) ?? PENDING_VERIFY[name] ?? EXTERNAL[name];
}

// --- a small PromQL reader: the metric names and label names an expression uses -----------------

const PROMQL_WORDS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset", "inf", "nan"]);

function promqlNames(expr: string): { metrics: string[]; labels: string[] } {
  const labels: string[] = [];
  let e = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  // label matchers: {name op "value", ...}
  e = e.replace(/\{([^}]*)\}/g, (_, inner: string) => {
    for (const m of inner.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)) labels.push(m[1]!);
    return "";
  });
  // label lists of aggregations and vector matching
  e = e.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g, (_, _kw, list: string) => {
    labels.push(...list.split(",").map((s) => s.trim()).filter(Boolean));
    return " ";
  });
  e = e.replace(/\[[^\]]*\]/g, "").replace(/\boffset\s+\S+/g, " ");
  const metrics: string[] = [];
  for (const m of e.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const name = m[0];
    const before = e[m.index! - 1] ?? " ";
    if (/[0-9.]/.test(before)) continue; // 1e3, 2.5e-1
    if (e.slice(m.index! + name.length).trimStart().startsWith("(")) continue; // a function or an aggregation
    if (PROMQL_WORDS.has(name.toLowerCase())) continue;
    metrics.push(name);
  }
  return { metrics, labels };
}

/** Problems with the names an expression uses: unknown metrics, labels no metric of it carries. */
function nameProblems(where: string, expr: string): string[] {
  const { metrics, labels } = promqlNames(expr);
  const out: string[] = [];
  if (!metrics.length) out.push(`${where}: no metric in ${expr}`);
  const known = new Set(TARGET_LABELS);
  for (const m of metrics) {
    const l = labelsOf(m);
    if (!l) out.push(`${where}: ${m} is not exported by cdc-sink (${expr})`);
    else l.forEach((x) => known.add(x));
  }
  for (const l of labels) if (!known.has(l)) out.push(`${where}: label ${l} is on none of ${metrics.join(", ")}`);
  return out;
}

test("the PromQL reader finds metric and label names", () => {
  expect(promqlNames('sum by (topic) (rate(cdc_sink_events_consumed_total{job=~"$job"}[$__rate_interval])) > 1e3')).toEqual({
    metrics: ["cdc_sink_events_consumed_total"],
    labels: ["job", "topic"],
  });
  expect(promqlNames("a == 0 unless on (instance) (max by (instance) (b offset 15m) == 1) and time() - c > 26 * 3600").metrics).toEqual(["a", "b", "c"]);
  expect(nameProblems("x", "sum by (tabel) (cdc_sink_rows_applied_total)")).toEqual(["x: label tabel is on none of cdc_sink_rows_applied_total"]);
  expect(nameProblems("x", "cdc_sink_no_such_metric")).toHaveLength(1);
});

// --- promtool ----------------------------------------------------------------------------------------

function promtool(args: string[]): { code: number; out: string } {
  const r = spawnSync("promtool", args, { encoding: "utf8" });
  if (r.error) throw new Error(`promtool not found (${r.error.message}): scripts/setup.sh installs Debian's prometheus package`);
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

// --- Kubernetes ----------------------------------------------------------------------------------------

const K8S = "deploy/kubernetes";
const kustomization = yaml(`${K8S}/kustomization.yaml`);
const resources: Obj[] = (kustomization.resources as string[]).map((f) => yaml(`${K8S}/${f}`));
const ofKind = (kind: string) => resources.filter((r) => r.kind === kind);
const deployment = ofKind("Deployment")[0]!;
const pod = deployment?.spec.template.spec as Obj;
const container = pod?.containers.find((c: Obj) => c.name === "cdc-sink") as Obj;
const generated = (kustomization.configMapGenerator as Obj[]).find((g) => g.name === "cdc-sink-config")!;
const k8sToml = read(`${K8S}/${generated.files[0]}`);

const QUANTITY: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, k: 1e3, M: 1e6, G: 1e9, "": 1 };
const bytes = (q: string) => {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|k|M|G|)$/.exec(String(q));
  if (!m) throw new Error(`quantity ${q}`);
  return Number(m[1]) * QUANTITY[m[2]!]!;
};

/** A pod-spec env list as a map; valueFrom entries get a value like the one Kubernetes would give. */
const envOf = (c: Obj): Record<string, string> =>
  Object.fromEntries((c.env ?? []).map((e: Obj) => [e.name, e.value ?? (e.valueFrom?.fieldRef ? "cdc-sink-6d4cf56db6-x7k2p" : "from-a-reference")]));

describe("Kubernetes manifests", () => {
  test("the kustomization's files exist; one Deployment, Service, Secret, ServiceAccount, PodMonitor and PrometheusRule", () => {
    for (const f of [...kustomization.resources, ...generated.files]) expect(existsSync(join(ROOT, K8S, f))).toBe(true);
    for (const kind of ["Deployment", "Service", "Secret", "ServiceAccount", "PodMonitor", "PrometheusRule", "Namespace"]) expect(ofKind(kind)).toHaveLength(1);
    expect(kustomization.images.map((i: Obj) => i.name)).toContain(container.image);
    for (const [k, v] of Object.entries(deployment.spec.selector.matchLabels)) expect(deployment.spec.template.metadata.labels[k]).toBe(v);
  });

  test("the ConfigMap's sink.toml validates, with the Deployment's environment", () => {
    const r = parseConfig(k8sToml, { readFiles: false, env: envOf(container) });
    if (!r.ok) throw new Error(r.issues.map((i) => `${i.key}: ${i.message}`).join("\n"));
    expect(r.config.kafka!.properties["client.id"]).toBe("cdc-sink-6d4cf56db6-x7k2p");
    // mounted where the image's CMD and the container's args read it
    const mount = container.volumeMounts.find((m: Obj) => m.name === pod.volumes.find((v: Obj) => v.configMap?.name === generated.name).name);
    expect(`${mount.mountPath}/${generated.files[0]}`).toBe("/etc/cdc-sink/sink.toml");
    expect(container.args.join(" ")).toContain("--config /etc/cdc-sink/sink.toml");
    expect(read("Dockerfile")).toContain('"--config", "/etc/cdc-sink/sink.toml"');
  });

  test("probes use paths the daemon serves, on the port it listens on", async () => {
    expect(ROUTES.sort()).toEqual(["/healthz", "/metrics", "/readyz"]);
    const port = container.ports.find((p: Obj) => p.name === "http");
    expect(port.containerPort).toBe(8080);
    // the daemon's default and the ConfigMap's listen address
    const defaults = parseConfig('[postgres]\nhost = "h"\n[kafka]\nbootstrap_servers = "b:9092"\n[[mappings]]\ntopic = "t"\ntable = "t"\n', { readFiles: false });
    if (!defaults.ok) throw new Error(JSON.stringify(defaults.issues));
    expect(defaults.config.http.listen).toBe("0.0.0.0:8080");
    const cfg = parseConfig(k8sToml, { readFiles: false }) as { ok: true; config: Config };
    expect(cfg.config.http.listen.endsWith(`:${port.containerPort}`)).toBe(true);
    expect(cfg.config.http.enabled).toBe(true);
    expect(read("Dockerfile")).toMatch(/^EXPOSE 8080$/m);
    const probes = { startupProbe: "/healthz", livenessProbe: "/healthz", readinessProbe: "/readyz" };
    for (const [probe, path] of Object.entries(probes)) {
      const p = container[probe].httpGet;
      expect(p.path).toBe(path);
      expect(ROUTES).toContain(p.path);
      expect(await served(p.path)).toBe(true);
      expect([port.name, port.containerPort]).toContain(p.port);
    }
    const service = ofKind("Service")[0]!;
    expect([port.name, port.containerPort]).toContain(service.spec.ports[0].targetPort);
    expect(service.spec.selector).toEqual(deployment.spec.selector.matchLabels);
    const monitor = ofKind("PodMonitor")[0]!;
    expect(monitor.spec.selector.matchLabels).toEqual(deployment.spec.selector.matchLabels);
    for (const ep of monitor.spec.podMetricsEndpoints) {
      expect(ep.port).toBe(port.name);
      expect(ep.path).toBe("/metrics");
      expect(await served(ep.path)).toBe(true);
    }
  });

  test("the grace period exceeds the daemon's shutdown budget", () => {
    expect(SHUTDOWN_BUDGET_S).toBe(25);
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(SHUTDOWN_BUDGET_S);
  });

  test("the rollout replaces one pod at a time, old first: no surplus pod that may never become ready", () => {
    // a surplus Kafka member can get no partition, a surplus PostgreSQL instance waits as a standby
    expect(deployment.spec.replicas).toBe(1);
    expect(deployment.spec.strategy.rollingUpdate).toEqual({ maxSurge: 0, maxUnavailable: 1 });
    // and partitions of single-partition topics are spread over the replicas
    const cfg = parseConfig(k8sToml, { readFiles: false }) as { ok: true; config: Config };
    expect(String(cfg.config.kafka!.properties["partition.assignment.strategy"]).split(",")[0]).toBe("roundrobin");
  });

  test("non-root uid 65532, read-only root filesystem, /tmp writable for the extracted addon", () => {
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(pod.securityContext.runAsUser).toBe(65532);
    expect(read("Dockerfile")).toMatch(/^USER 65532:65532$/m);
    const sc = container.securityContext;
    expect(sc.readOnlyRootFilesystem).toBe(true);
    expect(sc.allowPrivilegeEscalation).toBe(false);
    expect(sc.capabilities.drop).toEqual(["ALL"]);
    expect(sc.runAsUser ?? pod.securityContext.runAsUser).not.toBe(0);
    const tmp = container.volumeMounts.find((m: Obj) => m.mountPath === "/tmp");
    expect(tmp.readOnly ?? false).toBe(false);
    const volume = pod.volumes.find((v: Obj) => v.name === tmp.name);
    expect(volume.emptyDir).toBeDefined();
    // the binary extracts the addon to $TMPDIR
    expect(envOf(container).TMPDIR ?? "/tmp").toBe("/tmp");
    expect(read("Dockerfile")).toMatch(/^ENV TMPDIR=\/tmp$/m);
  });

  test("resources: the memory request covers the 512 MiB bound, the limit leaves headroom", () => {
    const { requests, limits } = container.resources;
    expect(bytes(requests.memory)).toBeGreaterThanOrEqual(512 * 2 ** 20);
    expect(bytes(limits.memory)).toBeGreaterThan(bytes(requests.memory));
    expect(requests.cpu).toBeDefined();
  });

  test("every secret file sink.toml reads comes from a mounted Secret key", () => {
    const secret = ofKind("Secret")[0]!;
    const keys = new Set(Object.keys({ ...secret.data, ...secret.stringData }));
    const files: string[] = [];
    const walk = (o: unknown): void => {
      if (Array.isArray(o)) return o.forEach(walk);
      if (!o || typeof o !== "object") return;
      for (const [k, v] of Object.entries(o)) {
        if (k.endsWith("_file") && typeof v === "string") files.push(v);
        else if (k === "properties_files") files.push(...Object.values(v as Obj).map(String));
        else walk(v);
      }
    };
    walk(parseToml(k8sToml));
    expect(files.sort()).toEqual(["/mnt/analytics-credentials/password", "/mnt/kafka-credentials/password"]);
    for (const f of files) {
      const mount = container.volumeMounts.find((m: Obj) => dirname(f) === m.mountPath);
      expect(mount).toBeDefined();
      expect(mount.readOnly).toBe(true);
      const volume = pod.volumes.find((v: Obj) => v.name === mount.name);
      expect(volume.secret.secretName).toBe(secret.metadata.name);
      const item = volume.secret.items.find((i: Obj) => i.path === f.slice(dirname(f).length + 1));
      expect(keys.has(item.key)).toBe(true);
    }
    // no secret in the ConfigMap or the environment
    expect(k8sToml).not.toMatch(/^\s*password\s*=/m);
    for (const name of Object.keys(envOf(container))) expect(name).not.toMatch(/PASSWORD(?!_FILE)/);
  });

  test("the PrometheusRule carries exactly the groups of deploy/prometheus/alerts.yml", () => {
    expect(ofKind("PrometheusRule")[0]!.spec.groups).toEqual(yaml("deploy/prometheus/alerts.yml").groups);
  });
});

// --- CDC_SINK_* variables ------------------------------------------------------------------------

const compose = yaml("docker-compose.yml");
const services = compose.services as Record<string, Obj>;
/** compose's ${VAR:-default} as the default */
const interpolate = (v: unknown) => String(v).replace(/\$\{[A-Z0-9_]+:-([^}]*)\}/g, "$1");

test("every CDC_SINK_* variable the manifests and the compose file set names a config key", () => {
  const patterns = environmentKeys().map(
    ([, env]) => new RegExp(`^${env.replace(/_N(?=_|$)/g, "_\\d+").replace("<PROPERTY>", "[A-Z0-9_]+")}(_FILE)?$`),
  );
  const sets: Array<{ where: string; env: Record<string, string>; toml: string }> = [
    { where: "deployment.yaml", env: envOf(container), toml: k8sToml },
    ...Object.entries(services)
      .filter(([, s]) => s.environment)
      .map(([name, s]) => ({ where: `docker-compose.yml ${name}`, env: Object.fromEntries(Object.entries(s.environment).map(([k, v]) => [k, interpolate(v)])), toml: read("sink.toml") })),
  ];
  let seen = 0;
  for (const { where, env, toml } of sets) {
    const ours = Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith("CDC_SINK_")));
    for (const name of Object.keys(ours)) {
      seen++;
      expect({ where, name, known: patterns.some((p) => p.test(name)) }).toEqual({ where, name, known: true });
    }
    // and the daemon takes them with that config
    const r = parseConfig(toml, { readFiles: false, env: ours });
    expect(r.ok ? [] : r.issues.map((i) => `${where}: ${i.key}: ${i.message}`)).toEqual([]);
  }
  expect(seen).toBeGreaterThan(0);
});

// --- Prometheus alerts -------------------------------------------------------------------------

const ALERTS = "deploy/prometheus/alerts.yml";
const alertRules = (yaml(ALERTS).groups as Obj[]).flatMap((g) => g.rules as Obj[]);

describe("alert rules", () => {
  test("promtool check rules passes", () => {
    const r = promtool(["check", "rules", join(ROOT, ALERTS)]);
    expect(r.out).toContain("SUCCESS");
    expect(r.code).toBe(0);
  });

  test("each alert has a severity, a summary, a description and a for:", () => {
    expect(alertRules.length).toBeGreaterThanOrEqual(10);
    for (const r of alertRules) {
      expect({ alert: r.alert, for: typeof r.for }).toEqual({ alert: r.alert, for: "string" });
      expect(["critical", "warning", "info"]).toContain(r.labels?.severity);
      expect(r.annotations?.summary?.length).toBeGreaterThan(10);
      expect(r.annotations?.description?.length).toBeGreaterThan(30);
    }
  });

  test("the alerts cover lag, dead letters, WAL, readiness and verify, by the metrics named", () => {
    const exprs = alertRules.map((r) => r.expr as string).join("\n");
    for (const m of [
      "cdc_sink_consumer_lag_messages",
      "cdc_sink_end_to_end_lag_seconds_bucket",
      "cdc_sink_dead_letters_total",
      "cdc_sink_replication_slot_retained_wal_bytes",
      "cdc_sink_dependency_down",
      "cdc_sink_source_connected",
      "kube_pod_status_ready",
      "up",
      "cdc_sink_verify_rows_different",
      "cdc_sink_verify_last_run_timestamp_seconds",
    ])
      expect(promqlNames(exprs).metrics).toContain(m);
  });

  test("every metric and label an alert uses exists (only the verify metrics may be pending)", () => {
    expect(alertRules.flatMap((r) => nameProblems(r.alert, r.expr))).toEqual([]);
    for (const name of Object.keys(PENDING_VERIFY)) expect(name in EXTERNAL).toBe(false);
  });

  // promtool's unit tests, on the shipped expressions, for: and labels (annotations are left out
  // of the copy under test: promtool compares them whole; `check rules` above parses them)
  test("the alerts fire when they should, and not otherwise (promtool test rules)", () => {
    const dir = tempDir("cdc-sink-alerts-");
    const groups = (yaml(ALERTS).groups as Obj[]).map((g) => ({ ...g, rules: g.rules.map(({ annotations: _, ...r }: Obj) => r) }));
    writeFileSync(join(dir, "rules.yml"), JSON.stringify({ groups }));
    const i = 'instance="10.0.0.1:8080", job="cdc-sink/cdc-sink"';
    const alert = (alertname: string, eval_time: string, ...exp: Obj[]) => ({ eval_time, alertname, exp_alerts: exp.map((l) => ({ exp_labels: l })) });
    const tests = [
      {
        // the first dead letter of a (table, reason) creates its series: still an alert; it clears after 15 minutes
        interval: "1m",
        input_series: [{ series: `cdc_sink_dead_letters_total{${i}, table="fact_orders", reason="DECODE"}`, values: "_x10 1x40" }],
        alert_rule_test: [
          alert("CdcSinkDeadLetters", "9m"),
          alert("CdcSinkDeadLetters", "13m", { severity: "warning", table: "fact_orders", reason: "DECODE" }),
          alert("CdcSinkDeadLetters", "40m"),
        ],
      },
      {
        interval: "1m",
        input_series: [{ series: `cdc_sink_dead_letters_total{${i}, table="dim_books", reason="23502"}`, values: "0x10 0+2x20" }],
        alert_rule_test: [alert("CdcSinkDeadLetters", "8m"), alert("CdcSinkDeadLetters", "20m", { severity: "warning", table: "dim_books", reason: "23502" })],
      },
      {
        // a mapping stopped by a schema change, on one of two instances: one alert per table
        interval: "1m",
        input_series: [
          { series: `cdc_sink_mapping_stopped{${i}, table="fact_orders"}`, values: "0x3 1x10" },
          { series: 'cdc_sink_mapping_stopped{instance="10.0.0.2:8080", job="cdc-sink/cdc-sink", table="fact_orders"}', values: "0x14" },
          { series: `cdc_sink_mapping_stopped{${i}, table="dim_books"}`, values: "0x14" },
        ],
        alert_rule_test: [alert("CdcSinkMappingStopped", "3m"), alert("CdcSinkMappingStopped", "6m", { severity: "critical", table: "fact_orders" })],
      },
      {
        // a PostgreSQL-mode standby is not ready by design
        interval: "1m",
        input_series: [
          { series: 'kube_pod_status_ready{namespace="cdc", pod="cdc-sink-a", condition="true"}', values: "0x20" },
          { series: 'kube_pod_status_ready{namespace="cdc", pod="cdc-sink-b", condition="true"}', values: "0x20" },
          { series: 'kube_pod_status_ready{namespace="cdc", pod="cdc-sink-c", condition="true"}', values: "1x20" },
          { series: `cdc_sink_standby{${i}, namespace="cdc", pod="cdc-sink-a", slot="cdc_sink_ecom"}`, values: "1x20" },
        ],
        alert_rule_test: [alert("CdcSinkPodNotReady", "4m"), alert("CdcSinkPodNotReady", "10m", { severity: "warning", namespace: "cdc", pod: "cdc-sink-b" })],
      },
      {
        interval: "1m",
        input_series: [
          { series: `cdc_sink_dependency_down{${i}, dependency="analytics", cause="authentication"}`, values: "1x10" },
          { series: `cdc_sink_source_connected{${i}}`, values: "0x10" },
          { series: 'cdc_sink_source_connected{instance="10.0.0.2:8080", job="cdc-sink/cdc-sink"}', values: "0x10" },
          { series: 'cdc_sink_standby{instance="10.0.0.2:8080", job="cdc-sink/cdc-sink", slot="s"}', values: "1x10" },
          { series: 'cdc_sink_source_connected{instance="10.0.0.3:8080", job="cdc-sink/cdc-sink"}', values: "1x10" },
        ],
        alert_rule_test: [
          alert("CdcSinkDependencyDown", "1m"),
          alert("CdcSinkDependencyDown", "3m", { severity: "critical", instance: "10.0.0.1:8080", dependency: "analytics", cause: "authentication" }),
          alert("CdcSinkSourceDisconnected", "6m", { severity: "warning", instance: "10.0.0.1:8080" }),
        ],
      },
      {
        // lag that does not move while nothing is consumed: stalled; small, so not "high"
        interval: "1m",
        input_series: [
          { series: `cdc_sink_consumer_lag_messages{${i}, topic="ecom-connector.public.orders", partition="0"}`, values: "50x30" },
          { series: `cdc_sink_events_consumed_total{${i}, topic="ecom-connector.public.orders"}`, values: "100x30" },
          { series: `cdc_sink_consumer_lag_messages{${i}, topic="ecom-connector.public.books", partition="0"}`, values: "200000x30" },
          { series: `cdc_sink_events_consumed_total{${i}, topic="ecom-connector.public.books"}`, values: "0+1000x30" },
        ],
        alert_rule_test: [
          alert("CdcSinkConsumerStalled", "25m", { severity: "critical", topic: "ecom-connector.public.orders" }),
          alert("CdcSinkConsumerLagHigh", "25m", { severity: "warning", topic: "ecom-connector.public.books" }),
        ],
      },
      {
        // every event between 30 and 60 s behind; then a second histogram series all under 10 s
        interval: "1m",
        input_series: [
          { series: `cdc_sink_end_to_end_lag_seconds_bucket{${i}, le="10"}`, values: "0x30" },
          { series: `cdc_sink_end_to_end_lag_seconds_bucket{${i}, le="30"}`, values: "0x30" },
          { series: `cdc_sink_end_to_end_lag_seconds_bucket{${i}, le="60"}`, values: "0+100x30" },
          { series: `cdc_sink_end_to_end_lag_seconds_bucket{${i}, le="+Inf"}`, values: "0+100x30" },
        ],
        alert_rule_test: [alert("CdcSinkEndToEndLagHigh", "8m"), alert("CdcSinkEndToEndLagHigh", "20m", { severity: "warning" })],
      },
      {
        interval: "1m",
        input_series: [
          { series: `cdc_sink_end_to_end_lag_seconds_bucket{${i}, le="10"}`, values: "0+100x30" },
          { series: `cdc_sink_end_to_end_lag_seconds_bucket{${i}, le="30"}`, values: "0+100x30" },
          { series: `cdc_sink_end_to_end_lag_seconds_bucket{${i}, le="+Inf"}`, values: "0+100x30" },
        ],
        alert_rule_test: [alert("CdcSinkEndToEndLagHigh", "20m")],
      },
      {
        interval: "1m",
        input_series: [{ series: `cdc_sink_replication_slot_retained_wal_bytes{${i}, slot="cdc_sink_ecom"}`, values: "2147483648x30" }],
        alert_rule_test: [
          alert("CdcSinkReplicationSlotWalRetained", "20m", { severity: "warning", slot: "cdc_sink_ecom" }),
          alert("CdcSinkReplicationSlotWalRetainedCritical", "20m"),
        ],
      },
      {
        interval: "1m",
        input_series: [
          { series: `up{${i}}`, values: "0x10" },
          { series: `cdc_sink_verify_rows_different{${i}, table="fact_orders"}`, values: "3x30" },
          { series: `cdc_sink_verify_rows_different{${i}, table="dim_books"}`, values: "0x30" },
        ],
        alert_rule_test: [
          alert("CdcSinkTargetDown", "3m", { severity: "critical", instance: "10.0.0.1:8080", job: "cdc-sink/cdc-sink" }),
          alert("CdcSinkAbsent", "5m"),
          alert("CdcSinkVerifyRowsDifferent", "20m", { severity: "warning", table: "fact_orders" }),
        ],
      },
      {
        // no target at all
        interval: "1m",
        input_series: [{ series: 'up{job="node", instance="n"}', values: "1x20" }],
        alert_rule_test: [alert("CdcSinkAbsent", "12m", { severity: "critical" })],
      },
      {
        // verify ran once at t=60 s, then never again; a sink where verify never ran has no alert
        interval: "1m",
        input_series: [
          { series: `cdc_sink_verify_last_run_timestamp_seconds{${i}}`, values: "60x1800" },
          { series: 'cdc_sink_verify_last_run_timestamp_seconds{instance="10.0.0.2:8080", job="cdc-sink/cdc-sink"}', values: "0x1800" },
        ],
        alert_rule_test: [alert("CdcSinkVerifyNotRunning", "20h"), alert("CdcSinkVerifyNotRunning", "28h", { severity: "info", instance: "10.0.0.1:8080" })],
      },
    ];
    writeFileSync(join(dir, "tests.yml"), JSON.stringify({ rule_files: ["rules.yml"], evaluation_interval: "1m", tests }));
    const r = promtool(["test", "rules", join(dir, "tests.yml")]);
    expect(r.out).toContain("SUCCESS");
    expect(r.code).toBe(0);
    // every alert is exercised
    const tested = new Set(tests.flatMap((t) => t.alert_rule_test.map((a) => a.alertname)));
    expect(alertRules.map((r) => r.alert).filter((a) => !tested.has(a))).toEqual([]);
    // promtool evaluates every series over days of samples: several seconds on a loaded machine
  }, 60_000);
});

// --- Grafana dashboard -------------------------------------------------------------------------

describe("Grafana dashboard", () => {
  const dashboard = JSON.parse(read("deploy/grafana/cdc-sink.json")) as Obj;
  const panels = (dashboard.panels as Obj[]).filter((p) => p.type !== "row");
  const targets = panels.flatMap((p) => (p.targets ?? []).map((t: Obj) => ({ panel: p.title as string, id: p.id as number, refId: t.refId as string, expr: t.expr as string })));
  const variables = dashboard.templating.list as Obj[];

  test("panels have unique ids, a query each, and use the dashboard's data source variable", () => {
    expect(dashboard.uid).toBe("cdc-sink");
    const ids = (dashboard.panels as Obj[]).map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(variables.find((v) => v.type === "datasource")?.name).toBe("datasource");
    for (const p of panels) {
      expect({ panel: p.title, ds: p.datasource?.uid, targets: p.targets?.length > 0 }).toEqual({ panel: p.title, ds: "${datasource}", targets: true });
    }
  });

  test("the dashboard shows what the issue asks for", () => {
    const all = targets.map((t) => t.expr).join("\n");
    for (const m of [
      "cdc_sink_rows_applied_total",
      "cdc_sink_events_consumed_total",
      "cdc_sink_end_to_end_lag_seconds_bucket",
      "cdc_sink_consumer_lag_messages",
      "cdc_sink_batch_size_events_bucket",
      "cdc_sink_apply_duration_seconds_bucket",
      "cdc_sink_dead_letters_total",
      "cdc_sink_errors_total",
      "cdc_sink_retries_total",
      "cdc_sink_dependency_down",
      "cdc_sink_replication_slot_retained_wal_bytes",
      "process_resident_memory_bytes",
      "process_cpu_seconds_total",
    ])
      expect(promqlNames(all).metrics).toContain(m);
    expect(all).toContain("histogram_quantile(");
    expect(all).toContain("sum by (stage, code)");
  });

  test("every metric and label the dashboard uses exists (only the verify metrics may be pending)", () => {
    const problems = targets.flatMap((t) => nameProblems(`${t.panel} ${t.refId}`, t.expr));
    for (const v of variables.filter((v) => v.type === "query")) {
      const q = typeof v.query === "string" ? v.query : v.query.query;
      const m = /^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$/.exec(q);
      expect(m).not.toBeNull();
      problems.push(...nameProblems(`variable ${v.name}`, m![1]!));
      if (!TARGET_LABELS.includes(m![2]!)) problems.push(`variable ${v.name}: label ${m![2]}`);
    }
    expect(problems).toEqual([]);
  });

  test("every query parses (promtool, Grafana's variables filled in)", () => {
    const fill = (e: string) =>
      e
        .replace(/\$__rate_interval|\$__interval/g, "1m")
        .replace(/\$__range/g, "1h")
        .replace(/\$\{?[a-zA-Z_]+\}?/g, ".*");
    const dir = tempDir("cdc-sink-dashboard-");
    const rules = targets.map((t) => ({ record: `dashboard:panel_${t.id}_${t.refId}`, expr: fill(t.expr) }));
    writeFileSync(join(dir, "dashboard.yml"), JSON.stringify({ groups: [{ name: "dashboard", rules }] }));
    const r = promtool(["check", "rules", join(dir, "dashboard.yml")]);
    expect(r.out).toContain(`SUCCESS: ${rules.length} rules found`);
    expect(r.code).toBe(0);
  });
});

// --- docker-compose.yml -----------------------------------------------------------------------------

describe("docker-compose.yml", () => {
  const volumesOf = (s: Obj) => (s.volumes ?? []).map((v: string) => {
    const [host, target, mode] = v.split(":");
    return { host: host!, target: target!, ro: mode === "ro" };
  });
  const envOfService = (s: Obj) => Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, interpolate(v)]));
  const connectors = ["ecom-connector.json", "inventory-connector.json"].map((f) => JSON.parse(read(`connectors/${f}`)) as Obj);
  const pom = read("stack/pom.xml");
  const repoToml = parseConfig(read("sink.toml"), { readFiles: false });

  test("the services of the whole stack", () => {
    expect(Object.keys(services).sort()).toEqual(["analytics-db", "cdc-sink", "connect", "ecom-db", "inventory-db", "kafka", "register-connectors"]);
    // the versions scripts/stack.sh runs for the tests
    expect(services.kafka!.image).toBe(`apache/kafka:${/<version.kafka>([^<]+)</.exec(pom)![1]}`);
    expect(services.connect!.image).toMatch(/^(quay\.io\/)?debezium\/connect:3\./);
    expect(services.connect!.image).toBe(`quay.io/debezium/connect:${/<version.debezium>([^<]+)</.exec(pom)![1]}`);
    const kafka = envOfService(services.kafka!);
    expect(kafka.KAFKA_PROCESS_ROLES).toBe("broker,controller");
    expect(kafka.CLUSTER_ID).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });

  test("each connector's database is a compose service with logical WAL, its DDL loaded at init", () => {
    for (const c of connectors) {
      const cfg = c.config as Record<string, string>;
      const db = services[cfg["database.hostname"]!];
      expect(db).toBeDefined();
      expect(db!.command.join(" ")).toContain("wal_level=logical");
      expect(envOfService(db!).POSTGRES_DB).toBe(cfg["database.dbname"]!);
      expect(cfg["database.port"]).toBe("5432");
      const init = volumesOf(db!).filter((v: Obj) => v.target.startsWith("/docker-entrypoint-initdb.d/"));
      expect(init.map((v: Obj) => v.host)).toContain(`./sql/${cfg["database.dbname"]}-ddl.sql`);
      for (const v of init) expect(existsSync(join(ROOT, v.host))).toBe(true);
    }
  });

  test("Connect: the worker properties of connectors/connect-worker.properties, the connectors' secret files mounted", () => {
    const connect = services.connect!;
    const env = envOfService(connect);
    const props = read("connectors/connect-worker.properties")
      .split("\n")
      .filter((l) => l.trim() && !l.trim().startsWith("#"))
      .map((l) => l.split("=", 2) as [string, string]);
    expect(props.length).toBeGreaterThan(0);
    // the image's entrypoint: CONNECT_A_B_C=v becomes the worker property a.b.c=v
    for (const [k, v] of props) expect({ [k]: env[`CONNECT_${k.toUpperCase().replace(/\./g, "_")}`] }).toEqual({ [k]: v });
    for (const c of connectors)
      for (const [, dir, key] of JSON.stringify(c.config).matchAll(/\$\{directory:([^:}]+):([^}]+)\}/g)) {
        const mount = volumesOf(connect).find((v: Obj) => v.target === dir);
        expect(mount).toBeDefined();
        expect(mount.ro).toBe(true);
        const file = join(ROOT, mount.host, key!);
        expect(existsSync(file)).toBe(true);
        // DirectoryConfigProvider passes the content on verbatim
        expect(readFileSync(file, "utf8")).not.toMatch(/\s$/);
        // the source database is set up with the same credentials
        const db = services[(c.config as Obj)["database.hostname"]]!;
        const dbEnv = envOfService(db);
        const byKey = key!.endsWith("_USER") ? dbEnv.POSTGRES_USER_FILE : dbEnv.POSTGRES_PASSWORD_FILE;
        expect(byKey).toBe(`${dir}/${key}`);
        expect(volumesOf(db).find((v: Obj) => v.target === dir)?.host).toBe(mount.host);
      }
  });

  test("the connectors are registered by scripts/register-connectors.sh once Connect serves Debezium", () => {
    const job = services["register-connectors"]!;
    const mounts = volumesOf(job);
    expect(mounts.find((v: Obj) => v.host === "./scripts")?.target).toBe(`${job.working_dir}/scripts`);
    expect(mounts.find((v: Obj) => v.host === "./connectors")?.target).toBe(`${job.working_dir}/connectors`);
    const script = job.command.join("\n");
    expect(script).toContain("scripts/register-connectors.sh");
    expect(script).toContain("io.debezium.connector.postgresql.PostgresConnector");
    expect(envOfService(job).CONNECT_URL).toBe("http://connect:8083");
    expect(job.restart).toBe("no");
  });

  test("cdc-sink: built from the Dockerfile, the repository's sink.toml, pointed at the stack's services", () => {
    const sink = services["cdc-sink"]!;
    expect(sink.build.context).toBe(".");
    expect(sink.build.dockerfile).toBe("Dockerfile");
    const mounts = volumesOf(sink);
    expect(mounts.find((v: Obj) => v.target === "/etc/cdc-sink/sink.toml")?.host).toBe("./sink.toml");
    if (!repoToml.ok) throw new Error(JSON.stringify(repoToml.issues));
    const cfg = repoToml.config;
    // the analytics database
    expect(services[cfg.postgres.host!]).toBeDefined();
    expect(envOfService(services[cfg.postgres.host!]!).POSTGRES_DB).toBe(cfg.postgres.database!);
    // the broker's in-network listener
    const [host, port] = cfg.kafka!.bootstrap_servers.split(":");
    expect(services[host!]).toBe(services.kafka!);
    expect(envOfService(services.kafka!).KAFKA_ADVERTISED_LISTENERS).toContain(`://${host}:${port}`);
    // the topics the connectors write
    const prefixes = connectors.map((c) => (c.config as Obj)["topic.prefix"]);
    for (const m of cfg.mappings) expect(prefixes).toContain(m.topic!.split(".")[0]);
    // the password file sink.toml names, mounted from a file that exists
    const pwFile = (parseToml(read("sink.toml")) as Obj).postgres.password_file as string;
    const mount = mounts.find((v: Obj) => v.target === dirname(pwFile));
    expect(mount?.ro).toBe(true);
    expect(existsSync(join(ROOT, mount.host, pwFile.slice(dirname(pwFile).length + 1)))).toBe(true);
    const deps = sink.depends_on as Obj;
    expect(deps["register-connectors"].condition).toBe("service_completed_successfully");
    expect(deps[cfg.postgres.host!].condition).toBe("service_healthy");
  });

  test("cdc-sink: non-root, read-only root, an exec tmpfs at /tmp, a stop grace above the shutdown budget", () => {
    const sink = services["cdc-sink"]!;
    expect(sink.user).toBe("65532:65532");
    expect(sink.read_only).toBe(true);
    const tmp = (sink.tmpfs as string[]).find((t) => t.split(":")[0] === "/tmp");
    expect(tmp?.split(":")[1]?.split(",")).toContain("exec");
    expect(envOfService(sink).TMPDIR).toBe("/tmp");
    expect(Number(/^(\d+)s$/.exec(sink.stop_grace_period)![1])).toBeGreaterThan(SHUTDOWN_BUDGET_S);
    expect(sink.ports).toContain("8080:8080");
  });

  // analytics-init.sh on a real PostgreSQL, as the image's entrypoint runs it, then cdc-sink's
  // start-up (state schema, table introspection) and its writes as the role it creates
  test("analytics-init.sh: the role, tables and grants cdc-sink needs, nothing more; re-runnable", async () => {
    const cluster = await sharedCluster();
    const url = await cluster.createDatabase("compose_analytics");
    const db = new URL(url).pathname.slice(1);
    const dir = tempDir("cdc-sink-compose-");
    writeFileSync(join(dir, "password"), "pw");
    const run = () =>
      spawnSync("bash", [join(ROOT, "deploy/compose/analytics-init.sh")], {
        encoding: "utf8",
        env: { ...process.env, PGHOST: "127.0.0.1", PGPORT: String(cluster.port), POSTGRES_USER: "postgres", POSTGRES_DB: db, ANALYTICS_PASSWORD_FILE: join(dir, "password"), SQL_DIR: join(ROOT, "sql") },
      });
    for (let i = 0; i < 2; i++) {
      const r = run();
      expect(`${r.stdout}${r.stderr}`).toBe("");
      expect(r.status).toBe(0);
    }
    if (!repoToml.ok) throw new Error(JSON.stringify(repoToml.issues));
    expect(repoToml.config.postgres.user).toBe("cdc_sink");
    const sql = postgres(url.replace("postgres@", "cdc_sink@"), { max: 1, onnotice: () => {} });
    try {
      await ensureStateTables(sql, repoToml.config.postgres.state_schema);
      const targets = await loadTargets(sql, repoToml.config.mappings);
      expect(targets.length).toBe(4);
      await sql`INSERT INTO fact_orders (id, status, _cdc_commit_lsn, _cdc_lsn) VALUES (1, 'paid', 1, 1)
        ON CONFLICT (id) DO UPDATE SET status = excluded.status`;
      await sql`UPDATE fact_orders SET status = 'shipped' WHERE id = 1`;
      await sql`DELETE FROM fact_orders WHERE id = 1`;
      const [owner] = await sql`SELECT nspowner::regrole::text AS owner FROM pg_namespace WHERE nspname = 'cdc_sink'`;
      expect(owner!.owner).toBe("cdc_sink");
      // least privilege: no DDL on the analytics tables
      await expect(sql`DROP TABLE fact_orders`.then(() => "dropped")).rejects.toThrow(/must be owner/);
    } finally {
      await sql.end({ timeout: 2 });
    }
  }, 60_000);
});
