import { expect, test } from "bun:test";
import { JsonError, JsonNumber, parseJson } from "./json.ts";

test("integers beyond 2^53 survive exactly, small ones stay numbers", () => {
  const v = parseJson('{"a": 9223372036854775807, "b": -9007199254740993, "c": 12, "d": 1.5e3, "s": "x\\"y", "n": [null, true, false]}') as Record<string, unknown>;
  expect(v.a).toBe(9223372036854775807n);
  expect(v.b).toBe(-9007199254740993n);
  expect(v.c).toBe(12);
  expect(v.d).toBe(1500);
  expect(v.s).toBe('x"y');
  expect(v.n).toEqual([null, true, false]);
});

test("long digit runs inside strings do not change values", () => {
  expect(parseJson('{"s": "12345678901234567890", "x": 1}')).toEqual({ s: "12345678901234567890", x: 1 });
});

test("malformed input fails with a JsonError naming the position", () => {
  expect(() => parseJson('{"a": 12345678901234567890,')).toThrow(JsonError);
  expect(() => parseJson('{"a": 12345678901234567890,')).toThrow(/position 27/);
  expect(() => parseJson("{nope")).toThrow(JsonError);
});

test("non-integers a double cannot hold keep their digits; doubles stay numbers; exponents out of range survive", () => {
  const v = parseJson('{"a": 1.0000000000000000000001, "b": 123456789012345678901234567890.123456789012345678901234567890, "c": 1e400, "d": 2.25, "e": [1.5e-3, -0.1]}') as Record<string, unknown>;
  expect(v.a).toEqual(new JsonNumber("1.0000000000000000000001"));
  expect(String(v.b)).toBe("123456789012345678901234567890.123456789012345678901234567890");
  expect(String(v.c)).toBe("1e400");
  expect(v.d).toBe(2.25);
  expect(v.e).toEqual([0.0015, -0.1]);
});

test("numbers inside strings, escaped quotes and escaped NULs are left alone", () => {
  expect(parseJson('{"s": "a\\\\\\": 12345678901234567890", "t": 12345678901234567890}')).toEqual({ s: 'a\\": 12345678901234567890', t: 12345678901234567890n });
  expect(parseJson('{"s": "\\ufdd0x", "t": 12345678901234567890}')).toEqual({ s: "\ufdd0x", t: 12345678901234567890n });
  expect(() => parseJson('{"a": 1, 12345678901234567890: 2}')).toThrow(JsonError);
});

test("duplicate keys are an error, never a silent choice of one", () => {
  expect(() => parseJson('{"a": 1, "b": {"c": 2, "c": 3}}')).toThrow(/duplicate key "c"/);
  expect(() => parseJson('{"a" : 1, "a" : 2}')).toThrow(/duplicate key "a"/);
  expect(parseJson('{"s": "x\\":y", "t": {"u": [{"v": 1}]}}')).toEqual({ s: 'x":y', t: { u: [{ v: 1 }] } });
});
