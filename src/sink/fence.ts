// Zombie fencing. An instance that takes a partition over claims it: the partition's checkpoint row
// gets a new generation, which the instance remembers. Every apply transaction locks its checkpoint
// rows and compares their generation with the one this instance claimed: a stopped instance that
// wakes up after another took its partitions (a zombie) finds a newer generation and commits
// nothing — not even the events the new owner has not reached yet.
import { CdcError } from "../errors.ts";

export class Fenced extends CdcError {
  constructor(readonly parts: string[]) {
    super("FENCED", `another instance claimed ${parts.join(", ")} since this one did: the batch is dropped, uncommitted`);
  }
}

/** The generation this instance claimed per checkpoint part (partKey); parts without one are not fenced. */
export class Fences {
  readonly #claimed = new Map<string, bigint>();
  /**
   * The checkpoint this instance expects the database to hold per part: read at its claim, then
   * what it committed. The database holding less lost commits (CheckpointLost).
   */
  readonly positions = new Map<string, bigint>();
  /** Kept after a revoke: a batch still in flight for the part is checked against the next owner's claim. */
  set(part: string, generation: bigint, position?: bigint): void {
    this.#claimed.set(part, generation);
    if (position === undefined) this.positions.delete(part);
    else this.positions.set(part, position);
  }
  get(part: string): bigint | undefined {
    return this.#claimed.get(part);
  }
}

/**
 * The analytics database holds an older checkpoint than this instance committed, or none: it lost
 * acknowledged commits (a crash with fsync off, a failover to an asynchronous standby, a restore).
 * The batch is dropped uncommitted and the source must read again from what the database holds.
 */
export class CheckpointLost extends CdcError {
  constructor(readonly lost: Array<{ part: string; committed: bigint; stored: bigint | undefined }>) {
    super(
      "CHECKPOINT_LOST",
      `the analytics database lost committed batches: ${lost
        .slice(0, 5)
        .map((l) => `${l.part} committed up to ${l.committed}, now ${l.stored ?? "no checkpoint"}`)
        .join("; ")}${lost.length > 5 ? ` (+${lost.length - 5} parts)` : ""}`,
    );
  }
}
