import { expect, test } from "bun:test";
import { pgw } from "../../test/support/pgwire.ts";
import { formatLsn, parseCopyData, parseLsn, parsePgOutput, standbyStatus } from "./pgoutput.ts";

test("pgoutput messages parse to their fields; unchanged TOAST is undefined, NULL is null", () => {
  const t = Date.UTC(2024, 4, 1, 12, 0, 0, 123);
  expect(parsePgOutput(pgw.begin(0x1_0000_0200n, t, 77))).toEqual({ tag: "begin", finalLsn: 0x1_0000_0200n, commitTime: t, xid: 77 });
  expect(parsePgOutput(pgw.commit(0x200n, 0x230n, t))).toEqual({ tag: "commit", commitLsn: 0x200n, endLsn: 0x230n, commitTime: t });
  expect(parsePgOutput(pgw.relation(16384, "public", "orders", [{ name: "id", key: true, typeOid: 20 }, { name: "note", typeOid: 1043, typmod: 104 }]))).toEqual({
    tag: "relation",
    relation: {
      oid: 16384,
      schema: "public",
      table: "orders",
      replicaIdentity: "d",
      columns: [
        { isKey: true, name: "id", typeOid: 20, typmod: -1 },
        { isKey: false, name: "note", typeOid: 1043, typmod: 104 },
      ],
    },
  });
  expect(parsePgOutput(pgw.insert(16384, ["1", "ünïcødé"]))).toEqual({ tag: "insert", relationOid: 16384, values: ["1", "ünïcødé"] });
  expect(parsePgOutput(pgw.update(16384, ["1", undefined], ["1", "old"]))).toEqual({ tag: "update", relationOid: 16384, values: ["1", undefined] });
  expect(parsePgOutput(pgw.delete(16384, ["1", null]))).toEqual({ tag: "delete", relationOid: 16384, values: ["1", null] });
  expect(parsePgOutput(pgw.truncate([16384, 16390]))).toEqual({ tag: "truncate", relationOids: [16384, 16390] });
});

test("CopyData framing: XLogData carries the end of WAL and a message; keepalives ask for a reply; status updates encode the position", () => {
  const x = parseCopyData(pgw.xlog(0x100n, 0xfffff_ffff0n, pgw.insert(1, ["a"])));
  expect(x).toEqual({ kind: "xlog", walEnd: 0xfffff_ffff0n, msg: { tag: "insert", relationOid: 1, values: ["a"] } });
  expect(parseCopyData(pgw.keepalive(0x500n, true))).toEqual({ kind: "keepalive", walEnd: 0x500n, replyRequested: true });
  const s = standbyStatus(0xffff_ffff_ffff_fff0n, Date.UTC(2000, 0, 1) + 1);
  expect(s[0]).toBe(0x72);
  expect(s.readBigUInt64BE(1)).toBe(0xffff_ffff_ffff_fff0n);
  expect(s.readBigUInt64BE(17)).toBe(0xffff_ffff_ffff_fff0n);
  expect(s.readBigUInt64BE(25)).toBe(1000n);
  expect(formatLsn(0x1_0000_00a0n)).toBe("1/A0");
  expect(parseLsn("FFFFFFFF/FFFFFFFF")).toBe(0xffff_ffff_ffff_ffffn);
});
