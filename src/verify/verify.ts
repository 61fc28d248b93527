// `cdc-sink verify`: proves each analytics table equal to its source table, or names the keys
// that differ. Per mapping whose source can be read: the chunk scan (chunks.ts), then the
// re-checks that tell a real difference from the sink catching up (confirm.ts). Exit status like
// diff(1): 0 equal, 1 differences, 2 could not compare (a source unreachable, a sink that did not
// catch up, rows that kept changing).
import type { Sql } from "postgres";
import { type Config, parseDuration, type PgSourceConfig } from "../config.ts";
import { CdcError, errorInfo, SchemaError, Stopped } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Target } from "../model.ts";
import { type Candidate, type Reader, scanTable } from "./chunks.ts";
import { type Confirmation, confirmKafka, confirmPg, type KeyDiff } from "./confirm.ts";
import { planTable, subjects, targetOf, type VerifySubject } from "./plan.ts";
import { formatReport, formatSummary, reportJson } from "./report.ts";
import { openVerifyAnalytics, openVerifySource, Pace } from "./session.ts";

export interface VerifyOptions {
  /** only this mapping: its analytics table, source table or topic */
  table?: string;
  signal?: AbortSignal;
  log?: Logger;
  /** PostgreSQL mappings: how long to wait for the sink to apply the source up to the re-check's WAL position (60 s) */
  confirmTimeoutMs?: number;
  /** a slot seen inactive this long means the sink is not running (5 s) */
  inactiveGraceMs?: number;
  /** override [verify] rows_per_second, chunk_rows, settle */
  rowsPerSecond?: number;
  chunkRows?: number;
  settleMs?: number;
  /** keys examined per table at most (100,000); more differing keys are counted as truncated */
  maxCandidates?: number;
  /** called as each table is done */
  onTable?(report: TableReport): void;
}

export interface TableReport {
  table: string;
  mode: "postgres" | "kafka";
  source?: string;
  sourceTable?: string;
  status: "equal" | "different" | "unconfirmed" | "error" | "skipped";
  chunks: number;
  chunksDiffering: number;
  sourceRows: number;
  analyticsRows: number;
  missing: KeyDiff[];
  extra: KeyDiff[];
  different: KeyDiff[];
  /** keys that differed but could not be confirmed (see reason) */
  unconfirmed: KeyDiff[];
  /** more keys differed than were examined */
  truncated: boolean;
  /** analytics columns the source table lacks */
  notCompared: string[];
  reason?: string;
  elapsedMs: number;
}

export interface VerifyRun {
  tables: TableReport[];
  /** 0 equal, 1 differences, 2 could not compare */
  status: 0 | 1 | 2;
  elapsedMs: number;
}

/** --table names no mapping (exit 64). */
export class UsageError extends CdcError {
  constructor(message: string) {
    super("USAGE", message);
  }
}

/** The connections of one run: one analytics pool, one per source. */
export class Connections {
  #analytics?: Sql;
  readonly #sources = new Map<string, Sql>();
  constructor(readonly config: Config) {}
  analytics(): Sql {
    return (this.#analytics ??= openVerifyAnalytics(this.config.postgres));
  }
  source(c: PgSourceConfig): Sql {
    let s = this.#sources.get(c.name);
    if (!s) this.#sources.set(c.name, (s = openVerifySource(c)));
    return s;
  }
  async close(): Promise<void> {
    const all = [...this.#sources.values(), ...(this.#analytics ? [this.#analytics] : [])];
    await Promise.all(all.map((s) => s.end({ timeout: 2 }).catch(() => {})));
  }
}

/** One mapping ready to compare. */
export interface TableSession {
  subject: VerifySubject;
  target: Target;
  reader: Reader;
  notCompared: string[];
}

export const settleOf = (config: Config, opts: VerifyOptions) => opts.settleMs ?? parseDuration(config.verify.settle) ?? 10_000;

export async function openTable(conns: Connections, subject: VerifySubject, opts: VerifyOptions): Promise<TableSession> {
  const src = conns.source(subject.source!);
  const dst = conns.analytics();
  const target = await targetOf(dst, subject.mapping);
  const { plan, notCompared } = await planTable(target, subject.sourceTable!, src, dst);
  const rate = opts.rowsPerSecond ?? conns.config.verify.rows_per_second;
  const reader: Reader = {
    plan,
    src,
    dst,
    chunkRows: opts.chunkRows ?? conns.config.verify.chunk_rows,
    pace: { source: new Pace(rate, opts.signal), analytics: new Pace(rate, opts.signal) },
    maxCandidates: opts.maxCandidates ?? 100_000,
  };
  return { subject, target, reader, notCompared };
}

export function emptyReport(subject: VerifySubject, status: TableReport["status"], reason?: string): TableReport {
  return {
    table: subject.table,
    mode: subject.mode,
    source: subject.source?.name,
    sourceTable: subject.sourceTable,
    status,
    chunks: 0,
    chunksDiffering: 0,
    sourceRows: 0,
    analyticsRows: 0,
    missing: [],
    extra: [],
    different: [],
    unconfirmed: [],
    truncated: false,
    notCompared: [],
    reason,
    elapsedMs: 0,
  };
}

/** The status a report's findings give. */
export function statusOf(r: Pick<TableReport, "missing" | "extra" | "different" | "unconfirmed">): TableReport["status"] {
  if (r.unconfirmed.length) return "unconfirmed";
  return r.missing.length + r.extra.length + r.different.length ? "different" : "equal";
}

/** Re-checks candidates the way the mapping's source allows. */
export function confirm(session: TableSession, config: Config, opts: VerifyOptions, candidates: Iterable<Candidate>): Promise<Confirmation> {
  const s = session.subject;
  if (s.mode === "kafka") return confirmKafka(session.reader, candidates, settleOf(config, opts), { signal: opts.signal });
  return confirmPg(
    {
      reader: session.reader,
      stateSchema: config.postgres.state_schema,
      progress: s.progress!,
      sourceName: s.source!.name,
      timeoutMs: opts.confirmTimeoutMs ?? 60_000,
      inactiveGraceMs: opts.inactiveGraceMs,
      signal: opts.signal,
    },
    candidates,
  );
}

/** Scans and confirms one opened table. */
export async function compareTable(session: TableSession, config: Config, opts: VerifyOptions): Promise<TableReport> {
  const t0 = performance.now();
  const scan = await scanTable(session.reader);
  const c = scan.candidates.size ? await confirm(session, config, opts, scan.candidates.values()) : { confirmed: [], unconfirmed: [] };
  const report = emptyReport(session.subject, "equal");
  Object.assign(report, {
    chunks: scan.chunks,
    chunksDiffering: scan.chunksDiffering,
    sourceRows: scan.sourceRows,
    analyticsRows: scan.analyticsRows,
    missing: c.confirmed.filter((d) => d.kind === "missing"),
    extra: c.confirmed.filter((d) => d.kind === "extra"),
    different: c.confirmed.filter((d) => d.kind === "different"),
    unconfirmed: c.unconfirmed,
    truncated: scan.truncated,
    notCompared: session.notCompared,
    reason: c.reason ?? (scan.truncated ? `more than ${session.reader.maxCandidates} keys differ: only those were examined` : undefined),
  });
  report.status = statusOf(report);
  report.elapsedMs = Math.round(performance.now() - t0);
  return report;
}

/** Opens a subject's table and runs `fn` on it; a failure to open or compare becomes an error report. */
export async function withTable(
  conns: Connections,
  subject: VerifySubject,
  opts: VerifyOptions,
  fn: (session: TableSession) => Promise<TableReport>,
): Promise<TableReport> {
  if (subject.skip || !subject.source || !subject.sourceTable) return emptyReport(subject, "skipped", subject.skip ?? "no source table");
  const t0 = performance.now();
  try {
    return await fn(await openTable(conns, subject, opts));
  } catch (e) {
    if (e instanceof Stopped || opts.signal?.aborted) throw e instanceof Stopped ? e : new Stopped();
    const reason = e instanceof SchemaError ? e.problems.join("; ") : errorInfo(e).error;
    opts.log?.warn("verify: table could not be compared", { table: subject.table, error: reason });
    return { ...emptyReport(subject, "error", reason), elapsedMs: Math.round(performance.now() - t0) };
  }
}

/** The run's exit status: 2 when any table could not be compared (or none was), else 1 on any difference. */
export function runStatus(tables: TableReport[]): 0 | 1 | 2 {
  const compared = tables.filter((t) => t.status !== "skipped");
  if (!compared.length || compared.some((t) => t.status === "error" || t.status === "unconfirmed")) return 2;
  return compared.some((t) => t.status === "different") ? 1 : 0;
}

/** The subjects of a run; throws UsageError when `table` names no mapping. */
export function subjectsOrThrow(config: Config, table?: string): VerifySubject[] {
  const subs = subjects(config, table);
  if (table !== undefined && !subs.length) throw new UsageError(`--table ${table}: no mapping has this table, source table or topic (${config.mappings.map((m) => m.table).join(", ")})`);
  return subs;
}

/** Verifies every mapping (or one), table by table. */
export async function verify(config: Config, opts: VerifyOptions = {}): Promise<VerifyRun> {
  const t0 = performance.now();
  const conns = new Connections(config);
  const tables: TableReport[] = [];
  try {
    for (const subject of subjectsOrThrow(config, opts.table)) {
      const report = await withTable(conns, subject, opts, (s) => compareTable(s, config, opts));
      tables.push(report);
      opts.onTable?.(report);
    }
  } finally {
    await conns.close();
  }
  return { tables, status: runStatus(tables), elapsedMs: Math.round(performance.now() - t0) };
}

export interface RunVerifyOptions extends VerifyOptions {
  json?: boolean;
  print(line: string): void;
  /** keys listed per kind and table (text: 20, JSON: 1000) */
  limit?: number;
}

/** `cdc-sink verify`: prints each table as it is done (or one JSON document); returns the exit status. */
export async function runVerify(config: Config, opts: RunVerifyOptions): Promise<number> {
  const limit = opts.limit ?? (opts.json ? 1000 : 20);
  let run: VerifyRun;
  try {
    run = await verify(config, { ...opts, onTable: opts.json ? undefined : (r) => formatReport(r, limit).forEach((l) => opts.print(l)) });
  } catch (e) {
    opts.print(`error: ${errorInfo(e).error}`);
    return e instanceof UsageError ? 64 : 2;
  }
  if (opts.json) opts.print(JSON.stringify(reportJson(run, limit)));
  else opts.print(formatSummary(run));
  return run.status;
}
