#!/usr/bin/env bash
# The whole pipeline on one machine.
#
#   scripts/demo.sh           no Kafka: a throwaway PostgreSQL (wal_level=logical) holding ecom,
#                             inventory and analytics databases, sample data, cdc-sink replicating by
#                             logical replication, then scripts/verify-cdc.sh against it
#   scripts/demo.sh --kafka   the seed's pipeline: scripts/stack.sh (KRaft Kafka, Kafka Connect with
#                             Debezium, PostgreSQL ecom/inventory/analytics) in .demo/kafka/stack,
#                             the shipped connectors registered until RUNNING, cdc-sink in Kafka mode
#                             (sink.toml pointed at the stack), then scripts/verify-cdc.sh
#   --once                    verify, stop everything this script started, exit with verify's status
# Without --once it keeps replicating until Ctrl-C, then stops everything it started.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
once=0
kafka=0
for a in "$@"; do
  case "$a" in
    --once) once=1 ;;
    --kafka) kafka=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "demo: unknown argument $a (--kafka, --once)" >&2; exit 64 ;;
  esac
done

scripts/setup.sh || exit 1
export PATH="$root/node_modules/.bin:$PATH"

demo="$root/.demo"
free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }

# wait_ready PORT LOG: until cdc-sink's /readyz answers 200 (30 s)
wait_ready() {
  local rel=${2#"$root"/}
  for _ in $(seq 1 150); do
    curl -fs "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$sink_pid" 2>/dev/null || { echo "demo: cdc-sink exited:"; tail -20 "$2"; return 1; }
    sleep 0.2
  done
  echo "demo: cdc-sink not ready after 30 s ($(curl -s "http://127.0.0.1:$1/readyz")); last lines of $rel:"; tail -20 "$2"; return 1
}

# wait_snapshot ECOM_URL INVENTORY_URL ANALYTICS_URL: until every analytics table holds as many live rows
# as its source table (20 s); the view joins three of them, so one table's count is not enough
wait_snapshot() {
  local live="WHERE _cdc_deleted_at IS NULL" want got
  want="$(psql "$1" -XAtq -c "SELECT concat_ws(' ', (SELECT count(*) FROM books), (SELECT count(*) FROM orders),
    (SELECT count(*) FROM order_items))") $(psql "$2" -XAtq -c "SELECT count(*) FROM inventory")"
  for _ in $(seq 1 200); do
    got=$(psql "$3" -XAtq -c "SELECT concat_ws(' ', (SELECT count(*) FROM dim_books $live),
      (SELECT count(*) FROM fact_orders $live), (SELECT count(*) FROM fact_order_items $live),
      (SELECT count(*) FROM fact_inventory $live))")
    [ "$got" = "$want" ] && return 0
    sleep 0.1
  done
  echo "demo: the snapshot did not arrive in 20 s: rows in dim_books fact_orders fact_order_items fact_inventory: $got; in the sources: $want"
  return 1
}

sink_pid=""
stop_sink() {
  if [ -n "$sink_pid" ] && kill -0 "$sink_pid" 2>/dev/null; then
    echo "demo: stopping cdc-sink (SIGTERM)"
    kill -TERM "$sink_pid"; wait "$sink_pid" 2>/dev/null
  fi
  sink_pid=""
}

# ------------------------------------------------------------------------------------------------
# --kafka: Kafka, Kafka Connect and Debezium from scripts/stack.sh
# ------------------------------------------------------------------------------------------------
if [ "$kafka" -eq 1 ]; then
  kdir="$demo/kafka"
  stack="$kdir/stack"
  t0=$(now)
  stack_up=0
  stop_all() {
    trap - INT TERM EXIT
    stop_sink
    if [ "$stack_up" -eq 1 ] || [ -e "$stack" ]; then
      echo "demo: stopping the stack (Kafka, Kafka Connect, PostgreSQL)"
      scripts/stack.sh down --dir "$stack" 2>&1 | sed 's/^/demo: /'
    fi
    echo "demo: took $(since "$t0") s"
  }
  trap stop_all EXIT
  trap 'exit 130' INT TERM
  mkdir -p "$kdir"
  rm -f "$kdir/sink.toml" "$kdir/cdc-sink.log"
  echo "demo: starting the stack in ${stack#"$root"/} (scripts/stack.sh up)"
  stack_up=1
  t=$(now)
  scripts/stack.sh up --dir "$stack" >"$kdir/stack.env" 2>"$kdir/stack.log" || { cat "$kdir/stack.log"; exit 1; }
  grep -E 'up on|jars resolved' "$kdir/stack.log" | sed 's/^stack: /demo:   /'
  # shellcheck disable=SC1091
  . "$stack/env"
  echo "demo: stack up in $(since "$t") s: Kafka $BOOTSTRAP_SERVERS, Kafka Connect $CONNECT_URL"

  echo "demo: registering connectors/*-connector.json (scripts/register-connectors.sh)"
  t=$(now)
  scripts/register-connectors.sh 2>"$kdir/register.log" | sed 's/^/demo:   /'
  [ "${PIPESTATUS[0]}" -eq 0 ] || { cat "$kdir/register.log"; exit 1; }
  echo "demo: connectors RUNNING $(since "$t") s after registration"

  # sink.toml, pointed at the stack: its broker, its analytics database, a free HTTP port
  http_port=$(free_port)
  SINK_BOOTSTRAP="$BOOTSTRAP_SERVERS" SINK_DB="$ANALYTICS_DB_URL" SINK_LISTEN="127.0.0.1:$http_port" node -e '
    const lines = require("fs").readFileSync(process.argv[1], "utf8").split("\n"), out = [];
    const q = (s) => JSON.stringify(s);
    let section = "";
    for (const l of lines) {
      const h = /^\s*\[([^\][]+)\]\s*(#.*)?$/.exec(l);
      if (h) { section = h[1].trim(); out.push(l); if (section === "postgres") out.push(`url = ${q(process.env.SINK_DB)}`); continue; }
      const k = /^\s*([A-Za-z_]+)\s*=/.exec(l)?.[1];
      if (section === "kafka" && k === "bootstrap_servers") out.push(`bootstrap_servers = ${q(process.env.SINK_BOOTSTRAP)}`);
      else if (section === "postgres" && ["host", "port", "database", "user", "password", "password_file", "url"].includes(k)) continue;
      else if (section === "http" && k === "listen") out.push(`listen = ${q(process.env.SINK_LISTEN)}`);
      else out.push(l);
    }
    process.stdout.write(out.join("\n"));' "$root/sink.toml" >"$kdir/sink.toml" || exit 1
  bun src/main.ts validate --config "$kdir/sink.toml" >/dev/null || exit 1

  t=$(now)
  bun src/main.ts run --config "$kdir/sink.toml" 2>"$kdir/cdc-sink.log" &
  sink_pid=$!
  echo "demo: cdc-sink started in Kafka mode (pid $sink_pid, config .demo/kafka/sink.toml, logs in .demo/kafka/cdc-sink.log)"
  wait_ready "$http_port" "$kdir/cdc-sink.log" || exit 1
  echo "demo: cdc-sink ready (partitions assigned) after $(since "$t") s"

  # the connectors' initial snapshot, through Kafka, into analytics
  wait_snapshot "$ECOM_DB_URL" "$INVENTORY_DB_URL" "$ANALYTICS_DB_URL" || exit 1
  echo "demo: the connectors' snapshot in analytics $(since "$t") s after cdc-sink started:"
  psql "$ANALYTICS_DB_URL" -Xq -c "SELECT book_id, title, units_sold, revenue FROM vw_product_sales_volume ORDER BY book_id"
  echo "demo: running scripts/verify-cdc.sh (each change: source database -> Debezium -> Kafka -> cdc-sink -> analytics)"
  scripts/verify-cdc.sh
  status=$?
  echo
  echo "demo: metrics   http://127.0.0.1:$http_port/metrics  (health: /healthz, readiness: /readyz)"
  echo "demo: Kafka     $BOOTSTRAP_SERVERS   Kafka Connect $CONNECT_URL/connectors?expand=status"
  echo "demo: databases psql $ECOM_DB_URL  |  $INVENTORY_DB_URL  |  $ANALYTICS_DB_URL"
  echo "demo: topics    scripts/stack.sh tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server $BOOTSTRAP_SERVERS --topic ecom-connector.public.orders --from-beginning"
  if [ "$once" -eq 1 ]; then
    exit $status
  fi
  echo "demo: replicating; change the source databases and watch analytics. Ctrl-C stops everything."
  wait "$sink_pid"
  exit $?
fi

# ------------------------------------------------------------------------------------------------
# default: PostgreSQL logical replication, no Kafka
# ------------------------------------------------------------------------------------------------
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$pgbin/initdb" ] || { echo "demo: PostgreSQL server binaries not found"; exit 1; }
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

stop_all() {
  trap - INT TERM EXIT
  stop_sink
  if [ -f "$demo/data/postmaster.pid" ]; then
    echo "demo: stopping PostgreSQL"
    as_pg "$pgbin/pg_ctl" -D "$demo/data" -m fast -w stop >/dev/null 2>&1
  fi
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# a fresh cluster every run, in a directory this script owns (the remains of a --kafka run too)
[ -f "$demo/data/postmaster.pid" ] && as_pg "$pgbin/pg_ctl" -D "$demo/data" -m immediate stop >/dev/null 2>&1
[ -e "$demo/kafka/stack" ] && scripts/stack.sh down --dir "$demo/kafka/stack" >/dev/null 2>&1
rm -rf "$demo"; mkdir -p "$demo"
[ "$(id -u)" -eq 0 ] && chown postgres "$demo"
port=$(free_port)
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

http_port=$(free_port)
# the PostgreSQL-mode template, pointed at this cluster
sed -e "s#postgres://cdc_sink@analytics-db:5432/analytics#$(url analytics)#" \
    -e "s#postgres://cdc_sink@ecom-db:5432/ecom#$(url ecom)#" \
    -e "s#postgres://cdc_sink@inventory-db:5432/inventory#$(url inventory)#" \
    -e "s#^listen = .*#listen = \"127.0.0.1:$http_port\"#" \
    sink.postgres.toml >"$demo/sink.toml"

bun src/main.ts run --config "$demo/sink.toml" 2>"$demo/cdc-sink.log" &
sink_pid=$!
echo "demo: cdc-sink started (pid $sink_pid, logs in .demo/cdc-sink.log)"
wait_ready "$http_port" "$demo/cdc-sink.log" || exit 1

wait_snapshot "$(url ecom)" "$(url inventory)" "$(url analytics)" || exit 1
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
