import { expect, test } from "bun:test";
import { numberArray, textArray } from "./pgarray.ts";

const lit = (xs: (string | null)[]) => textArray(xs.length, (i) => xs[i]!);

test("text[] literals quote every element, escape quotes and backslashes, and leave NULL bare", () => {
  expect(lit([])).toBe("{}");
  expect(lit(["a", "b c"])).toBe('{"a","b c"}');
  expect(lit(['say "hi"', "C:\\tmp"])).toBe('{"say \\"hi\\"","C:\\\\tmp"}');
  expect(lit([null, "NULL", ""])).toBe('{NULL,"NULL",""}');
});

test("number literals", () => {
  expect(numberArray(0, () => 0)).toBe("{}");
  expect(numberArray(3, (i) => [-1, 0, 2 ** 53 - 1][i]!)).toBe("{-1,0,9007199254740991}");
  expect(numberArray(1, () => 1732420000123.456)).toBe("{1732420000123.456}");
});
