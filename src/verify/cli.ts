// The commands: `cdc-sink verify --config F [--table T] [--json]` and
// `cdc-sink repair --config F [--table T] [--json]`, with their help texts.
import type { Config } from "../config.ts";
import { errorInfo } from "../errors.ts";
import { formatReport, formatSummary, reportJson } from "./report.ts";
import { formatRepair, repairTable, type TableRepair } from "./repair.ts";
import { Connections, type RunVerifyOptions, runStatus, subjectsOrThrow, type TableReport, UsageError, withTable } from "./verify.ts";

export { runVerify } from "./verify.ts";

export const VERIFY_HELP = `Usage: cdc-sink verify --config sink.toml [--table T] [--json]

Compares every analytics table with its source table (PostgreSQL-source mappings through their
[[postgres_sources]] entry, Kafka mappings through verify_source) by key ranges: a hash per chunk
of [verify] chunk_rows keys computed inside each database, differing chunks narrowed to keys,
each side read at most [verify] rows_per_second. A key that differs only because the sink has
not applied a newer change yet is not reported: it is read again once the sink has passed the
source's WAL position (PostgreSQL sources) or after [verify] settle (Kafka mappings).
--table T    only the mapping whose analytics table, source table or topic is T
--json       one JSON document instead of text
Exit status: 0 equal, 1 differences found, 2 could not compare (a source unreachable, the sink
not catching up), 64 usage, 78 configuration.`;

export const REPAIR_HELP = `Usage: cdc-sink repair --config sink.toml [--table T] [--json]

Verifies (as cdc-sink verify) and mends the keys that differ: re-reads them from the source and
applies them through the sink's position-guarded path, so a change streamed meanwhile still wins;
rows the source no longer has are deleted (their tombstone recorded). Safe while the daemon runs.
Prints what it changed. Exit status: 0 everything equal afterwards, 1 differences remain, 2 could
not compare, 64 usage, 78 configuration.`;

/** `cdc-sink repair`: prints what it found and changed per table; returns the exit status. */
export async function runRepair(config: Config, opts: RunVerifyOptions): Promise<number> {
  const limit = opts.limit ?? (opts.json ? 1000 : 20);
  const t0 = performance.now();
  const conns = new Connections(config);
  const repairs: Array<{ table: string; repair?: TableRepair; report: TableReport }> = [];
  try {
    for (const subject of subjectsOrThrow(config, opts.table)) {
      let repair: TableRepair | undefined;
      const report = await withTable(conns, subject, opts, async (session) => {
        repair = await repairTable(session, config, opts);
        return repair.after;
      });
      repairs.push({ table: subject.table, repair, report });
      if (opts.json) continue;
      if (!repair) formatReport(report, limit).forEach((l) => opts.print(l));
      else {
        formatReport(repair.found, limit).forEach((l) => opts.print(l));
        if (repair.found.status !== "equal") formatRepair(repair, limit).forEach((l) => opts.print(l));
      }
    }
  } catch (e) {
    opts.print(`error: ${errorInfo(e).error}`);
    return e instanceof UsageError ? 64 : 2;
  } finally {
    await conns.close();
  }
  const run = { tables: repairs.map((r) => r.report), status: runStatus(repairs.map((r) => r.report)), elapsedMs: Math.round(performance.now() - t0) };
  if (opts.json) {
    const doc = reportJson(run, limit);
    opts.print(
      JSON.stringify({
        ...doc,
        tables: doc.tables.map((after, i) => {
          const r = repairs[i]!.repair;
          if (!r) return { table: after.table, after };
          const keys = (a: string) => r.mended.actions.filter((x) => x.action === a).map((x) => x.key);
          const found = reportJson({ ...run, tables: [r.found] }, limit).tables[0];
          return { table: after.table, found, mended: { applied: r.mended.applied, kept: r.mended.kept, rejected: r.mended.rejected, inserted: keys("insert"), updated: keys("update"), deleted: keys("delete") }, after };
        }),
      }),
    );
  } else opts.print(formatSummary(run).replace(/^verify:/, "repair:"));
  return run.status;
}
