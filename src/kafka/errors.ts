// KafkaError and the wrappers that turn the addon's plain errors into it.

/** Error from librdkafka, carrying its error name (e.g. `ERR__TRANSPORT`, `ERR__UNKNOWN_PROPERTY`). */
export class KafkaError extends Error {
  override name = "KafkaError";
  readonly code: string;
  readonly errno: number | undefined;
  readonly property: string | undefined;
  readonly fatal: boolean;
  readonly retriable: boolean;
  constructor(message: string, code: string, extra: { errno?: number; property?: string; fatal?: boolean; retriable?: boolean } = {}) {
    super(message);
    this.code = code;
    this.errno = extra.errno;
    this.property = extra.property;
    this.fatal = extra.fatal ?? false;
    this.retriable = extra.retriable ?? false;
  }
}

function wrap(e: unknown): KafkaError {
  if (e instanceof KafkaError) return e;
  const x = e as { message?: string; code?: string; errno?: number; property?: string; fatal?: boolean; retriable?: boolean };
  const msg = x.property ? `${x.property}: ${x.message}` : (x.message ?? String(e));
  return new KafkaError(msg, x.code ?? "ERR__FAIL", x);
}

/** Awaits an addon call; its errors become KafkaErrors. */
export async function call<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw wrap(e);
  }
}
/** Runs a synchronous addon call; its errors become KafkaErrors. */
export function callSync<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw wrap(e);
  }
}
