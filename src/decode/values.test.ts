import { expect, test } from "bun:test";
import { DecodeError } from "../errors.ts";
import type { ColumnType } from "../model.ts";
import { ABSENT, decimalFromBase64, toText } from "./values.ts";

const col = (type: string, extra: Partial<ColumnType> = {}): ColumnType => ({ name: "c", type, isArray: false, scale: null, precision: null, ...extra });

test("dates, timestamps and times decode exactly by column type", () => {
  expect(toText(19723, col("date"))).toBe("2024-01-01");
  expect(toText(-1, col("date"))).toBe("1969-12-31");
  expect(toText(1704103200123456, col("timestamp"))).toBe("2024-01-01 10:00:00.123456");
  expect(toText(1704103200123, col("timestamp"))).toBe("2024-01-01 10:00:00.123000");
  expect(toText(1704103200123, col("timestamp"), { name: "io.debezium.time.Timestamp" })).toBe("2024-01-01 10:00:00.123000");
  expect(toText("2024-01-01T10:00:00.5Z", col("timestamptz"))).toBe("2024-01-01T10:00:00.5Z");
  expect(toText(36_000_000_000, col("time"))).toBe("10:00:00.000000");
});

test("numerics from doubles, base64 unscaled bytes (column or schema scale) and NaN", () => {
  expect(toText(19.99, col("numeric"))).toBe("19.99");
  expect(toText("B9A=", col("numeric", { scale: 2 }))).toBe("20.00");
  expect(toText("+A==", col("numeric", { scale: 2 }))).toBe("-0.08");
  expect(toText("B9A=", col("numeric"), { name: "org.apache.kafka.connect.data.Decimal", parameters: { scale: "1" } })).toBe("200.0");
  expect(toText("NaN", col("numeric"))).toBe("NaN");
  expect(decimalFromBase64("AQA=", 1)).toBe("25.6");
  expect(decimalFromBase64("//8=", 0)).toBe("-1");
  expect(decimalFromBase64(Buffer.from("1a2b3c4d5e6f708192a3b4c5", "hex").toString("base64"), 6)).toBe("8098878834791447959498.372293");
  expect(() => toText("B9A=", col("numeric"))).toThrow(DecodeError);
});

test("big integers stay exact; json stays text; bytea from base64; arrays as literals", () => {
  expect(toText(9223372036854775807n, col("int8"))).toBe("9223372036854775807");
  expect(toText('{"a":1}', col("jsonb"))).toBe('{"a":1}');
  expect(toText("3q2+7w==", col("bytea"))).toBe("\\xdeadbeef");
  expect(toText(["a", 'b"c', null], col("text", { isArray: true }))).toBe('{"a","b\\"c",NULL}');
  expect(toText([1, 2], col("int4", { isArray: true }))).toBe('{"1","2"}');
  expect(() => toText("x", col("int4"))).toThrow(/column c: expected an integer/);
});

test("the unchanged-TOAST placeholder means absent, in every form", () => {
  expect(toText("__debezium_unavailable_value", col("text"))).toBe(ABSENT);
  expect(toText(["__debezium_unavailable_value"], col("text", { isArray: true }))).toBe(ABSENT);
  expect(toText("__debezium_unavailable_value", col("jsonb"))).toBe(ABSENT);
  expect(toText(Buffer.from("__debezium_unavailable_value").toString("base64"), col("bytea"))).toBe(ABSENT);
  expect(toText(null, col("text"))).toBe(null);
});
