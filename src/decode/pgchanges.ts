// pgoutput messages -> changes: the twin of decode/debezium.ts for the
// PostgreSQL source. Stateful per source: relation messages describe the tables, BEGIN gives the
// commit position of the changes that follow.
//
// Positions: a streamed change is (commit LSN of its transaction, index within it); transactions
// arrive in commit order, so this orders every change of a key as the source committed them. The
// snapshot holds exactly the transactions committed before the slot's consistent point S, and every
// streamed transaction commits after S: snapshot rows (copied by sources/postgres/snapshot.ts) are
// (0, S), below any streamed change.
//
// Schema: the first relation message of a mapped table, and every one whose columns or types
// differ from the last, stops decoding with the table's columns and types for the sink to judge
// (sink/evolve.ts). A mapping the sink stopped is held: its changes are not applied and the
// source's checkpoint stays at the end of the last transaction before its first held change, so
// a restart reads them again (the other tables' changes after it are applied now, and again then:
// their rows' positions make the second time a no-op).
import type { ChangeBatch } from "../batch.ts";
import { type Change, type ColumnType, type Coord, Kind, partKey, type SchemaChange, type Target } from "../model.ts";
import type { Decoder, DecodeStop } from "../pipeline.ts";
import type { PgOutputMessage, Relation } from "./pgoutput.ts";
import { roundedByScale } from "./values.ts";

/** What the PostgreSQL source reads: replication messages, tagged with their source (snapshot rows go straight to the sink by COPY). */
export type PgRecord =
  | { kind: "xlog"; source: string; msg: PgOutputMessage }
  /** the snapshot's rows are committed: the checkpoint may say so */
  | { kind: "snapshot-done"; source: string }
  /** the replication connection was re-established at `from`: a transaction cut off is sent again in full */
  | { kind: "restart"; source: string; from: bigint };

export interface PgRecords {
  readonly count: number;
  readonly items: PgRecord[];
}

export interface PgSourceInfo {
  name: string;
  /** checkpoint stream of the source: pg:<slot> */
  stream: string;
  /** deprecated, unused: each mapping's schema_changes decides */
  newColumns?: "ignore" | "add";
}

interface SourceState {
  info: PgSourceInfo;
  relations: Map<number, Relation>;
  txn: { commitLsn: bigint; commitTime: number; seq: bigint } | undefined;
  /** end LSN of the last transaction read: where the source resumes after it */
  readEnd: bigint;
  snapshotPart: string;
  /** a stopped mapping's first held change: the checkpoint of this source goes no further than the end of the transaction before it */
  held: bigint | undefined;
}

const tableKey = (source: string, table: string) => `${source}\u0000${table}`;

/** Per target, its numeric(p,s) columns: most tables have none or few, so most changes skip the check. */
const scaledColumns = new WeakMap<Target, Map<string, ColumnType>>();
function scaledOf(t: Target): Map<string, ColumnType> {
  let m = scaledColumns.get(t);
  if (!m) {
    m = new Map([...t.table.columns.values()].filter((c) => c.type === "numeric" && c.scale !== null && !c.isArray).map((c) => [c.name, c]));
    scaledColumns.set(t, m);
  }
  return m;
}

/** The first value a numeric(p,s) column of the target would round, as a dead letter's error. */
function roundedColumn(t: Target, cols: string[], vals: (string | null)[]): string | undefined {
  const scaled = scaledOf(t);
  if (!scaled.size) return undefined;
  for (let i = 0; i < cols.length; i++) {
    const col = scaled.get(cols[i]!);
    const v = vals[i];
    if (!col || v === null || v === undefined) continue;
    const why = roundedByScale(v, col);
    if (why) return `column ${col.name}: ${why}`;
  }
  return undefined;
}

export function createPgChangeDecoder(deps: {
  sources: PgSourceInfo[];
  targets: Target[];
  onConsumed?: (label: string, n: number) => void;
}): Decoder<PgRecords> {
  const targets = new Map<string, Target>();
  for (const t of deps.targets) targets.set(tableKey(t.mapping.source!, t.mapping.source_table!), t);
  const states = new Map<string, SourceState>();
  for (const info of deps.sources) states.set(info.name, { info, relations: new Map(), txn: undefined, readEnd: 0n, snapshotPart: `${info.name}#snapshot`, held: undefined });
  /** per table: the columns and types of the relation last judged */
  const judged = new Map<string, string>();

  /** The relation's mapped columns and their types, for the sink to judge, unless they are what was judged last. */
  function schemaRequest(key: string, rel: Relation, t: Target): SchemaChange | undefined {
    const sig = rel.columns.map((c) => `${c.name}:${c.typeOid}:${c.typmod}`).join(",");
    if (judged.get(key) === sig) return undefined;
    judged.set(key, sig);
    const add: SchemaChange["add"] = [];
    for (const c of rel.columns)
      if (!t.mapping.columns || t.mapping.columns.includes(c.name) || t.keyFields.has(c.name)) add.push({ source: c.name, column: t.mapping.rename[c.name] ?? c.name, typeOid: c.typeOid, typmod: c.typmod });
    return add.length ? { target: t, add } : undefined;
  }

  /** A change of a stopped mapping: not applied; the source resumes before its transaction. */
  function hold(src: SourceState): void {
    if (src.held === undefined || src.readEnd < src.held) src.held = src.readEnd;
  }

  /** One replication message; returns a columns request when the analytics table must change first. */
  function message(src: SourceState, m: PgOutputMessage, batch: ChangeBatch, now: number): SchemaChange | undefined {
    const stream = src.info.stream;
    switch (m.tag) {
      case "begin":
        src.txn = { commitLsn: m.finalLsn, commitTime: m.commitTime, seq: 0n };
        return;
      case "commit":
        batch.advance({ stream, part: src.info.name, position: m.commitLsn }, m.endLsn, 0, now);
        src.readEnd = m.endLsn;
        src.txn = undefined;
        return;
      case "relation": {
        src.relations.set(m.relation.oid, m.relation);
        const key = tableKey(src.info.name, `${m.relation.schema}.${m.relation.table}`);
        const t = targets.get(key);
        return t && !t.stopped ? schemaRequest(key, m.relation, t) : undefined;
      }
      case "truncate": {
        if (!src.txn) return;
        for (const oid of m.relationOids) {
          const rel = src.relations.get(oid);
          const t = rel && targets.get(tableKey(src.info.name, `${rel.schema}.${rel.table}`));
          if (!t) continue;
          if (t.stopped) {
            hold(src);
            continue;
          }
          const coord: Coord = { stream, part: src.info.name, position: src.txn.commitLsn };
          batch.add({ target: t, kind: Kind.Truncate, key: [], keyText: "", commitLsn: src.txn.commitLsn, lsn: ++src.txn.seq, sourceTs: src.txn.commitTime, coord }, now);
        }
        return;
      }
      case "insert":
      case "update":
      case "delete": {
        const rel = src.relations.get(m.relationOid);
        const t = rel && targets.get(tableKey(src.info.name, `${rel.schema}.${rel.table}`));
        if (!t || !src.txn) return;
        if (t.stopped) {
          hold(src);
          return;
        }
        const coord: Coord = { stream, part: src.info.name, position: src.txn.commitLsn };
        // inside a transaction the part resumes at the end of the last one read; its COMMIT moves it
        batch.advance(coord, src.readEnd, 0, now);
        const del = m.tag === "delete";
        const cols: string[] = [];
        const vals: (string | null)[] = [];
        const key: (string | null)[] = new Array(t.key.length).fill(null);
        let partial = false;
        rel.columns.forEach((c, i) => {
          const v = m.values[i];
          const keyCol = t.keyFields.get(c.name);
          if (keyCol !== undefined && v !== undefined) key[t.keyIndex.get(keyCol)!] = v;
          const col = t.columns.get(c.name);
          if (col === undefined || del) return;
          // undefined: an unchanged TOAST value, left out (the stored value stays)
          if (v === undefined) partial = true;
          else {
            cols.push(col);
            vals.push(v);
          }
        });
        const change: Change = { target: t, kind: del ? Kind.Delete : Kind.Upsert, key, keyText: JSON.stringify(key), commitLsn: src.txn.commitLsn, lsn: ++src.txn.seq, sourceTs: src.txn.commitTime, coord };
        const rounded = del ? undefined : roundedColumn(t, cols, vals);
        if (rounded) {
          // as the Kafka path does: a value the column would round is never stored rounded
          batch.deadLetter({ coord, table: t.table.name, stage: "decode", key: change.keyText, value: JSON.stringify(Object.fromEntries(cols.map((c, i) => [c, vals[i]]))), error: rounded, code: "DECODE" });
          return;
        }
        if (!del) {
          change.cols = cols;
          change.vals = vals;
          if (partial) change.partial = true;
        }
        batch.add(change, now);
        return;
      }
    }
  }

  return {
    decode(records: PgRecords, batch: ChangeBatch, from: number, to: number): DecodeStop | undefined {
      const now = Date.now();
      const items = records.items;
      const consumed = new Map<string, number>();
      const count = (label: string) => consumed.set(label, (consumed.get(label) ?? 0) + 1);
      let stop: DecodeStop | undefined;
      for (let i = from; i < to; i++) {
        const r = items[i]!;
        const src = states.get(r.source)!;
        if (r.kind === "snapshot-done") {
          batch.advance({ stream: src.info.stream, part: src.snapshotPart, position: 0n }, 1n, 0, now);
        } else if (r.kind === "restart") {
          src.txn = undefined;
          src.readEnd = r.from;
        } else {
          if (r.msg.tag === "insert" || r.msg.tag === "update" || r.msg.tag === "delete") {
            const rel = src.relations.get(r.msg.relationOid);
            if (rel) count(`${r.source}.${rel.schema}.${rel.table}`);
          }
          const request = message(src, r.msg, batch, now);
          if (request) {
            // the relation is known now; the changes after it wait until the table has the columns
            stop = { at: i + 1, request };
            break;
          }
        }
      }
      for (const [label, n] of consumed) deps.onConsumed?.(label, n);
      for (const src of states.values()) {
        if (src.held === undefined) continue;
        const p = batch.parts.get(partKey({ stream: src.info.stream, part: src.info.name }));
        if (p && p.next > src.held) p.next = src.held;
      }
      return stop;
    },
    retarget(t: Target): void {
      targets.set(tableKey(t.mapping.source!, t.mapping.source_table!), t);
    },
  };
}
