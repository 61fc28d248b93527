// `cdc-sink dlq list|show|retry|discard`: the dead letters handled from the command line.
import type { Config } from "../config.ts";
import { errorInfo } from "../errors.ts";
import type { Logger } from "../log.ts";
import { openAnalytics } from "../sink/database.ts";
import { ensureStateTables } from "../sink/state.ts";
import { retryDeadLetters, type RetryOutcome } from "./retry.ts";
import { type DeadLetterRow, DeadLetterStore, type Filter, reasonOf } from "./store.ts";

export const DLQ_ACTIONS = ["list", "show", "retry", "discard"] as const;

export const DLQ_HELP = `Usage: cdc-sink dlq list|show|retry|discard --config sink.toml [--table T] [--id N] [--json]

Dead letters are events that could not be decoded or applied (<state_schema>.dead_letters); the
rest of the stream went on without them.
  list      pending dead letters: counts per table and reason, then the oldest entries (--limit, 20)
  show      one dead letter in full (--id N), with what was done with it
  retry     apply them again, once the cause is fixed (a column added or widened, a constraint
            relaxed): a Kafka record is decoded again and applied at its own source position, a
            PostgreSQL-source change is read again from its source table (as repair does); the
            position guard keeps any newer row, so a stale dead letter never overwrites newer
            data. Resolved ones move to dead_letter_audit; one rejected again stays, with the
            new error. Safe while the daemon runs.
  discard   drop them, keeping an audit row (dead_letter_audit: who, when, --note, the record);
            needs --table or --id
--table T    only dead letters of analytics table T
--id N       only these ids (repeatable; also 3,5,9-12)
--note TEXT  discard: why, kept in the audit row
--json       one JSON document instead of text
Exit status: 0 nothing pending (list), done (show, retry: every one resolved; discard), 1 dead
letters pending (list), not found (show), some not resolved (retry), 64 usage, 78 configuration.
The daemon exports cdc_sink_dead_letters_pending{table}.`;

export class DlqUsageError extends Error {}

/** "3", "3,5", "9-12" (repeatable) -> ids. */
export function parseIds(specs: string[]): bigint[] {
  const ids: bigint[] = [];
  for (const spec of specs)
    for (const part of spec.split(",").map((s) => s.trim()).filter(Boolean)) {
      const m = /^(\d+)(?:-(\d+))?$/.exec(part);
      if (!m) throw new DlqUsageError(`--id ${part}: expected a number or a range such as 9-12`);
      const [a, b] = [BigInt(m[1]!), BigInt(m[2] ?? m[1]!)];
      if (b < a || b - a > 100_000n) throw new DlqUsageError(`--id ${part}: a range from low to high of at most 100000 ids`);
      for (let i = a; i <= b; i++) ids.push(i);
    }
  return ids;
}

const when = (d: Date | null) => (d ? d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "");
const clip = (s: string | null, n: number) => (s === null ? "" : s.length > n ? `${s.slice(0, n - 1)}…` : s).replace(/\s+/g, " ");
const where = (d: DeadLetterRow) => (d.stream.startsWith("kafka:") ? `${d.part} offset ${d.position}` : `${d.stream} ${d.part} at ${d.position}`);

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  "));
}

export async function runDlq(
  config: Config,
  action: string,
  opts: { table?: string; ids?: string[]; json?: boolean; limit?: number; note?: string; print(line: string): void; log?: Logger },
): Promise<number> {
  let filter: Filter;
  try {
    if (!(DLQ_ACTIONS as readonly string[]).includes(action)) throw new DlqUsageError(`dlq ${action || "(no action)"}: expected one of ${DLQ_ACTIONS.join(", ")}`);
    filter = { table: opts.table, ids: opts.ids?.length ? parseIds(opts.ids) : undefined };
    if (action === "show" && filter.ids?.length !== 1) throw new DlqUsageError("dlq show needs one --id");
    if (action === "discard" && !filter.ids && filter.table === undefined) throw new DlqUsageError("dlq discard needs --table or --id (what to drop)");
  } catch (e) {
    if (!(e instanceof DlqUsageError)) throw e;
    opts.print(`error: ${e.message}`);
    return 64;
  }
  const sql = openAnalytics(config.postgres, 2);
  const store = new DeadLetterStore(sql, config.postgres.state_schema);
  const out = opts.print;
  try {
    await ensureStateTables(sql, config.postgres.state_schema);
    if (action === "list") {
      const summary = await store.summary(filter);
      const total = summary.reduce((n, s) => n + s.count, 0);
      const entries = await store.list(filter, opts.limit ?? 20);
      if (opts.json) out(JSON.stringify({ pending: total, byTableAndReason: summary.map((s) => ({ ...s, reason: reasonOf(s.stage, s.code) })), entries: entries.map(brief) }));
      else if (!total) out(`no pending dead letters${filter.table ? ` for ${filter.table}` : ""}`);
      else {
        out(`${total} pending dead letter(s)`);
        out("");
        table([["table", "reason", "count", "oldest", "newest"], ...summary.map((s) => [s.table || "(none)", reasonOf(s.stage, s.code), String(s.count), when(s.oldest), when(s.newest)])]).forEach((l) => out(`  ${l}`));
        out("");
        table([["id", "failed at", "table", "record", "retries", "error"], ...entries.map((d) => [d.id, when(d.failed_at), d.target_table ?? "", where(d), String(d.retries), clip(d.error, 100)])]).forEach((l) => out(`  ${l}`));
        if (total > entries.length) out(`  … ${total - entries.length} more (--limit N, --table T)`);
        out("");
        out("cdc-sink dlq show --id N shows one in full; retry applies them again once the cause is fixed; discard drops them (audited)");
      }
      return total ? 1 : 0;
    }
    if (action === "show") {
      const id = filter.ids![0]!;
      const d = await store.get(id);
      const history = await store.history(id);
      if (opts.json) out(JSON.stringify({ deadLetter: d ? full(d) : null, history: history.map((h) => ({ at: h.at, actor: h.actor, action: h.action, outcome: h.outcome, note: h.note, ...(h.value !== null || h.key !== null ? { record: full(h as unknown as DeadLetterRow) } : {}) })) }));
      else {
        if (d) for (const [k, v] of Object.entries(full(d))) out(`${k.padEnd(14)} ${v === null || v === undefined ? "" : String(v)}`);
        else out(`dead letter ${id} is not pending${history.length ? "" : " (no such id)"}`);
        for (const h of history) out(`history        ${when(h.at)} ${h.actor}: ${h.action} -> ${h.outcome}${h.note ? ` (${h.note})` : ""}`);
      }
      return d ? 0 : 1;
    }
    if (action === "retry") {
      const counts = new Map<RetryOutcome, number>();
      const results = await retryDeadLetters(config, store, filter, {
        log: opts.log,
        onResult: (r) => {
          counts.set(r.outcome, (counts.get(r.outcome) ?? 0) + 1);
          if (!opts.json) out(`${r.id} ${r.table ?? "(none)"}: ${r.outcome}${r.detail ? `: ${r.detail}` : ""}`);
        },
      });
      if (opts.json) out(JSON.stringify({ results }));
      const order: RetryOutcome[] = ["applied", "superseded", "already equal", "nothing to apply", "failed", "not retryable"];
      if (!opts.json) out(results.length ? `retry: ${order.filter((k) => counts.has(k)).map((k) => `${counts.get(k)} ${k}`).join(", ")}` : "retry: no pending dead letters matched");
      return results.some((r) => r.outcome === "failed" || r.outcome === "not retryable") ? 1 : 0;
    }
    const moved = await store.resolve(filter, "discard", "discarded", opts.note ?? null);
    const missing = filter.ids ? filter.ids.filter((id) => !moved.includes(String(id))).map(String) : [];
    if (opts.json) out(JSON.stringify({ discarded: moved, notPending: missing }));
    else {
      out(`discarded ${moved.length} dead letter(s)${moved.length ? ` (ids ${moved.join(", ")}; kept in dead_letter_audit)` : ""}`);
      if (missing.length) out(`not pending: ${missing.join(", ")}`);
    }
    return missing.length ? 1 : 0;
  } catch (e) {
    out(`error: ${errorInfo(e).error}`);
    return 1;
  } finally {
    await sql.end({ timeout: 2 });
  }
}

function brief(d: DeadLetterRow) {
  return { id: d.id, failedAt: d.failed_at, table: d.target_table, stage: d.stage, code: d.error_code, stream: d.stream, part: d.part, position: d.position, retries: d.retries, error: d.error };
}

function full(d: DeadLetterRow): Record<string, string | number | null> {
  return {
    id: d.id,
    failed_at: when(d.failed_at),
    table: d.target_table,
    reason: reasonOf(d.stage, d.error_code),
    record: where(d),
    error: d.error,
    key: d.key,
    value: d.value,
    ...(d.value_sha256 ? { value_size: d.value_size, value_sha256: d.value_sha256 } : {}),
    ...(d.key_bytes ? { key_hex: d.key_bytes.toString("hex") } : {}),
    ...(d.value_bytes && !d.value_sha256 ? { value_hex: d.value_bytes.toString("hex") } : {}),
    retries: d.retries,
    last_retry_at: d.last_retry_at ? when(d.last_retry_at) : null,
  };
}
