#!/usr/bin/env bash
# analytics-db's first start in docker-compose.yml (run from /docker-entrypoint-initdb.d as the
# image's superuser): the role cdc-sink logs in as (sink.toml: user cdc_sink, password_file), the
# tables and views of sql/analytics-ddl.sql, and the least privileges README's Security section
# names: SELECT, INSERT, UPDATE, DELETE on the mapped tables, and CREATE on the database for the
# state schema (cdc_sink: checkpoints, tombstones, dead letters) that cdc-sink creates and owns.
# (A mapping with truncate = "truncate" needs TRUNCATE too; schema_changes = "add" needs ownership of the tables; auto_provision, CREATE on the schema.)
# Re-runnable. ANALYTICS_PASSWORD_FILE and SQL_DIR override the container paths.
set -eo pipefail
password_file="${ANALYTICS_PASSWORD_FILE:-/mnt/analytics-credentials/password}"
sql_dir="${SQL_DIR:-/sql}"
# quiet on a re-run: no "already exists, skipping" notices
run_psql() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" "$@"; }

run_psql -v pw="$(cat "$password_file")" <<'SQL'
SELECT format('CREATE ROLE cdc_sink LOGIN PASSWORD %L', :'pw')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cdc_sink') \gexec
SQL
run_psql -f "$sql_dir/analytics-ddl.sql"
run_psql -v db="$POSTGRES_DB" <<'SQL'
GRANT CONNECT, CREATE ON DATABASE :"db" TO cdc_sink;
GRANT USAGE ON SCHEMA public TO cdc_sink;
GRANT SELECT, INSERT, UPDATE, DELETE ON fact_orders, fact_order_items, dim_books, fact_inventory TO cdc_sink;
SQL
