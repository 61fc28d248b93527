// The one retry loop: exponential backoff with jitter, capped, driven by [retry], stopped by an AbortSignal.
import { Stopped } from "./errors.ts";

export interface RetryPolicy {
  initialMs: number;
  maxMs: number;
}

/** Waits `ms`, or less when `signal` aborts (then it resolves, it does not throw). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** Successive waits: initial, doubling up to max, each drawn from [d/2, d] so that instances spread out. */
export class Backoff {
  #delay: number;
  constructor(readonly policy: RetryPolicy) {
    this.#delay = policy.initialMs;
  }
  next(): number {
    const d = this.#delay;
    this.#delay = Math.min(d * 2, this.policy.maxMs);
    return Math.round(d / 2 + Math.random() * (d / 2));
  }
  reset(): void {
    this.#delay = this.policy.initialMs;
  }
}

/**
 * Runs `fn` until it succeeds. After each failure `onError` decides: return normally to retry after
 * the next backoff wait, or throw to give up. An abort of `signal` ends the loop with `Stopped`.
 */
export async function retry<T>(
  fn: (attempt: number) => Promise<T>,
  opts: {
    policy: RetryPolicy;
    signal?: AbortSignal;
    onError(e: unknown, attempt: number, waitMs: number): void;
    /** ends a wait early: the dependency is back */
    wake?: () => Promise<void>;
  },
): Promise<T> {
  const backoff = new Backoff(opts.policy);
  for (let attempt = 1; ; attempt++) {
    if (opts.signal?.aborted) throw new Stopped();
    try {
      return await fn(attempt);
    } catch (e) {
      if (e instanceof Stopped) throw e;
      const wait = backoff.next();
      opts.onError(e, attempt, wait);
      await (opts.wake ? Promise.race([sleep(wait, opts.signal), opts.wake()]) : sleep(wait, opts.signal));
    }
  }
}
