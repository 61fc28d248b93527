// Every error cdc-sink raises carries a stable string code (README lists them); errors from
// PostgreSQL and librdkafka keep theirs (SQLSTATE, postgres.js codes, librdkafka error names).

export class CdcError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** The configuration is invalid (exit 78): each problem names its key. */
export class ConfigError extends CdcError {
  constructor(
    readonly file: string,
    readonly issues: Array<{ key: string; message: string; line?: number }>,
  ) {
    super("CONFIG", `${file}: ${issues.map((i) => `${i.key}: ${i.message}`).join("; ")}`);
  }
}

/** The analytics tables do not fit the mappings (exit 78): each problem says how to fix it. */
export class SchemaError extends CdcError {
  constructor(readonly problems: string[]) {
    super("SCHEMA", problems.join("; "));
  }
}

/** A record cannot be turned into a change: it is dead-lettered. */
export class DecodeError extends CdcError {
  constructor(message: string, code = "DECODE") {
    super(code, message);
  }
}

/** A source database is not set up for logical replication (wal_level, privileges, replica identity). */
export class SourceSetupError extends CdcError {
  constructor(message: string) {
    super("SOURCE_SETUP", message);
  }
}

/** Shutdown interrupted a retry loop; nothing was committed. */
export class Stopped extends CdcError {
  constructor(message = "stopped") {
    super("STOPPED", message);
  }
}

/** The stable code of any error: our own, a SQLSTATE, a postgres.js or socket code, a librdkafka name. */
export function errorCode(e: unknown): string {
  const x = e as { code?: unknown; name?: string } | null;
  if (x && typeof x.code === "string" && x.code) return x.code;
  return x?.name && x.name !== "Error" ? x.name : "UNKNOWN";
}

const CONNECTION_CODES = new Set(["CONNECTION_CLOSED", "CONNECTION_ENDED", "CONNECTION_DESTROYED", "CONNECT_TIMEOUT", "ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN"]);

/** The database connection failed or was lost; a retry may succeed. */
export function isConnectionError(e: unknown): boolean {
  const code = errorCode(e);
  return CONNECTION_CODES.has(code) || /^(08|57P0|53)/.test(code);
}

/**
 * SQLSTATE classes a retry cannot fix: the row itself is bad. 21000 too: two changes of one row in
 * a statement (keys spelled differently that the column makes equal) — split, each applies alone.
 */
export function isDataError(e: unknown): boolean {
  const code = errorCode(e);
  return /^2[123]/.test(code) || code === "42804" || code === "54000";
}

export type Cause = "authentication" | "authorization" | "unreachable" | "timeout" | "error";

/** Why a dependency is not usable, in words an operator acts on. */
export function causeOf(e: unknown): Cause {
  const code = errorCode(e);
  if (code === "28P01" || code === "28000" || /SASL_AUTHENTICATION|AUTHENTICATION/.test(code)) return "authentication";
  if (code === "42501" || /AUTHORIZATION/.test(code)) return "authorization";
  if (code === "CONNECT_TIMEOUT" || code === "ETIMEDOUT" || code === "57014" || /TIMED_OUT/.test(code)) return "timeout";
  if (isConnectionError(e) || /TRANSPORT|ALL_BROKERS_DOWN|RESOLVE/.test(code)) return "unreachable";
  return "error";
}

/** Log context of an error: message, code and class. */
export function errorInfo(e: unknown): { error: string; code?: string; errorName?: string } {
  if (e && typeof e === "object") {
    const x = e as { message?: string; code?: unknown; name?: string };
    return { error: x.message ?? String(e), code: typeof x.code === "string" ? x.code : undefined, errorName: x.name };
  }
  return { error: String(e) };
}
