// What verify and repair print: per table one line of figures and the differing keys (the first N
// of each kind, with the columns that differ), or one JSON document. Keys and column names only,
// never row values.
import type { KeyDiff } from "./confirm.ts";
import type { TableReport, VerifyRun } from "./verify.ts";

/** A key as printed: the value of a one-column key, (a, b) for a composite one. */
export const showKey = (key: (string | null)[]) => (key.length === 1 ? String(key[0]) : `(${key.map(String).join(", ")})`);

const seconds = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;

function keyList(diffs: KeyDiff[], limit: number, withColumns: boolean): string {
  const shown = diffs.slice(0, limit).map((d) => (withColumns && d.columns?.length ? `${showKey(d.key)} (${d.columns.join(", ")})` : showKey(d.key)));
  return shown.join(", ") + (diffs.length > limit ? `, … ${diffs.length - limit} more` : "");
}

const STATUS: Record<TableReport["status"], string> = {
  equal: "equal",
  different: "DIFFERENT",
  unconfirmed: "COULD NOT CONFIRM",
  error: "COULD NOT COMPARE",
  skipped: "skipped",
};

/** The lines of one table. */
export function formatReport(r: TableReport, limit = 20): string[] {
  const from = r.source ? ` <- ${r.source} ${r.sourceTable}` : "";
  if (r.status === "skipped") return [`${r.table}${from}: skipped (${r.reason})`];
  if (r.status === "error") return [`${r.table}${from}: ${STATUS.error}: ${r.reason}`];
  const out = [
    `${r.table}${from}: ${STATUS[r.status]} — ${r.chunks} chunks (${r.chunksDiffering} differing), ${r.sourceRows} source rows, ${r.analyticsRows} analytics rows, ${seconds(r.elapsedMs)}`,
  ];
  if (r.missing.length) out.push(`  missing   ${r.missing.length} (in the source, not in analytics): ${keyList(r.missing, limit, false)}`);
  if (r.extra.length) out.push(`  extra     ${r.extra.length} (in analytics, not in the source): ${keyList(r.extra, limit, false)}`);
  if (r.different.length) out.push(`  different ${r.different.length}: ${keyList(r.different, limit, true)}`);
  if (r.unconfirmed.length) out.push(`  could not confirm ${r.unconfirmed.length}: ${keyList(r.unconfirmed, limit, false)}`);
  if (r.reason) out.push(`  ${r.reason}`);
  if (r.notCompared.length) out.push(`  not compared (not in the source table): ${r.notCompared.join(", ")}`);
  return out;
}

export function formatSummary(run: VerifyRun): string {
  const compared = run.tables.filter((t) => t.status !== "skipped");
  const differing = compared.filter((t) => t.status === "different");
  const keys = compared.reduce((n, t) => n + t.missing.length + t.extra.length + t.different.length, 0);
  const failed = compared.filter((t) => t.status === "error" || t.status === "unconfirmed");
  const parts = [`${compared.length} table${compared.length === 1 ? "" : "s"} compared`];
  if (run.tables.length > compared.length) parts.push(`${run.tables.length - compared.length} skipped`);
  parts.push(differing.length ? `${differing.length} with differences (${keys} keys)` : "no differences");
  if (failed.length) parts.push(`${failed.length} could not be compared or confirmed`);
  return `verify: ${parts.join(", ")} in ${seconds(run.elapsedMs)}; exit ${run.status}`;
}

const keysJson = (diffs: KeyDiff[], limit: number) => ({
  count: diffs.length,
  keys: diffs.slice(0, limit).map((d) => (d.columns ? { key: d.key, columns: d.columns } : { key: d.key })),
});

/** The machine form: one document for the whole run. */
export function reportJson(run: VerifyRun, limit = 1000) {
  return {
    status: run.status,
    elapsedMs: run.elapsedMs,
    tables: run.tables.map((t) => ({
      table: t.table,
      mode: t.mode,
      source: t.source ?? null,
      sourceTable: t.sourceTable ?? null,
      status: t.status,
      chunks: t.chunks,
      chunksDiffering: t.chunksDiffering,
      sourceRows: t.sourceRows,
      analyticsRows: t.analyticsRows,
      missing: keysJson(t.missing, limit),
      extra: keysJson(t.extra, limit),
      different: keysJson(t.different, limit),
      unconfirmed: keysJson(t.unconfirmed, limit),
      truncated: t.truncated,
      notCompared: t.notCompared,
      reason: t.reason ?? null,
      elapsedMs: t.elapsedMs,
    })),
  };
}
