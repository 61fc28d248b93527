// A Debezium stream of an OLTP `orders` table, byte for byte as Kafka Connect's JsonConverter
// writes Debezium 3.6.1's events (schemaless; the full source block; ZonedTimestamp strings with
// microseconds; ~550-byte values; a tombstone after each delete), with the model of the final rows.
//
// Shapes: "realistic" — 70% creates of a new, increasing id, 25% updates (80% of them on the ~500
// most recent orders), 5% deletes; "reuse" — the same mix over a fixed set of keys, so most events
// coalesce in a batch (the old bench stream).
export interface OrderRow {
  customer_id: number;
  status: string;
  cents: number;
  created_at: string;
  updated_at: string;
}

export interface Message {
  key: string;
  value: string | null;
  partition: number;
}

const STATUSES = ["pending", "paid", "shipped", "delivered", "cancelled", "refunded"];

export class OrdersStream {
  readonly rows = new Map<number, OrderRow>();
  /** live ids in creation order (recent at the end); deleted ids are removed lazily */
  #live: number[] = [];
  #nextId = 1;
  #lsn = 30_000_000n;
  #lastCommit = 29_999_000n;
  #txId = 700;
  #seed: number;
  events = 0;

  constructor(
    readonly shape: "realistic" | "reuse",
    readonly partitions: number,
    seed = 42,
    readonly reuseKeys = 100_000,
  ) {
    this.#seed = seed;
  }

  /** mulberry32: deterministic */
  #rnd(): number {
    this.#seed = (this.#seed + 0x6d2b79f5) | 0;
    let t = Math.imul(this.#seed ^ (this.#seed >>> 15), 1 | this.#seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  #partition(id: number): number {
    let h = 2166136261;
    const s = String(id);
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
    return (h >>> 0) % this.partitions;
  }

  #pickExisting(recent: boolean): number | undefined {
    const live = this.#live;
    for (let tries = 0; tries < 20 && live.length; tries++) {
      const i = recent ? live.length - 1 - Math.floor(this.#rnd() * Math.min(500, live.length)) : Math.floor(this.#rnd() * live.length);
      const id = live[i]!;
      if (this.rows.has(id)) return id;
      live.splice(i, 1);
    }
    return undefined;
  }

  static iso(ms: number, micros: number): string {
    return `${new Date(ms).toISOString().slice(0, 19)}.${String((ms % 1000) * 1000 + micros).padStart(6, "0")}Z`;
  }

  #envelope(op: "c" | "u" | "d", id: number, before: string, after: string, nowMs: number, lsn: bigint): string {
    const us = BigInt(nowMs) * 1000n + BigInt(Math.floor(this.#rnd() * 1000));
    const source = `{"version":"3.6.1.Final","connector":"postgresql","name":"ecom-connector","ts_ms":${nowMs},"snapshot":null,"db":"ecom","sequence":"[\\"${this.#lastCommit}\\",\\"${lsn}\\"]","ts_us":${us},"ts_ns":${us * 1000n},"schema":"public","table":"orders","txId":${this.#txId},"lsn":${lsn},"xmin":null,"origin":null,"origin_lsn":null}`;
    const t = nowMs + 3;
    return `{"before":${before},"after":${after},"source":${source},"transaction":null,"op":"${op}","ts_ms":${t},"ts_us":${BigInt(t) * 1000n + 123n},"ts_ns":${BigInt(t) * 1_000_000n + 123_456n}}`;
  }

  static image(id: number, r: OrderRow): string {
    return `{"id":${id},"customer_id":${r.customer_id},"status":"${r.status}","total_amount":${r.cents / 100},"currency":"EUR","created_at":"${r.created_at}","updated_at":"${r.updated_at}"}`;
  }

  /** The next `n` events (a delete adds its tombstone), grouped in transactions of 1-3 changes. */
  next(n: number, nowMs = Date.now()): Message[] {
    const out: Message[] = [];
    let inTxn = 0;
    for (let made = 0; made < n; made++) {
      if (inTxn === 0) {
        inTxn = 1 + Math.floor(this.#rnd() * 3);
        this.#lastCommit = this.#lsn + 40n;
        this.#lsn += 100n;
        this.#txId++;
      }
      inTxn--;
      this.#lsn += 56n;
      const lsn = this.#lsn;
      const r = this.#rnd();
      let op: "c" | "u" | "d" = r < 0.7 ? "c" : r < 0.95 ? "u" : "d";
      let id: number | undefined;
      if (this.shape === "reuse") {
        id = 1 + Math.floor(this.#rnd() * this.reuseKeys);
        if (op !== "c" && !this.rows.has(id)) op = "c";
        if (op === "c" && this.rows.has(id)) op = "u";
      } else if (op === "c") id = this.#nextId++;
      else {
        id = this.#pickExisting(op === "u" && this.#rnd() < 0.8);
        if (id === undefined) {
          op = "c";
          id = this.#nextId++;
        }
      }
      const ts = OrdersStream.iso(nowMs, Math.floor(this.#rnd() * 1000));
      const partition = this.#partition(id);
      const key = `{"id":${id}}`;
      this.events++;
      if (op === "d") {
        const filler = `{"id":${id},"customer_id":0,"status":"pending","total_amount":0.0,"currency":"EUR","created_at":"1970-01-01T00:00:00Z","updated_at":"1970-01-01T00:00:00Z"}`;
        out.push({ key, value: this.#envelope("d", id, filler, "null", nowMs, lsn), partition }, { key, value: null, partition });
        this.rows.delete(id);
        continue;
      }
      const prev = this.rows.get(id);
      const row: OrderRow = {
        customer_id: prev?.customer_id ?? 1 + Math.floor(this.#rnd() * 50_000),
        status: op === "c" ? "pending" : STATUSES[1 + Math.floor(this.#rnd() * 5)]!,
        cents: prev && this.#rnd() < 0.7 ? prev.cents : Math.floor(this.#rnd() * 100_000),
        created_at: prev?.created_at ?? ts,
        updated_at: ts,
      };
      this.rows.set(id, row);
      if (op === "c" && !prev) this.#live.push(id);
      out.push({ key, value: this.#envelope(op, id, "null", OrdersStream.image(id, row), nowMs, lsn), partition });
    }
    return out;
  }

  /** The final rows' totals, to check what was applied: [rows, sum of cents]. */
  totals(): [number, number] {
    let cents = 0;
    for (const r of this.rows.values()) cents += r.cents;
    return [this.rows.size, cents];
  }
}
