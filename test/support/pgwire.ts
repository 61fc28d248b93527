// pgoutput messages and replication CopyData frames encoded as the server sends them, for unit tests.
const PG_EPOCH_US = BigInt(Date.UTC(2000, 0, 1)) * 1000n;

class Writer {
  parts: Buffer[] = [];
  u8(v: number) {
    this.parts.push(Buffer.from([v]));
    return this;
  }
  i16(v: number) {
    const b = Buffer.alloc(2);
    b.writeInt16BE(v);
    this.parts.push(b);
    return this;
  }
  i32(v: number) {
    const b = Buffer.alloc(4);
    b.writeInt32BE(v | 0);
    this.parts.push(b);
    return this;
  }
  u64(v: bigint) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(v);
    this.parts.push(b);
    return this;
  }
  cstr(s: string) {
    this.parts.push(Buffer.from(s + "\0"));
    return this;
  }
  tuple(values: Array<string | null | undefined>) {
    this.i16(values.length);
    for (const v of values) {
      if (v === null) this.u8(0x6e);
      else if (v === undefined) this.u8(0x75);
      else {
        const b = Buffer.from(v);
        this.u8(0x74).i32(b.length);
        this.parts.push(b);
      }
    }
    return this;
  }
  done() {
    return Buffer.concat(this.parts);
  }
}

const ts = (ms: number) => BigInt(ms) * 1000n - PG_EPOCH_US;

export const pgw = {
  begin: (finalLsn: bigint, commitMs: number, xid: number) => new Writer().u8(0x42).u64(finalLsn).u64(ts(commitMs)).i32(xid).done(),
  commit: (commitLsn: bigint, endLsn: bigint, commitMs: number) => new Writer().u8(0x43).u8(0).u64(commitLsn).u64(endLsn).u64(ts(commitMs)).done(),
  relation: (oid: number, schema: string, table: string, cols: Array<{ name: string; key?: boolean; typeOid?: number; typmod?: number }>) => {
    const w = new Writer().u8(0x52).i32(oid).cstr(schema).cstr(table).u8(0x64).i16(cols.length);
    for (const c of cols) w.u8(c.key ? 1 : 0).cstr(c.name).i32(c.typeOid ?? 25).i32(c.typmod ?? -1);
    return w.done();
  },
  insert: (oid: number, values: Array<string | null | undefined>) => new Writer().u8(0x49).i32(oid).u8(0x4e).tuple(values).done(),
  update: (oid: number, values: Array<string | null | undefined>, old?: Array<string | null | undefined>) => {
    const w = new Writer().u8(0x55).i32(oid);
    if (old) w.u8(0x4f).tuple(old);
    return w.u8(0x4e).tuple(values).done();
  },
  delete: (oid: number, key: Array<string | null | undefined>) => new Writer().u8(0x44).i32(oid).u8(0x4b).tuple(key).done(),
  truncate: (oids: number[]) => {
    const w = new Writer().u8(0x54).i32(oids.length).u8(0);
    for (const o of oids) w.i32(o);
    return w.done();
  },
  /** XLogData frame around a pgoutput message */
  xlog: (walStart: bigint, walEnd: bigint, msg: Buffer) => Buffer.concat([new Writer().u8(0x77).u64(walStart).u64(walEnd).u64(0n).done(), msg]),
  keepalive: (walEnd: bigint, reply: boolean) => new Writer().u8(0x6b).u64(walEnd).u64(0n).u8(reply ? 1 : 0).done(),
};
