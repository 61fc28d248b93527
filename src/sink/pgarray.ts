// Array literals for the batch statements' unnest parameters, built in one pass per column.
// postgres.js would serialize a JS array itself, with two regex replaces per element: at
// 10k rows x 10 columns per batch that was the sink's largest JS cost after JSON.parse.
const SPECIAL = /["\\]/;
const SPECIAL_ALL = /["\\]/g;

/** `{"a","b",NULL}`: a text[] literal of `n` elements, element i being `get(i)`. */
export function textArray(n: number, get: (i: number) => string | null): string {
  if (!n) return "{}";
  const parts = new Array<string>(n);
  let nulls: Uint8Array | undefined;
  for (let i = 0; i < n; i++) {
    const v = get(i);
    if (v === null) (nulls ??= new Uint8Array(n))[i] = 1;
    parts[i] = v === null ? "" : SPECIAL.test(v) ? v.replace(SPECIAL_ALL, "\\$&") : v;
  }
  // the braces and quotes go on the first and last element: one join copies a large value once
  if (!nulls) {
    parts[0] = `{"${parts[0]}`;
    parts[n - 1] = `${parts[n - 1]}"}`;
    return parts.join('","');
  }
  for (let i = 0; i < n; i++) parts[i] = nulls[i] ? "NULL" : `"${parts[i]}"`;
  return `{${parts.join(",")}}`;
}

/** `{1,2,3.5}`: an int8[] or float8[] literal of `n` finite numbers or bigints. */
export function numberArray(n: number, get: (i: number) => number | bigint): string {
  const parts = new Array<number | bigint>(n);
  for (let i = 0; i < n; i++) parts[i] = get(i);
  return `{${parts.join(",")}}`;
}
