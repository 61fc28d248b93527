#!/usr/bin/env bash
# The whole pipeline on one machine, no Kafka: a throwaway PostgreSQL (wal_level=logical) holding
# ecom, inventory and analytics databases, sample data, cdc-sink replicating by logical
# replication, then scripts/verify-cdc.sh against it. Keeps replicating until Ctrl-C.
#   --once   verify, stop everything this script started, exit with verify's status
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
once=0
[ "${1:-}" = "--once" ] && once=1

scripts/setup.sh || exit 1
export PATH="$root/node_modules/.bin:$PATH"

demo="$root/.demo"
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$pgbin/initdb" ] || { echo "demo: PostgreSQL server binaries not found"; exit 1; }
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

sink_pid=""
stop_all() {
  trap - INT TERM EXIT
  if [ -n "$sink_pid" ] && kill -0 "$sink_pid" 2>/dev/null; then
    echo "demo: stopping cdc-sink (SIGTERM)"
    kill -TERM "$sink_pid"; wait "$sink_pid" 2>/dev/null
  fi
  if [ -f "$demo/data/postmaster.pid" ]; then
    echo "demo: stopping PostgreSQL"
    as_pg "$pgbin/pg_ctl" -D "$demo/data" -m fast -w stop >/dev/null 2>&1
  fi
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# a fresh cluster every run, in a directory this script owns
[ -f "$demo/data/postmaster.pid" ] && as_pg "$pgbin/pg_ctl" -D "$demo/data" -m immediate stop >/dev/null 2>&1
rm -rf "$demo"; mkdir -p "$demo"
[ "$(id -u)" -eq 0 ] && chown postgres "$demo"
port=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
echo "demo: PostgreSQL with wal_level=logical on 127.0.0.1:$port (data in .demo/data)"
as_pg "$pgbin/initdb" -D "$demo/data" -U postgres --auth=trust -E UTF8 --locale=C >"$demo/initdb.log" 2>&1 || { cat "$demo/initdb.log"; exit 1; }
as_pg "$pgbin/pg_ctl" -D "$demo/data" -l "$demo/postgres.log" -w \
  -o "-c port=$port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$demo -c wal_level=logical -c max_replication_slots=10 -c max_wal_senders=10" start >/dev/null \
  || { cat "$demo/postgres.log"; exit 1; }

url() { echo "postgres://postgres@127.0.0.1:$port/$1"; }
for db in ecom inventory analytics; do psql "$(url postgres)" -Xq -c "CREATE DATABASE $db" || exit 1; done
psql "$(url ecom)" -Xq -v ON_ERROR_STOP=1 -f sql/ecom-ddl.sql -f sql/sample-data.sql || exit 1
psql "$(url inventory)" -Xq -v ON_ERROR_STOP=1 -f sql/inventory-ddl.sql -f sql/sample-inventory.sql || exit 1
psql "$(url analytics)" -Xq -v ON_ERROR_STOP=1 -f sql/analytics-ddl.sql || exit 1
echo "demo: created ecom, inventory and analytics, loaded sample data"

http_port=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
# the PostgreSQL-mode template, pointed at this cluster
sed -e "s#postgres://cdc_sink@analytics-db:5432/analytics#$(url analytics)#" \
    -e "s#postgres://cdc_sink@ecom-db:5432/ecom#$(url ecom)#" \
    -e "s#postgres://cdc_sink@inventory-db:5432/inventory#$(url inventory)#" \
    -e "s#^listen = .*#listen = \"127.0.0.1:$http_port\"#" \
    sink.postgres.toml >"$demo/sink.toml"

bun src/main.ts run --config "$demo/sink.toml" 2>"$demo/cdc-sink.log" &
sink_pid=$!
echo "demo: cdc-sink started (pid $sink_pid, logs in .demo/cdc-sink.log)"
for _ in $(seq 1 150); do
  curl -fs "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1 && break
  kill -0 "$sink_pid" 2>/dev/null || { echo "demo: cdc-sink exited:"; tail -20 "$demo/cdc-sink.log"; exit 1; }
  sleep 0.2
done
curl -fs "http://127.0.0.1:$http_port/readyz" >/dev/null || { echo "demo: cdc-sink not ready:"; tail -20 "$demo/cdc-sink.log"; exit 1; }

want=$(psql "$(url ecom)" -XAtq -c "SELECT count(*) FROM order_items")
for _ in $(seq 1 100); do
  [ "$(psql "$(url analytics)" -XAtq -c "SELECT count(*) FROM fact_order_items")" = "$want" ] && break
  sleep 0.1
done
echo "demo: snapshot of existing rows in analytics:"
psql "$(url analytics)" -Xq -c "SELECT book_id, title, units_sold, revenue FROM vw_product_sales_volume ORDER BY book_id"
echo "demo: running scripts/verify-cdc.sh"
ECOM_DB_URL=$(url ecom) INVENTORY_DB_URL=$(url inventory) ANALYTICS_DB_URL=$(url analytics) scripts/verify-cdc.sh
status=$?
echo
echo "demo: metrics   http://127.0.0.1:$http_port/metrics  (health: /healthz, readiness: /readyz)"
echo "demo: databases psql $(url ecom)  |  $(url inventory)  |  $(url analytics)"
if [ "$once" -eq 1 ]; then
  exit $status
fi
echo "demo: replicating; change the source databases and watch analytics. Ctrl-C stops everything."
wait "$sink_pid"
