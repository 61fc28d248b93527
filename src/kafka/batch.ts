// MessageBatch: a consumed batch as the addon returns it (columns), with per-message accessors.
import type { ErrorEvent, LogEvent, RawBatch, RebalanceEvent } from "./types.ts";
import { isUtf8 } from "node:buffer";

/** A consumed batch, columnar; per-message accessors slice the shared buffers lazily. */
export class MessageBatch {
  readonly count: number;
  readonly rebalances: RebalanceEvent[];
  readonly errors: ErrorEvent[];
  readonly logs: LogEvent[];
  #raw: RawBatch;
  #keyStart: Int32Array | undefined;
  #valueStart: Int32Array | undefined;
  #keysText: string | null | undefined;
  #valuesText: string | null | undefined;
  #keysUtf8: boolean | undefined;
  #valuesUtf8: boolean | undefined;

  constructor(raw: RawBatch) {
    this.#raw = raw;
    this.count = raw.count;
    this.rebalances = raw.rebalances;
    this.errors = raw.errors;
    this.logs = raw.logs;
  }
  topic(i: number): string {
    return this.#raw.topicNames[this.#raw.topicIdx[i]!]!;
  }
  get topicNames(): readonly string[] {
    return this.#raw.topicNames;
  }
  topicIndex(i: number): number {
    return this.#raw.topicIdx[i]!;
  }
  partition(i: number): number {
    return this.#raw.partitions[i]!;
  }
  offset(i: number): number {
    return this.#raw.offsets[i]!;
  }
  timestamp(i: number): number {
    return this.#raw.timestamps[i]!;
  }
  /** Bytes of the key, `null` when the message has no key (distinct from an empty key). */
  key(i: number): Buffer | null {
    this.#keyStart ??= starts(this.#raw.keyLens);
    const len = this.#raw.keyLens[i]!;
    if (len < 0) return null;
    const s = this.#keyStart[i]!;
    return this.#raw.keys.subarray(s, s + len);
  }
  /** Bytes of the value, `null` for a tombstone. */
  value(i: number): Buffer | null {
    this.#valueStart ??= starts(this.#raw.valueLens);
    const len = this.#raw.valueLens[i]!;
    if (len < 0) return null;
    const s = this.#valueStart[i]!;
    return this.#raw.values.subarray(s, s + len);
  }
  /** The key as UTF-8 text, `null` when the message has no key. */
  keyText(i: number): string | null {
    this.#keyStart ??= starts(this.#raw.keyLens);
    // null (not ASCII-sized) is an answer too: decoding the whole buffer again per message was quadratic
    if (this.#keysText === undefined) this.#keysText = wholeText(this.#raw.keys, this.#raw.keyLens);
    return sliceText(this.#raw.keys, this.#keysText, this.#keyStart[i]!, this.#raw.keyLens[i]!);
  }
  /** The value as UTF-8 text, `null` for a tombstone. */
  valueText(i: number): string | null {
    this.#valueStart ??= starts(this.#raw.valueLens);
    if (this.#valuesText === undefined) this.#valuesText = wholeText(this.#raw.values, this.#raw.valueLens);
    return sliceText(this.#raw.values, this.#valuesText, this.#valueStart[i]!, this.#raw.valueLens[i]!);
  }
  /** False when the key's bytes are not UTF-8 (checked on the bytes: nothing is decoded). */
  keyIsUtf8(i: number): boolean {
    this.#keyStart ??= starts(this.#raw.keyLens);
    if ((this.#keysUtf8 ??= allUtf8(this.#raw.keys, this.#keyStart, this.#raw.keyLens))) return true;
    const k = this.key(i);
    return k === null || isUtf8(k);
  }
  /** False when the value's bytes are not UTF-8 (checked on the bytes: nothing is decoded). */
  valueIsUtf8(i: number): boolean {
    this.#valueStart ??= starts(this.#raw.valueLens);
    if ((this.#valuesUtf8 ??= allUtf8(this.#raw.values, this.#valueStart, this.#raw.valueLens))) return true;
    const v = this.value(i);
    return v === null || isUtf8(v);
  }
  /** Key plus value bytes of message `i`. */
  size(i: number): number {
    return Math.max(0, this.#raw.keyLens[i]!) + Math.max(0, this.#raw.valueLens[i]!);
  }
  /** Length of the value, -1 for a tombstone (no slice is made). */
  valueLength(i: number): number {
    return this.#raw.valueLens[i]!;
  }
  /** Total key + value bytes in the batch. */
  get bytes(): number {
    return this.#raw.keys.length + this.#raw.values.length;
  }
  headers(i: number): Array<[string, Buffer | null]> {
    const h = this.#raw.headers;
    if (!h) return [];
    const out: Array<[string, Buffer | null]> = [];
    let pos = 0;
    for (let j = 0; j < h.index.length; j++) {
      const len = h.lens[j]!;
      if (h.index[j] === i) out.push([h.names[j]!, len < 0 ? null : h.values.subarray(pos, pos + len)]);
      if (len > 0) pos += len;
    }
    return out;
  }
}

const LARGE_MESSAGE = 64 << 10;

/**
 * True when every message of the buffer is UTF-8, checked once for the batch: the whole buffer is,
 * and no message starts inside a character (on a continuation byte), so no message ends inside one.
 */
function allUtf8(buf: Buffer, start: Int32Array, lens: Int32Array): boolean {
  if (!isUtf8(buf)) return false;
  for (let i = 0; i < lens.length; i++) if (lens[i]! > 0 && (buf[start[i]!]! & 0xc0) === 0x80) return false;
  return true;
}

// One UTF-8 decode for the whole buffer instead of one per message. When the text has as many
// characters as the buffer has bytes, every byte decoded to exactly one character (a multi-byte
// character, or an invalid run of two or more bytes replaced by one U+FFFD, makes it shorter), so
// byte offsets are character offsets and a slice equals that message decoded alone. Otherwise
// null: messages are decoded one by one. So they are too when one is large: its text would stay
// alive, through the cached whole, as long as the batch.
function wholeText(buf: Buffer, lens: Int32Array): string | null {
  for (const len of lens) if (len >= LARGE_MESSAGE) return null;
  // bytes that are not UTF-8 somewhere: no whole decode (a large invalid record would become a string twice its size)
  if (!isUtf8(buf)) return null;
  const text = buf.toString("utf8");
  return text.length === buf.length ? text : null;
}

function sliceText(buf: Buffer, text: string | null, start: number, len: number): string | null {
  if (len < 0) return null;
  return text !== null ? text.slice(start, start + len) : buf.toString("utf8", start, start + len);
}

function starts(lens: Int32Array): Int32Array {
  const out = new Int32Array(lens.length);
  let pos = 0;
  for (let i = 0; i < lens.length; i++) {
    out[i] = pos;
    const l = lens[i]!;
    if (l > 0) pos += l;
  }
  return out;
}
