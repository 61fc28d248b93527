// PostgreSQL source setup: connections, the preflight `check` runs, the publication, and where the
// slot resumes (or whether it must be created, with an initial snapshot).
import postgres, { type Sql } from "postgres";
import { connectionOptions, type PgSourceConfig } from "../../config.ts";
import { SourceSetupError } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import { parseLsn } from "../../decode/pgoutput.ts";
import { qualify, quoteIdent } from "../../sink/schema.ts";

export const slotName = (c: PgSourceConfig) => c.slot ?? `cdc_sink_${c.name}`;
export const publicationName = (c: PgSourceConfig) => c.publication ?? `cdc_sink_${c.name}`;
export const pgStream = (c: PgSourceConfig) => `pg:${slotName(c)}`;
export const snapshotPart = (c: PgSourceConfig) => `${c.name}#snapshot`;

/** A connection to a source database; `replication: true` opens a walsender connection. */
export function openSource(c: PgSourceConfig, opts: { replication?: boolean } = {}): Sql {
  const { url, options } = connectionOptions(c);
  const connection = opts.replication ? { replication: "database", application_name: `cdc-sink:${c.name}` } : { application_name: `cdc-sink:${c.name}` };
  const o = { ...options, max: 1, onnotice: () => {}, idle_timeout: null, max_lifetime: null, fetch_types: false, connection };
  return (url ? postgres(url, o as never) : postgres(o as never)) as Sql;
}

/** Source-side preflight: wal_level, replication privilege, replica identity. Returns problems with their fixes. */
export async function sourceProblems(admin: Sql, tables: string[]): Promise<string[]> {
  const out: string[] = [];
  const [{ wal_level }] = (await admin`SHOW wal_level`) as unknown as [{ wal_level: string }];
  if (wal_level !== "logical") out.push(`wal_level is ${wal_level}: set wal_level = logical (ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL`);
  const [role] = await admin`SELECT rolreplication OR rolsuper AS ok, current_user AS name FROM pg_roles WHERE rolname = current_user`;
  if (!role?.ok) out.push(`role ${role?.name} lacks the REPLICATION attribute (ALTER ROLE ${role?.name} REPLICATION)`);
  for (const t of tables) {
    const [r] = await admin`SELECT c.relreplident AS ident, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_pk
      FROM pg_class c WHERE c.oid = to_regclass(${t})`;
    if (!r) out.push(`source table ${t} does not exist`);
    else if (r.ident === "n") out.push(`${t} has REPLICA IDENTITY NOTHING: deletes carry no key (ALTER TABLE ${t} REPLICA IDENTITY DEFAULT)`);
    else if (r.ident === "d" && !r.has_pk) out.push(`${t} has no primary key: updates and deletes carry no key (add one, or ALTER TABLE ${t} REPLICA IDENTITY FULL)`);
  }
  return out;
}

/** What `check` reports about a source's slot and publication (created on first run when missing). */
export async function slotState(admin: Sql, c: PgSourceConfig): Promise<string[]> {
  const slot = slotName(c);
  const publication = publicationName(c);
  const out: string[] = [];
  const [s] = await admin`SELECT active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained, wal_status
    FROM pg_replication_slots WHERE slot_name = ${slot}`;
  out.push(s ? `slot ${slot}: ${s.active ? "active" : "inactive"}, retains ${s.retained} bytes of WAL (${s.wal_status})` : `slot ${slot}: missing, created on first run`);
  const tables = await admin`SELECT schemaname || '.' || tablename AS t FROM pg_publication_tables WHERE pubname = ${publication} ORDER BY 1`;
  const [p] = await admin`SELECT 1 FROM pg_publication WHERE pubname = ${publication}`;
  out.push(p ? `publication ${publication}: ${tables.map((r) => r.t).join(", ") || "no tables"}` : `publication ${publication}: missing, created on first run`);
  return out;
}

/** Creates the publication, or adds the tables it lacks. */
export async function ensurePublication(admin: Sql, c: PgSourceConfig, tables: string[], log: Logger): Promise<void> {
  const problems = await sourceProblems(admin, tables);
  if (problems.length) throw new SourceSetupError(`source ${c.name}: ${problems.join("; ")}`);
  const publication = publicationName(c);
  const [pub] = await admin`SELECT 1 FROM pg_publication WHERE pubname = ${publication}`;
  const list = (ts: string[]) => ts.map(qualify).join(", ");
  if (!pub) {
    await admin.unsafe(`CREATE PUBLICATION ${quoteIdent(publication)} FOR TABLE ${list(tables)}`);
    log.info("publication created", { publication, tables });
    return;
  }
  const published = new Set((await admin`SELECT schemaname || '.' || tablename AS t FROM pg_publication_tables WHERE pubname = ${publication}`).map((r) => r.t as string));
  const missing = tables.filter((t) => !published.has(t));
  if (missing.length) await admin.unsafe(`ALTER PUBLICATION ${quoteIdent(publication)} ADD TABLE ${list(missing)}`);
}

/** Where streaming starts, and the exported snapshot to copy first when the slot was (re)created. */
export interface SlotStart {
  from: bigint;
  snapshot?: { name: string; lsn: bigint };
}

/**
 * Resumes an existing slot from the later of its confirmed position and the checkpoint; creates it
 * when missing, and re-creates it when its initial snapshot never completed (the checkpoint table
 * marks completion in the same transaction as the snapshot's last rows).
 */
export async function prepareSlot(admin: Sql, repl: Sql, c: PgSourceConfig, stored: Map<string, bigint>, log: Logger): Promise<SlotStart> {
  const slot = slotName(c);
  const checkpoint = stored.get(c.name) ?? 0n;
  const snapshotDone = stored.get(snapshotPart(c)) === 1n;
  const [existing] = await admin`SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = ${slot}`;
  if (existing && (snapshotDone || !c.snapshot)) {
    const confirmed = parseLsn(existing.lsn);
    return { from: checkpoint > confirmed ? checkpoint : confirmed };
  }
  if (existing) await admin`SELECT pg_drop_replication_slot(${slot})`;
  const [created] = await repl.unsafe(`CREATE_REPLICATION_SLOT ${quoteIdent(slot)} LOGICAL pgoutput ${c.snapshot ? "EXPORT_SNAPSHOT" : "NOEXPORT_SNAPSHOT"}`);
  const from = parseLsn(created!.consistent_point);
  log.info("replication slot created", { slot, consistentPoint: created!.consistent_point });
  return c.snapshot ? { from, snapshot: { name: created!.snapshot_name as string, lsn: from } } : { from };
}
