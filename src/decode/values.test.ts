import { expect, test } from "bun:test";
import { DecodeError } from "../errors.ts";
import type { ColumnType } from "../model.ts";
import { JsonNumber } from "./json.ts";
import { typmodParts } from "../sink/schema.ts";
import { ABSENT, decimalFromBase64, encodingOf, plainDecimal, toText } from "./values.ts";

const col = (type: string, extra: Partial<ColumnType> = {}): ColumnType => ({ name: "c", type, isArray: false, scale: null, precision: null, ...extra });
const adaptive = encodingOf();
const micros = encodingOf({ "time.precision.mode": "adaptive_time_microseconds" });
const connect = encodingOf({ "time.precision.mode": "connect" });

test("time.precision.mode: adaptive reads precision 0-3 as milliseconds and 4-6 as microseconds; the others as configured", () => {
  // 13:51:30.123 in time(3) arrives as milliseconds of the day under adaptive
  expect(toText(49890123, col("time", { precision: 3 }), undefined, adaptive)).toBe("13:51:30.123000");
  expect(toText(49890123456, col("time", { precision: 6 }), undefined, adaptive)).toBe("13:51:30.123456");
  expect(toText(49890123456, col("time"), undefined, adaptive)).toBe("13:51:30.123456");
  expect(toText(49890000000, col("time", { precision: 0 }), undefined, micros)).toBe("13:51:30.000000");
  expect(toText(49890123, col("time", { precision: 6 }), undefined, connect)).toBe("13:51:30.123000");
  expect(toText(86400000, col("time", { precision: 0 }), undefined, adaptive)).toBe("24:00:00.000000");
  expect(toText(1709214690123, col("timestamp", { precision: 3 }), undefined, adaptive)).toBe("2024-02-29 13:51:30.123000");
  expect(toText(1709214690123456, col("timestamp", { precision: 6 }), undefined, micros)).toBe("2024-02-29 13:51:30.123456");
  expect(toText(1709214690123, col("timestamp", { precision: 6 }), undefined, connect)).toBe("2024-02-29 13:51:30.123000");
  // a schema's semantic name wins over the mode
  expect(toText(1709214690123, col("timestamp", { precision: 6 }), { name: "io.debezium.time.Timestamp" }, adaptive)).toBe("2024-02-29 13:51:30.123000");
  expect(toText(49890123456, col("time", { precision: 0 }), { name: "io.debezium.time.MicroTime" }, connect)).toBe("13:51:30.123456");
});

test("dates and timestamps: days and epoch ticks, BC and infinite values as PostgreSQL writes them", () => {
  expect(toText(19782, col("date"))).toBe("2024-02-29");
  expect(toText(-735160, col("date"))).toBe("0044-03-15 BC");
  expect(toText(-2147472692, col("date"))).toBe("infinity");
  expect(toText(9223372036825200, col("timestamp", { precision: 0 }))).toBe("infinity");
  expect(toText(-9223372036832400, col("timestamp", { precision: 3 }))).toBe("-infinity");
  expect(toText(1709214690123, col("timestamptz", { precision: 3 }))).toBe("2024-02-29 13:51:30.123000+00");
  expect(toText("-0043-03-15T12:00:00.000000Z", col("timestamptz"))).toBe("0044-03-15 12:00:00.000000Z BC");
  expect(toText("2024-02-29T19:21:30.123456Z", col("timestamptz"))).toBe("2024-02-29T19:21:30.123456Z");
  expect(() => toText(1e300, col("timestamp"))).toThrow(/column c: /);
});

test("decimal.handling.mode: precise base64 (column, schema or money scale), variable scale, double, string with its NaN spellings", () => {
  const precise = adaptive;
  const double = encodingOf({ "decimal.handling.mode": "double" });
  const string = encodingOf({ "decimal.handling.mode": "string" });
  expect(toText("AeJA", col("numeric", { scale: 2, precision: 12 }), undefined, precise)).toBe("1234.56");
  expect(toText("AeJA", col("money"), undefined, precise)).toBe("1234.56");
  expect(toText("AeJA", col("money"), undefined, encodingOf({ "money.fraction.digits": 3 }))).toBe("123.456");
  expect(toText({ scale: 4, value: "B1vNFQ==" }, col("numeric"), undefined, precise)).toBe("12345.6789");
  expect(toText("B9A=", col("numeric"), { name: "org.apache.kafka.connect.data.Decimal", parameters: { scale: "1" } }, precise)).toBe("200.0");
  // "1234" is base64 under precise, a decimal under string
  expect(toText("1234", col("numeric", { scale: 0 }), undefined, precise)).toBe(String(0xd76df8 - 0x1000000));
  expect(toText("1234", col("numeric"), undefined, string)).toBe("1234");
  expect(toText("NAN", col("numeric"), undefined, string)).toBe("NaN");
  expect(toText("POSITIVE_INFINITY", col("numeric"), undefined, string)).toBe("Infinity");
  expect(toText("3.14159265358979323846", col("numeric"), undefined, string)).toBe("3.14159265358979323846");
  expect(toText(19.99, col("numeric"), undefined, double)).toBe("19.99");
  expect(toText("NaN", col("numeric"), undefined, double)).toBe("NaN");
  expect(toText(new JsonNumber("123456789012345678901234567890.123456789012345678901234567890"), col("numeric"), undefined, double)).toBe(
    "123456789012345678901234567890.123456789012345678901234567890",
  );
  expect(() => toText("B9A=", col("numeric"), undefined, precise)).toThrow(/needs a scale/);
  expect(() => toText("12.5", col("numeric", { scale: 1 }), undefined, precise)).toThrow(DecodeError);
  // more decimals than the column's scale keeps would be rounded by PostgreSQL: refused; trailing zeros and exponents count exactly
  expect(() => toText("1.234", col("numeric", { scale: 2, precision: 12 }), undefined, string)).toThrow(/scale 2 keeps/);
  expect(() => toText(0.125, col("numeric", { scale: 2, precision: 12 }), undefined, double)).toThrow(DecodeError);
  expect(toText("1.2300", col("numeric", { scale: 2, precision: 12 }), undefined, string)).toBe("1.2300");
  expect(toText("1.234e1", col("numeric", { scale: 2, precision: 12 }), undefined, string)).toBe("1.234e1");
  expect(() => toText("1.2345e1", col("numeric", { scale: 2, precision: 12 }), undefined, string)).toThrow(DecodeError);
  expect(toText({ scale: 4, value: "B1vNFQ==" }, col("numeric", { scale: 4, precision: 10 }), undefined, precise)).toBe("12345.6789");
  // a scale no numeric has (a mutated schema) is a decode error, never a string of 10^15 zeros
  expect(() => toText("gAAAAAAAAAA=", col("numeric"), { name: "org.apache.kafka.connect.data.Decimal", parameters: { scale: "-4502186412069662" } }, precise)).toThrow(/scale -4502186412069662 is outside/);
  expect(() => toText({ scale: 16384, value: "AQ==" }, col("numeric"), undefined, precise)).toThrow(DecodeError);
  expect(toText({ scale: -3, value: "AQ==" }, col("numeric"), undefined, precise)).toBe("1000");
  // numeric(6,-2) (PostgreSQL 15+) keeps multiples of 100: its typmod's scale is signed
  const negative = col("numeric", typmodParts("numeric", ((6 << 16) | (-2 & 0x7ff)) + 4));
  expect(negative.scale).toBe(-2);
  expect(typmodParts("numeric", ((12 << 16) | 2) + 4)).toEqual({ precision: 12, scale: 2 });
  expect(toText("1200", negative, undefined, string)).toBe("1200");
  expect(toText("12e2", negative, undefined, string)).toBe("12e2");
  expect(() => toText("1250", negative, undefined, string)).toThrow(/not a multiple of 1e2/);
  expect(() => toText("1234.5", negative, undefined, string)).toThrow(DecodeError);
  expect(decimalFromBase64("//8=", 0)).toBe("-1");
  expect(decimalFromBase64(Buffer.from("1a2b3c4d5e6f708192a3b4c5", "hex").toString("base64"), 6)).toBe("8098878834791447959498.372293");
});

test("binary.handling.mode: base64, url-safe base64 and hex, each recognising its own unchanged-TOAST form", () => {
  const bytes = [0x01, 0x02, 0xfe, 0xff];
  expect(toText("AQL+/w==", col("bytea"), undefined, encodingOf({ "binary.handling.mode": "bytes" }))).toBe("\\x0102feff");
  expect(toText("AQL-_w==", col("bytea"), undefined, encodingOf({ "binary.handling.mode": "base64-url-safe" }))).toBe(`\\x${Buffer.from(bytes).toString("hex")}`);
  expect(toText("0102FEff", col("bytea"), undefined, encodingOf({ "binary.handling.mode": "hex" }))).toBe("\\x0102feff");
  expect(() => toText("0102feff", col("bytea"), undefined, encodingOf({ "binary.handling.mode": "base64" }))).not.toThrow();
  expect(() => toText("AQL+/w==", col("bytea"), undefined, encodingOf({ "binary.handling.mode": "hex" }))).toThrow(/not hex/);
  expect(toText(Buffer.from("__debezium_unavailable_value").toString("base64"), col("bytea"), undefined, encodingOf({ "binary.handling.mode": "bytes" }))).toBe(ABSENT);
  expect(toText("__debezium_unavailable_value", col("bytea"), undefined, encodingOf({ "binary.handling.mode": "hex" }))).toBe(ABSENT);
  // with a schema, type bytes is always base64
  expect(toText("AQL+/w==", col("bytea"), { type: "bytes" }, encodingOf({ "binary.handling.mode": "hex" }))).toBe("\\x0102feff");
});

test("interval.handling.mode: microseconds or ISO-8601", () => {
  expect(toText(37091106789000, col("interval"))).toBe("37091106789000 microseconds");
  expect(toText("P1Y2M3DT4H5M6.789S", col("interval"), undefined, encodingOf({ "interval.handling.mode": "string" }))).toBe("P1Y2M3DT4H5M6.789S");
  expect(() => toText("1 day", col("interval"))).toThrow(/ISO-8601/);
});

test("integers stay exact; json keeps its text and numbers; arrays as literals", () => {
  expect(toText(9223372036854775807n, col("int8"))).toBe("9223372036854775807");
  expect(toText('{"a":1}', col("jsonb"))).toBe('{"a":1}');
  expect(toText({ a: new JsonNumber("1.0000000000000000000001"), b: 9007199254740993n }, col("jsonb"))).toBe('{"a":1.0000000000000000000001,"b":9007199254740993}');
  expect(toText(["a", 'b"c', null], col("text", { isArray: true }))).toBe('{"a","b\\"c",NULL}');
  expect(toText([{ scale: 1, value: "Dw==" }], col("numeric", { isArray: true }))).toBe('{"1.5"}');
  expect(() => toText("x", col("int4"))).toThrow(/column c: expected an integer/);
});

test("the unchanged-TOAST placeholder means absent, in every form, and can be configured", () => {
  expect(toText("__debezium_unavailable_value", col("text"))).toBe(ABSENT);
  expect(toText(["__debezium_unavailable_value"], col("text", { isArray: true }))).toBe(ABSENT);
  expect(toText("__debezium_unavailable_value", col("jsonb"))).toBe(ABSENT);
  const custom = encodingOf({ "unavailable.value.placeholder": "__unchanged_toast__" });
  expect(toText("__unchanged_toast__", col("text"), undefined, custom)).toBe(ABSENT);
  expect(toText("__debezium_unavailable_value", col("text"), undefined, custom)).toBe("__debezium_unavailable_value");
  expect(toText(Buffer.from("__unchanged_toast__").toString("base64"), col("bytea"), undefined, custom)).toBe(ABSENT);
  expect(toText(null, col("text"))).toBe(null);
});

test("plainDecimal writes exponents out exactly; money reads no exponent", () => {
  expect(plainDecimal("-9.223372036854776E16")).toBe("-92233720368547760");
  expect(plainDecimal("1.5e-3")).toBe("0.0015");
  expect(plainDecimal("12")).toBe("12");
  expect(toText(-9.223372036854776e16, col("money"), undefined, encodingOf({ "decimal.handling.mode": "double" }))).toBe("-92233720368547760");
});
