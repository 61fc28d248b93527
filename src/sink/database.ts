// The analytics database connection pool.
import postgres, { type Sql } from "postgres";
import { type Config, connectionOptions } from "../config.ts";

export function openAnalytics(c: Config["postgres"], max = 4): Sql {
  const { url, options } = connectionOptions(c);
  const opts = { ...options, max, onnotice: () => {}, idle_timeout: 60, max_lifetime: 60 * 30, connection: { application_name: "cdc-sink" } };
  return url ? postgres(url, opts) : postgres(opts);
}
