// The replication protocol's wire format: CopyData framing (XLogData, keepalive, standby status)
// and pgoutput (protocol v1) messages. Column values stay PostgreSQL's exact text.

export interface RelationColumn {
  name: string;
  isKey: boolean;
  typeOid: number;
  typmod: number;
}
export interface Relation {
  oid: number;
  schema: string;
  table: string;
  replicaIdentity: string;
  columns: RelationColumn[];
}

/** null: SQL NULL; undefined: unchanged TOAST value (not sent). */
export type TupleValue = string | null | undefined;

export type PgOutputMessage =
  | { tag: "begin"; finalLsn: bigint; commitTime: number; xid: number }
  | { tag: "commit"; commitLsn: bigint; endLsn: bigint; commitTime: number }
  | { tag: "relation"; relation: Relation }
  | { tag: "insert"; relationOid: number; values: TupleValue[] }
  | { tag: "update"; relationOid: number; values: TupleValue[] }
  | { tag: "delete"; relationOid: number; values: TupleValue[] }
  | { tag: "truncate"; relationOids: number[] }
  | { tag: "other"; code: string };

const PG_EPOCH_MS = Date.UTC(2000, 0, 1);
const utf8 = new TextDecoder();

class Reader {
  i = 0;
  constructor(readonly b: Uint8Array) {}
  u8(): number {
    return this.b[this.i++]!;
  }
  i16(): number {
    const v = (this.b[this.i]! << 8) | this.b[this.i + 1]!;
    this.i += 2;
    return v;
  }
  i32(): number {
    const v = (this.b[this.i]! << 24) | (this.b[this.i + 1]! << 16) | (this.b[this.i + 2]! << 8) | this.b[this.i + 3]!;
    this.i += 4;
    return v;
  }
  u64(): bigint {
    const hi = BigInt(this.i32() >>> 0);
    const lo = BigInt(this.i32() >>> 0);
    return (hi << 32n) | lo;
  }
  time(): number {
    return PG_EPOCH_MS + Number(this.u64()) / 1000;
  }
  cstr(): string {
    const end = this.b.indexOf(0, this.i);
    const s = utf8.decode(this.b.subarray(this.i, end));
    this.i = end + 1;
    return s;
  }
  tuple(): TupleValue[] {
    const n = this.i16();
    const out: TupleValue[] = new Array(n);
    for (let c = 0; c < n; c++) {
      const kind = this.u8();
      if (kind === 0x6e) out[c] = null; // n
      else if (kind === 0x75) out[c] = undefined; // u: unchanged toast
      else {
        const len = this.i32();
        out[c] = utf8.decode(this.b.subarray(this.i, this.i + len));
        this.i += len;
      }
    }
    return out;
  }
}

export function parsePgOutput(b: Uint8Array): PgOutputMessage {
  const r = new Reader(b);
  const tag = String.fromCharCode(r.u8());
  switch (tag) {
    case "B":
      return { tag: "begin", finalLsn: r.u64(), commitTime: r.time(), xid: r.i32() };
    case "C": {
      r.u8();
      return { tag: "commit", commitLsn: r.u64(), endLsn: r.u64(), commitTime: r.time() };
    }
    case "R": {
      const oid = r.i32() >>> 0;
      const schema = r.cstr();
      const table = r.cstr();
      const replicaIdentity = String.fromCharCode(r.u8());
      const n = r.i16();
      const columns: RelationColumn[] = [];
      for (let c = 0; c < n; c++) {
        const flags = r.u8();
        columns.push({ isKey: (flags & 1) === 1, name: r.cstr(), typeOid: r.i32() >>> 0, typmod: r.i32() });
      }
      return { tag: "relation", relation: { oid, schema, table, replicaIdentity, columns } };
    }
    case "I": {
      const relationOid = r.i32() >>> 0;
      r.u8(); // 'N'
      return { tag: "insert", relationOid, values: r.tuple() };
    }
    case "U": {
      const relationOid = r.i32() >>> 0;
      let k = r.u8();
      if (k === 0x4b || k === 0x4f) {
        r.tuple(); // old key / old row: never used for row data
        k = r.u8();
      }
      return { tag: "update", relationOid, values: r.tuple() };
    }
    case "D": {
      const relationOid = r.i32() >>> 0;
      r.u8(); // 'K' or 'O'
      return { tag: "delete", relationOid, values: r.tuple() };
    }
    case "T": {
      const n = r.i32();
      r.u8();
      const relationOids: number[] = [];
      for (let i = 0; i < n; i++) relationOids.push(r.i32() >>> 0);
      return { tag: "truncate", relationOids };
    }
    default:
      return { tag: "other", code: tag };
  }
}

/** What the server sends inside the replication COPY stream. */
export type CopyData =
  | { kind: "xlog"; walEnd: bigint; msg: PgOutputMessage }
  | { kind: "keepalive"; walEnd: bigint; replyRequested: boolean }
  | { kind: "other"; code: number };

export function parseCopyData(d: Uint8Array): CopyData {
  const view = new DataView(d.buffer, d.byteOffset, d.byteLength);
  // XLogData: 'w', start LSN, end of WAL, send time, pgoutput message
  if (d[0] === 0x77) return { kind: "xlog", walEnd: view.getBigUint64(9), msg: parsePgOutput(d.subarray(25)) };
  // keepalive: 'k', end of WAL, send time, reply requested
  if (d[0] === 0x6b) return { kind: "keepalive", walEnd: view.getBigUint64(1), replyRequested: d[17] === 1 };
  return { kind: "other", code: d[0]! };
}

/** Standby status update: written, flushed and applied positions all `lsn`; no reply requested. */
export function standbyStatus(lsn: bigint, nowMs = Date.now()): Buffer {
  const b = Buffer.alloc(34);
  b[0] = 0x72; // 'r'
  b.writeBigUInt64BE(lsn, 1);
  b.writeBigUInt64BE(lsn, 9);
  b.writeBigUInt64BE(lsn, 17);
  b.writeBigUInt64BE(BigInt(nowMs - PG_EPOCH_MS) * 1000n, 25);
  b[33] = 0;
  return b;
}

export const formatLsn = (lsn: bigint): string => `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
export function parseLsn(s: string): bigint {
  const [hi, lo] = s.split("/");
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}
