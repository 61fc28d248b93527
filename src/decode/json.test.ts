import { expect, test } from "bun:test";
import { JsonError, parseJson } from "./json.ts";

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
