#!/usr/bin/env bash
# The real pipeline's infrastructure on this machine, no Docker: a one-node KRaft Kafka broker, a
# Kafka Connect distributed worker with the Debezium PostgreSQL connector on its plugin.path, and
# three throwaway PostgreSQL clusters (ecom and inventory with wal_level=logical, analytics) loaded
# from sql/. Every port is a free one; every process is tracked by pid in the stack dir.
#
#   scripts/stack.sh up     [--dir D]   start (or confirm running) and print the endpoints
#   scripts/stack.sh down   [--dir D]   stop everything and remove the stack dir (also after a partial up)
#   scripts/stack.sh status [--dir D]   each component, its pid and port; exit 1 if any is down
#   scripts/stack.sh env    [--dir D]   print the env file of a running stack
#   scripts/stack.sh restart kafka|connect [--dir D]
#                                       SIGKILL the process if it still runs (a crash), start it again
#                                       on the same ports and data, wait until it serves
#   scripts/stack.sh tool CLASS [ARGS]  run a Kafka tool on the stack's jars (warnings on stderr), e.g.
#     tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$BOOTSTRAP_SERVERS" \
#          --topic ecom-connector.public.orders --from-beginning --property print.key=true
#     tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP_SERVERS" --list
#
# D defaults to $STACK_DIR, else .stack/ in the repository. `up` writes D/env, to be sourced:
#   BOOTSTRAP_SERVERS CONNECT_URL ECOM_DB_URL INVENTORY_DB_URL ANALYTICS_DB_URL, and for
#   scripts/register-connectors.sh: CONNECT_DB_HOSTS (where the connectors' database hostnames
#   ecom-db and inventory-db really are) and CONNECT_SECRETS_DIR (the secrets folder the
#   connectors' ${directory:…} references are pointed at: D/secrets, one file per key).
# Jars: stack/pom.xml (Kafka and Debezium versions), resolved by Maven into .cache/stack/ (kept
# across stacks; re-resolved when the poms change). Java 17 and Maven are installed from Debian's
# packages when missing.
# Environment: STACK_KAFKA_HEAP, STACK_CONNECT_HEAP (JVM options, default -Xms64m -Xmx256m and
# -Xms64m -Xmx384m), STACK_TIMEOUT (seconds to wait for each component, default 120).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

cmd="${1:-}"; [ $# -gt 0 ] && shift
case "$cmd" in -h|--help) cmd=help ;; esac
cache="$root/.cache/stack"
lib="$cache/lib"
if [ "$cmd" = tool ]; then
  [ -f "$lib/.stamp" ] || { echo "stack: no jars yet; run scripts/stack.sh up first" >&2; exit 1; }
  exec java -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
    "-Dlog4j2.configurationFile=$root/stack/log4j2-tools.properties" -cp "$lib/kafka/*" "$@"
fi
dir="${STACK_DIR:-$root/.stack}"
what=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --dir=*) dir="${1#*=}"; shift ;;
    -h|--help) cmd=help; shift ;;
    kafka|connect) [ "$cmd" = restart ] && [ -z "$what" ] || { echo "stack: unexpected argument $1" >&2; exit 64; }; what=$1; shift ;;
    *) echo "stack: unknown argument $1" >&2; exit 64 ;;
  esac
done
[ "$cmd" = restart ] && [ -z "$what" ] && { echo "stack: restart what? kafka or connect" >&2; exit 64; }
case "$cmd" in up|down|status|env|restart) ;; help|"") awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; [ "$cmd" = help ]; exit $? ;;
  *) echo "stack: unknown command $cmd (up|down|status|env|restart|tool)" >&2; exit 64 ;; esac
mkdir -p "$(dirname "$dir")"
dir="$(cd "$(dirname "$dir")" && pwd)/$(basename "$dir")"

timeout_s="${STACK_TIMEOUT:-120}"
kafka_heap="${STACK_KAFKA_HEAP:--Xms64m -Xmx256m}"
connect_heap="${STACK_CONNECT_HEAP:--Xms64m -Xmx384m}"
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }
log() { echo "stack: $*" >&2; }

# --- processes -------------------------------------------------------------------------------
# a pid file counts only while its process is alive and still one of this stack's (its command
# line names the stack dir), so a recycled pid is never signalled
ours() { local pid; pid=$(cat "$1" 2>/dev/null) || return 1; [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
  && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir/" && echo "$pid"; }
pg_running() { [ -f "$dir/pg/$1/postmaster.pid" ] && as_pg "$pgbin/pg_ctl" -D "$dir/pg/$1" status >/dev/null 2>&1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

stop_java() { # name: SIGKILL (everything it wrote is removed anyway); SIGTERM and a wait when it is
  # to write its class archive at exit
  local name=$1 f="$dir/pids/$1.pid" pid limit=0 cds="$dir/pids/$1.cds"
  if pid=$(ours "$f"); then
    [ -f "$cds" ] && limit=300
    [ "$limit" -gt 0 ] && kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 "$limit"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      [ "$limit" -gt 0 ] && log "$name (pid $pid) did not stop in $((limit / 10)) s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  fi
  # a class archive written at exit (see start_java) becomes usable once complete
  if [ -f "$cds" ]; then
    local tmp final
    read -r tmp final <"$cds"
    if [ -s "$tmp" ]; then mv -f "$tmp" "$final"; else rm -f "$tmp"; fi
  fi
  rm -f "$f" "$cds"
}

down() {
  [ -d "$dir" ] || { log "nothing at $dir"; return 0; }
  [ -f "$dir/.stack" ] || [ -d "$dir/pids" ] || [ -d "$dir/pg" ] || { log "$dir is not a stack dir; not touching it"; return 1; }
  if [ -f "$dir/pids/connect.cds" ] || [ -f "$dir/pids/kafka.cds" ]; then
    # a graceful stop: Connect first, while the broker it leaves its group on is still there
    { stop_java connect; stop_java kafka; } &
  else
    stop_java connect & stop_java kafka &
  fi
  local c
  for c in ecom inventory analytics; do
    if [ -f "$dir/pg/$c/postmaster.pid" ]; then
      as_pg "$pgbin/pg_ctl" -D "$dir/pg/$c" -m immediate -w stop >/dev/null 2>&1 &
    fi
  done
  wait
  rm -rf "$dir"
  log "stopped and removed $dir"
}

status() {
  [ -f "$dir/ports" ] || { echo "no stack at $dir"; return 1; }
  # shellcheck disable=SC1091
  . "$dir/ports"
  local bad=0 pid
  if pid=$(ours "$dir/pids/kafka.pid"); then printf '%-10s running  pid %-8s 127.0.0.1:%s (controller %s)\n' kafka "$pid" "$KAFKA_PORT" "$CONTROLLER_PORT"
  else printf '%-10s DOWN     127.0.0.1:%s\n' kafka "$KAFKA_PORT"; bad=1; fi
  if pid=$(ours "$dir/pids/connect.pid"); then printf '%-10s running  pid %-8s http://127.0.0.1:%s\n' connect "$pid" "$CONNECT_PORT"
  else printf '%-10s DOWN     http://127.0.0.1:%s\n' connect "$CONNECT_PORT"; bad=1; fi
  for c in ecom inventory analytics; do
    local p; p=$(eval echo "\$${c^^}_PORT")
    if pg_running "$c"; then printf '%-10s running  pid %-8s 127.0.0.1:%s (PostgreSQL, database %s)\n' "$c" "$(head -1 "$dir/pg/$c/postmaster.pid")" "$p" "$c"
    else printf '%-10s DOWN     127.0.0.1:%s\n' "$c" "$p"; bad=1; fi
  done
  return $bad
}

java_opts=(-XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
  "-Dlog4j2.configurationFile=$root/stack/log4j2.properties")
# Class data sharing: the first run of each JVM writes an archive of the classes it loaded when it
# exits (at `down`); later runs map it instead of loading the classes again (about a second less
# startup each). An archive that does not fit (other JDK, other jars) is ignored by -Xshare:auto.
stamp=$(cat stack/pom.xml stack/*/pom.xml | sha256sum | cut -c1-16)
jvm_id=$(java -version 2>&1 | head -1 | tr -dc '0-9.' | cut -c1-20)
start_java() { # name log main-class args...   (the log is appended to)
  local name=$1 logf=$2; shift 2
  mkdir -p "$cache/cds"
  local jsa="$cache/cds/$name-$stamp-$jvm_id.jsa" cds
  if [ -s "$jsa" ]; then cds=("-XX:SharedArchiveFile=$jsa" -Xshare:auto)
  elif ! java -XX:ArchiveClassesAtExit="$dir/pids/probe.jsa" -version >/dev/null 2>&1; then
    cds=()   # this JVM cannot write archives (no base CDS archive)
  else
    cds=("-XX:ArchiveClassesAtExit=$jsa.$$.tmp")
    echo "$jsa.$$.tmp $jsa" >"$dir/pids/$name.cds"
  fi
  # shellcheck disable=SC2086
  setsid java $( [ "$name" = kafka ] && echo "$kafka_heap" || echo "$connect_heap" ) "${java_opts[@]}" "${cds[@]}" \
    -Dstack.dir="$dir/" -cp "$lib/kafka/*" "$@" >>"$logf" 2>&1 </dev/null 9>&- &
  echo $! >"$dir/pids/$name.pid"
}

wait_for() { # what deadline-seconds test-command...
  local what=$1 limit=$2; shift 2
  local end; end=$(( $(date +%s) + limit ))
  until "$@"; do
    [ "$(date +%s)" -ge "$end" ] && return 1
    sleep 0.1
  done
}
alive() { ours "$dir/pids/$1.pid" >/dev/null; }
log_from=1   # readiness is read from this line of a log on (a restart appends)
kafka_ready() { alive kafka || failed kafka "$dir/kafka/kafka.log"; port_open "$KAFKA_PORT" && tail -n "+$log_from" "$dir/kafka/kafka.log" | grep -q 'Kafka Server started'; }
connect_ready() {
  alive connect || failed connect "$dir/connect/connect.log"
  curl -fsS -m 2 "http://127.0.0.1:$CONNECT_PORT/connectors" >/dev/null 2>&1 \
    && curl -fsS -m 2 "http://127.0.0.1:$CONNECT_PORT/connector-plugins" 2>/dev/null | grep -q 'io.debezium.connector.postgresql.PostgresConnector'
}

restart() { # kafka|connect
  [ -f "$dir/env" ] || { log "no stack at $dir"; exit 1; }
  # shellcheck disable=SC1090
  . "$dir/ports"
  failed() { log "$1 failed to restart; last lines of $2:"; tail -n 40 "$2" >&2 2>/dev/null; exit 1; }
  local pid t; t=$(now)
  if pid=$(ours "$dir/pids/$what.pid"); then
    kill -KILL "$pid"; for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$dir/pids/$what.cds"
  if [ "$what" = kafka ]; then
    log_from=$(( $(wc -l <"$dir/kafka/kafka.log") + 1 ))
    start_java kafka "$dir/kafka/kafka.log" kafka.Kafka "$dir/kafka/server.properties"
    wait_for kafka "$timeout_s" kafka_ready || failed "kafka (timeout)" "$dir/kafka/kafka.log"
    log "kafka up again on 127.0.0.1:$KAFKA_PORT after $(since "$t") s"
  else
    start_java connect "$dir/connect/connect.log" org.apache.kafka.connect.cli.ConnectDistributed "$dir/connect/worker.properties"
    wait_for connect "$timeout_s" connect_ready || failed "connect (timeout)" "$dir/connect/connect.log"
    log "connect up again on http://127.0.0.1:$CONNECT_PORT after $(since "$t") s"
  fi
}

case "$cmd" in
  restart) restart; exit $? ;;
  down) down; exit $? ;;
  status) status; exit $? ;;
  env) [ -f "$dir/env" ] && status >/dev/null && { cat "$dir/env"; exit 0; }; echo "stack: no running stack at $dir" >&2; exit 1 ;;
esac

# --- up --------------------------------------------------------------------------------------
t0=$(now)
if [ -f "$dir/env" ] && status >/dev/null 2>&1; then
  log "already up at $dir"
  cat "$dir/env"
  exit 0
fi
[ -e "$dir" ] && { log "removing the remains of an earlier stack at $dir"; down || exit 1; }

# what this needs, from Debian's packages when missing
missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v psql >/dev/null || missing+=(postgresql-client)
[ -x "$pgbin/initdb" ] || missing+=(postgresql)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  [ "$(id -u)" -eq 0 ] || { log "not root: install ${missing[*]} first"; exit 1; }
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; } >&2 || exit 1
  pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
fi

mkdir -p "$dir/pids" "$dir/kafka" "$dir/connect" "$dir/pg" "$dir/secrets"
chmod 755 "$dir"   # the postgres user works inside it
touch "$dir/.stack"
if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$dir/pg"; then
  log "the postgres user cannot reach $dir (a parent folder is not world-searchable): choose another --dir"
  down >/dev/null 2>&1; exit 1
fi
failed() { # component log
  log "$1 failed to start; last lines of $2:"
  tail -n 40 "$2" >&2 2>/dev/null
  down >/dev/null 2>&1
  exit 1
}
pg_job=""
trap 'log "interrupted"; [ -n "$pg_job" ] && kill "$pg_job" 2>/dev/null; down >/dev/null 2>&1; exit 130' INT TERM

# jars: resolved once per content of the poms
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9   # one stack at a time resolves jars and formats the log-dir template
if [ "$(cat "$lib/.stamp" 2>/dev/null)" != "$stamp" ]; then
  t=$(now)
  log "resolving Kafka and Debezium jars with Maven into ${lib#"$root"/}"
  rm -rf "$lib"; mkdir -p "$lib"
  mvn -B -q -f stack/pom.xml -Dstack.lib="$lib" dependency:copy-dependencies >"$cache/mvn.log" 2>&1 9>&- \
    || { log "Maven failed:"; tail -n 40 "$cache/mvn.log" >&2; rm -rf "$lib"; down >/dev/null 2>&1; exit 1; }
  echo "$stamp" >"$lib/.stamp"
  log "jars resolved in $(since "$t") s"
fi

# free ports, distinct, below the kernel's ephemeral range (32768+) so no outgoing connection takes one
free_ports() {
  local n=$1 got=() p
  while [ ${#got[@]} -lt "$n" ]; do
    p=$(( 20000 + RANDOM % 12000 ))
    port_open "$p" && continue
    [[ " ${got[*]} " == *" $p "* ]] && continue
    got+=("$p")
  done
  echo "${got[*]}"
}
read -r KAFKA_PORT CONTROLLER_PORT CONNECT_PORT ECOM_PORT INVENTORY_PORT ANALYTICS_PORT < <(free_ports 6)
cat >"$dir/ports" <<EOF
KAFKA_PORT=$KAFKA_PORT
CONTROLLER_PORT=$CONTROLLER_PORT
CONNECT_PORT=$CONNECT_PORT
ECOM_PORT=$ECOM_PORT
INVENTORY_PORT=$INVENTORY_PORT
ANALYTICS_PORT=$ANALYTICS_PORT
EOF

# --- PostgreSQL: one initdb, copied three times, started and loaded in the background ----------
password=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
pg_setup() {
  set -e
  [ "$(id -u)" -eq 0 ] && chown postgres "$dir/pg"
  printf '%s\n' "$password" >"$dir/pg/pwfile"; chmod 644 "$dir/pg/pwfile"
  as_pg "$pgbin/initdb" -D "$dir/pg/template" -U postgres --pwfile="$dir/pg/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C --no-sync >/dev/null
  rm -f "$dir/pg/pwfile"
  local c port opts pids=()
  for c in ecom inventory analytics; do
    as_pg cp -a "$dir/pg/template" "$dir/pg/$c"
    port=$(eval echo "\$${c^^}_PORT")
    opts="-c port=$port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir/pg -c fsync=off -c full_page_writes=off -c shared_buffers=32MB -c max_connections=100"
    [ "$c" != analytics ] && opts="$opts -c wal_level=logical -c max_replication_slots=20 -c max_wal_senders=20"
    as_pg "$pgbin/pg_ctl" -D "$dir/pg/$c" -l "$dir/pg/$c.log" -w -t 60 -o "$opts" start >/dev/null &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  rm -rf "$dir/pg/template"
  local sock="host=$dir/pg user=postgres"
  psql "$sock port=$ECOM_PORT dbname=postgres" -Xq -c "CREATE DATABASE ecom"
  psql "$sock port=$INVENTORY_PORT dbname=postgres" -Xq -c "CREATE DATABASE inventory"
  psql "$sock port=$ANALYTICS_PORT dbname=postgres" -Xq -c "CREATE DATABASE analytics"
  local sample=(); [ -f sql/sample-data.sql ] && sample=(-f sql/sample-data.sql)
  psql "$sock port=$ECOM_PORT dbname=ecom" -Xq -v ON_ERROR_STOP=1 -f sql/ecom-ddl.sql "${sample[@]}"
  sample=(); [ -f sql/sample-inventory.sql ] && sample=(-f sql/sample-inventory.sql)
  psql "$sock port=$INVENTORY_PORT dbname=inventory" -Xq -v ON_ERROR_STOP=1 -f sql/inventory-ddl.sql "${sample[@]}"
  psql "$sock port=$ANALYTICS_PORT dbname=analytics" -Xq -v ON_ERROR_STOP=1 -f sql/analytics-ddl.sql
}
( pg_setup ) >"$dir/pg/setup.log" 2>&1 9>&- &
pg_job=$!

# --- Kafka broker (KRaft, broker and controller in one process) -------------------------------
cat >"$dir/kafka/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/kafka/data
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# a consumer group forms at once (the default waits 3 s for more members)
group.initial.rebalance.delay.ms=0
# the log cleaner's dedupe buffer is allocated on the heap whole: 128 MiB by default
log.cleaner.dedupe.buffer.size=16777216
# after a kill -9 the restarted broker cannot register until its old session expires (9 s by default)
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=1000
EOF
t=$(now)
# a formatted log dir is the same for every stack of one Kafka version: format once, copy after
formatted="$cache/kafka-formatted-$stamp"
if [ ! -f "$formatted/meta.properties" ]; then
  rm -rf "$formatted.tmp"
  sed "s#^log.dirs=.*#log.dirs=$formatted.tmp#" "$dir/kafka/server.properties" >"$dir/kafka/format.properties"
  # an id starting with '-' reads as an option to the tool's parser (Kafka's own Uuid.randomUuid redraws those)
  cluster_id=-
  while [ "${cluster_id:0:1}" = - ]; do cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'); done
  # shellcheck disable=SC2086
  java $kafka_heap "${java_opts[@]}" -cp "$lib/kafka/*" kafka.tools.StorageTool format -t "$cluster_id" \
    -c "$dir/kafka/format.properties" >"$dir/kafka/format.log" 2>&1 || failed "kafka storage format" "$dir/kafka/format.log"
  rm -rf "$formatted"; mv "$formatted.tmp" "$formatted"
fi
cp -a "$formatted" "$dir/kafka/data"
flock -u 9
start_java kafka "$dir/kafka/kafka.log" kafka.Kafka "$dir/kafka/server.properties"

# --- Kafka Connect, distributed mode -------------------------------------------------------------
cat >"$dir/connect/worker.properties" <<EOF
bootstrap.servers=127.0.0.1:$KAFKA_PORT
group.id=stack-connect
listeners=http://127.0.0.1:$CONNECT_PORT
rest.advertised.host.name=127.0.0.1
rest.advertised.port=$CONNECT_PORT
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable=false
value.converter.schemas.enable=false
config.storage.topic=_connect-configs
offset.storage.topic=_connect-offsets
status.storage.topic=_connect-status
config.storage.replication.factor=1
offset.storage.replication.factor=1
status.storage.replication.factor=1
offset.storage.partitions=5
# source offsets (and so the LSN Debezium confirms to PostgreSQL) flushed every second, not minute
offset.flush.interval.ms=1000
# a killed worker's group membership expires after 6 s (the broker's minimum), not 10
session.timeout.ms=6000
heartbeat.interval.ms=2000
plugin.path=$lib/plugins
# the plugins' ServiceLoader manifests, no classpath scan: faster start
plugin.discovery=service_load
# --- from connectors/connect-worker.properties ---
$(grep -v '^[[:space:]]*#' connectors/connect-worker.properties | grep -v '^[[:space:]]*$')
EOF
start_java connect "$dir/connect/connect.log" org.apache.kafka.connect.cli.ConnectDistributed "$dir/connect/worker.properties"

wait_for kafka "$timeout_s" kafka_ready || failed "kafka (timeout)" "$dir/kafka/kafka.log"
log "kafka up on 127.0.0.1:$KAFKA_PORT after $(since "$t") s"

wait_for connect "$timeout_s" connect_ready || failed "connect (timeout)" "$dir/connect/connect.log"
log "connect up on http://127.0.0.1:$CONNECT_PORT after $(since "$t") s"

wait "$pg_job" || failed "PostgreSQL" "$dir/pg/setup.log"
for c in ecom inventory analytics; do pg_running "$c" || failed "PostgreSQL $c" "$dir/pg/$c.log"; done

# secrets for the connectors' ${directory:…} references: one file per key, no trailing newline
# (DirectoryConfigProvider passes a file's content on verbatim)
for k in ECOM INVENTORY ANALYTICS; do
  printf '%s' postgres >"$dir/secrets/${k}_DB_USER"
  printf '%s' "$password" >"$dir/secrets/${k}_DB_PASSWORD"
done
chmod 600 "$dir"/secrets/*

url() { echo "postgres://postgres:$password@127.0.0.1:$1/$2"; }
cat >"$dir/env" <<EOF
export STACK_DIR='$dir'
export BOOTSTRAP_SERVERS='127.0.0.1:$KAFKA_PORT'
export CONNECT_URL='http://127.0.0.1:$CONNECT_PORT'
export ECOM_DB_URL='$(url "$ECOM_PORT" ecom)'
export INVENTORY_DB_URL='$(url "$INVENTORY_PORT" inventory)'
export ANALYTICS_DB_URL='$(url "$ANALYTICS_PORT" analytics)'
export CONNECT_DB_HOSTS='ecom-db=127.0.0.1:$ECOM_PORT inventory-db=127.0.0.1:$INVENTORY_PORT analytics-db=127.0.0.1:$ANALYTICS_PORT'
export CONNECT_SECRETS_DIR='$dir/secrets'
EOF
trap - INT TERM
log "up in $(since "$t0") s (stack dir $dir; stop with scripts/stack.sh down${STACK_DIR:+}$( [ "$dir" != "$root/.stack" ] && echo " --dir $dir"))"
cat "$dir/env"
