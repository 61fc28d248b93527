// `cdc-sink init --config F [--apply]`, and the same at daemon start with [postgres] auto_provision.
import type { Sql } from "postgres";
import type { Config } from "../config.ts";
import { errorInfo, SchemaError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { openAnalytics } from "../sink/database.ts";
import { ensureStateTables } from "../sink/state.ts";
import { applyProvision, formatPlans, type PlanOptions, planProvision, SourceUnavailable } from "./plan.ts";

export { SourceUnavailable } from "./plan.ts";

export const INIT_HELP = `Usage: cdc-sink init --config sink.toml [--apply]

For each mapping whose analytics table is missing, or lacks bookkeeping columns (_cdc_commit_lsn,
_cdc_lsn, _cdc_synced_at, the soft-delete column), mapped columns or a unique index on its key,
prints the DDL that provides it, derived from the source: a PostgreSQL source's catalog (Kafka
mappings: their verify_source), else the schema the topic's newest events carry
(schemas.enable=true). Same column types as the source (numeric precision, varchar length,
arrays; enums as text, or their type with [postgres] provision_enums = "type"), its primary key,
and the bookkeeping columns. Nothing is ever dropped or retyped.
--apply      run the DDL (each table in its own transaction; recorded in <state_schema>.schema_log)
The SQL goes to stdout (pipe it to psql to review and run it yourself), problems to stderr.
Exit status: 0 nothing to do (or everything applied), 1 DDL to run (without --apply) or a table
that cannot be derived, 64 usage, 78 configuration. [postgres] auto_provision = true runs
init --apply at daemon start.`;

/** `cdc-sink init`: prints (or applies) the DDL; returns the exit status. */
export async function runInit(config: Config, opts: { apply: boolean; print(line: string): void; err(line: string): void } & PlanOptions): Promise<number> {
  const sql = openAnalytics(config.postgres, 2);
  try {
    const plans = await planProvision(config, sql, opts);
    const problems = plans.flatMap((p) => p.problems);
    const work = plans.filter((p) => !p.problems.length && p.statements.length);
    for (const line of formatPlans(plans)) opts.print(line);
    if (opts.apply && work.length) {
      await ensureStateTables(sql, config.postgres.state_schema);
      await applyProvision(sql, config.postgres.state_schema, work);
      opts.err(`init: applied ${work.map((p) => p.table).join(", ")}`);
    }
    for (const p of problems) opts.err(`init: ${p}`);
    if (!plans.length) opts.err("init: every mapped table exists with its key and bookkeeping columns: nothing to do");
    else if (!opts.apply && work.length) opts.err(`init: ${work.length} table(s) need DDL: review it and run it, or run cdc-sink init --apply`);
    return problems.length || (!opts.apply && work.length) ? 1 : 0;
  } catch (e) {
    opts.err(`init: ${e instanceof SourceUnavailable ? e.message : `analytics database: ${errorInfo(e).error}`}`);
    return 1;
  } finally {
    await sql.end({ timeout: 2 });
  }
}

/**
 * Daemon start with auto_provision: applies what can be applied; a table that cannot be derived is
 * a SchemaError (exit 78, like any table that does not fit). A source that cannot be read throws
 * SourceUnavailable (the start is retried).
 */
export async function provisionAtStart(config: Config, sql: Sql, log: Logger): Promise<void> {
  const plans = await planProvision(config, sql);
  const work = plans.filter((p) => !p.problems.length && p.statements.length);
  if (work.length) {
    await applyProvision(sql, config.postgres.state_schema, work);
    for (const p of work) log.info("analytics table provisioned (auto_provision)", { table: p.table, from: p.from, statements: p.statements, notes: p.notes.length ? p.notes : undefined });
  }
  const problems = plans.flatMap((p) => p.problems);
  if (problems.length) throw new SchemaError(problems);
}
