// PostgreSQL source setup: connections, the preflight `check` runs, the publication, and where the
// slot resumes (or whether it must be created, with an initial snapshot).
import postgres, { type Sql } from "postgres";
import { connectionOptions, type PgSourceConfig } from "../../config.ts";
import { CdcError, SourceSetupError } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import { formatLsn, parseLsn } from "../../decode/pgoutput.ts";
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
  /** the slot was created now: its consistent point is recorded as the checkpoint with the first batch */
  created: boolean;
}

/** Why a slot cannot be resumed without a gap. */
export type SlotProblem = "invalidated" | "missing" | "ahead_of_checkpoint" | "source_behind_checkpoint";

/**
 * The slot cannot give every change after the checkpoint: resuming would skip some silently. Codes:
 * SLOT_INVALIDATED (the server removed WAL the slot still needed: max_slot_wal_keep_size), SLOT_GAP
 * (the slot was dropped, re-created or moved, or the source was restored to an earlier point).
 */
export class SlotUnusable extends CdcError {
  constructor(
    readonly slot: string,
    readonly reason: SlotProblem,
    message: string,
  ) {
    super(reason === "invalidated" ? "SLOT_INVALIDATED" : "SLOT_GAP", message);
  }
}
export const SLOT_UNUSABLE_CODES = new Set(["SLOT_INVALIDATED", "SLOT_GAP"]);

const recovery = (c: PgSourceConfig) =>
  `Either accept the gap: create the slot if it is missing (SELECT pg_create_logical_replication_slot('${slotName(c)}', 'pgoutput')), DELETE FROM <state_schema>.checkpoints WHERE stream = '${pgStream(c)}' AND part = '${c.name}', restart (streaming resumes from the slot), then run \`cdc-sink repair\`; or start this source over: drop the slot if it exists, DELETE FROM <state_schema>.checkpoints WHERE stream = '${pgStream(c)}', restart (the tables are copied again, position-guarded), then run \`cdc-sink repair\` for rows deleted at the source meanwhile.`;

/**
 * Resumes an existing slot from the later of its confirmed position and the checkpoint; creates it
 * when missing, and re-creates it when its initial snapshot never completed (the checkpoint table
 * marks completion in the same transaction as the snapshot's last rows).
 *
 * Never a silent gap: once the analytics database holds a checkpoint for this source, the slot must
 * be able to give every change after it. The checkpoint is written before the slot is confirmed
 * (also when idle: sources/postgres/index.ts), so the slot's confirmed position is never past it;
 * refused with SlotUnusable: an invalidated slot (WAL removed), a missing slot, a slot confirmed
 * past the checkpoint (dropped and re-created, advanced by someone else, or the analytics database
 * restored to an earlier point), and a source whose WAL is behind the checkpoint (restored to an
 * earlier point). Versions before this one confirmed idle WAL past the checkpoint: their slots are
 * refused once as ahead_of_checkpoint, and accepting the gap (see `recovery`) is then safe.
 */
export async function prepareSlot(admin: Sql, repl: Sql, c: PgSourceConfig, stored: Map<string, bigint>, log: Logger): Promise<SlotStart> {
  const slot = slotName(c);
  const checkpoint = stored.get(c.name);
  const snapshotDone = stored.get(snapshotPart(c)) === 1n;
  const [existing] = await admin`SELECT confirmed_flush_lsn::text AS lsn, restart_lsn IS NULL AS no_restart, wal_status FROM pg_replication_slots WHERE slot_name = ${slot}`;
  const [{ current }] = (await admin`SELECT pg_current_wal_lsn()::text AS current`) as unknown as [{ current: string }];
  const at = (lsn: bigint) => `${formatLsn(lsn)}`;
  if (checkpoint !== undefined && parseLsn(current) < checkpoint)
    throw new SlotUnusable(
      slot,
      "source_behind_checkpoint",
      `source ${c.name} is at WAL position ${current}, behind the checkpoint ${at(checkpoint)} the analytics database holds for it: the source was restored to an earlier point (or is another server), and its changes since could not be told apart from those already applied. ${recovery(c)}`,
    );
  if (existing && (existing.wal_status === "lost" || existing.no_restart))
    throw new SlotUnusable(
      slot,
      "invalidated",
      `replication slot ${slot} was invalidated (wal_status ${existing.wal_status}): the source removed WAL the sink had not read yet (max_slot_wal_keep_size exceeded while it was behind or stopped); the changes in it are lost to this slot, and resuming would skip them. ${recovery(c)}`,
    );
  // a checkpoint is written only once the copy committed (streamed changes wait for it)
  if (existing && (snapshotDone || !c.snapshot || checkpoint !== undefined)) {
    const confirmed = parseLsn(existing.lsn);
    if (checkpoint !== undefined && confirmed > checkpoint)
      throw new SlotUnusable(
        slot,
        "ahead_of_checkpoint",
        `replication slot ${slot} has confirmed ${existing.lsn}, past the checkpoint ${at(checkpoint)} the analytics database holds for source ${c.name}: the slot was dropped and re-created, advanced by another consumer, or the analytics database was restored to an earlier point; the changes between are lost to this sink. ${recovery(c)}`,
      );
    return { from: checkpoint !== undefined && checkpoint > confirmed ? checkpoint : confirmed, created: false };
  }
  if (!existing && (checkpoint !== undefined || snapshotDone))
    throw new SlotUnusable(
      slot,
      "missing",
      `replication slot ${slot} is missing, but the analytics database holds ${checkpoint !== undefined ? `checkpoint ${at(checkpoint)}` : "a completed snapshot"} for source ${c.name}: the slot was dropped, and the changes since are lost to it; a new slot would start after them. ${recovery(c)}`,
    );
  if (existing) await admin`SELECT pg_drop_replication_slot(${slot})`;
  const [created] = await repl.unsafe(`CREATE_REPLICATION_SLOT ${quoteIdent(slot)} LOGICAL pgoutput ${c.snapshot ? "EXPORT_SNAPSHOT" : "NOEXPORT_SNAPSHOT"}`);
  const from = parseLsn(created!.consistent_point);
  log.info("replication slot created", { slot, consistentPoint: created!.consistent_point });
  return c.snapshot ? { from, snapshot: { name: created!.snapshot_name as string, lsn: from }, created: true } : { from, created: true };
}
