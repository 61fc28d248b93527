#!/usr/bin/env bash
# Creates or updates each Debezium connector in Kafka Connect (PUT /connectors/NAME/config, so
# re-running is safe), then waits until the connector and all its tasks are RUNNING.
#   CONNECT_URL          Kafka Connect REST endpoint (default http://localhost:8083)
#   --dry-run            print what would be sent, send nothing
#   --timeout SECONDS    how long to wait for RUNNING (default 120)
#   [FILE...]            connector JSONs ({"name", "config"}); default connectors/*-connector.json
# The shipped JSONs stay the source of truth; where the databases and secrets really are is given
# at registration (scripts/stack.sh writes these to its env file):
#   --db-host NAME=HOST:PORT   a connector whose database.hostname is NAME connects to HOST:PORT
#                              instead (repeatable; env CONNECT_DB_HOSTS, space-separated)
#   --secrets-dir DIR          ${directory:/any/path:KEY} references read DIR/KEY instead
#                              (env CONNECT_SECRETS_DIR)
#   --set [CONNECTOR:]KEY=VALUE  set a config key, for every connector or the one named (repeatable;
#                              env CONNECT_CONFIG_OVERRIDES, space-separated)
set -uo pipefail
cd "$(dirname "$0")/.."

connect="${CONNECT_URL:-http://localhost:8083}"
connect="${connect%/}"
dry=0
timeout_s=120
files=()
db_hosts=(${CONNECT_DB_HOSTS:-})
secrets_dir="${CONNECT_SECRETS_DIR:-}"
sets=(${CONNECT_CONFIG_OVERRIDES:-})
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1; shift ;;
    --timeout) timeout_s="$2"; shift 2 ;;
    --timeout=*) timeout_s="${1#*=}"; shift ;;
    --db-host) db_hosts+=("$2"); shift 2 ;;
    --db-host=*) db_hosts+=("${1#*=}"); shift ;;
    --secrets-dir) secrets_dir="$2"; shift 2 ;;
    --secrets-dir=*) secrets_dir="${1#*=}"; shift ;;
    --set) sets+=("$2"); shift 2 ;;
    --set=*) sets+=("${1#*=}"); shift ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "register-connectors: unknown option $1" >&2; exit 64 ;;
    *) files+=("$1"); shift ;;
  esac
done
[ ${#files[@]} -gt 0 ] || files=(connectors/*-connector.json)

# json FILE-OR-STDIN EXPR: evaluates a JavaScript expression on the parsed document `d`
json() { node -e 'let s="";process.stdin.on("data",c=>s+=c).on("end",()=>{const d=JSON.parse(s);const v=eval(process.argv[1]);process.stdout.write(typeof v==="string"?v:JSON.stringify(v))})' "$1"; }

put() { # name body -> prints http status; body in $tmp/resp
  curl -sS -o "$tmp/resp" -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
    --data-binary @"$tmp/body" "$connect/connectors/$1/config" 2>"$tmp/err"
}

for h in "${db_hosts[@]}"; do
  [[ "$h" =~ ^[^=]+=[^:]+:[0-9]+$ ]] || { echo "register-connectors: --db-host wants NAME=HOST:PORT, got '$h'" >&2; exit 64; }
done
for s in "${sets[@]}"; do
  [[ "$s" =~ ^([^:=]+:)?[^=]+=.*$ ]] || { echo "register-connectors: --set wants [CONNECTOR:]KEY=VALUE, got '$s'" >&2; exit 64; }
done
# the config as sent: the file's, with the overrides applied; each override printed to stderr
export RC_DB_HOSTS="${db_hosts[*]}" RC_SECRETS_DIR="$secrets_dir" RC_SETS="$(printf '%s\n' "${sets[@]}")"
config_of() { # file -> the config to send, on stdout
  node -e '
    const d = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const c = { ...d.config }, said = [];
    const set = (k, v) => { if (c[k] !== v) said.push(`${d.name}: ${k} = ${v}` + (k in c ? ` (was ${c[k]})` : "")); c[k] = v; };
    for (const h of (process.env.RC_DB_HOSTS || "").split(/\s+/).filter(Boolean)) {
      const [, name, host, port] = /^([^=]+)=(.+):(\d+)$/.exec(h);
      if (c["database.hostname"] === name) { set("database.hostname", host); set("database.port", port); }
    }
    const dir = process.env.RC_SECRETS_DIR;
    if (dir) for (const [k, v] of Object.entries(c))
      if (typeof v === "string") set(k, v.replace(/\$\{directory:[^:}]*:/g, "${directory:" + dir.replace(/\/+$/, "") + ":"));
    for (const s of (process.env.RC_SETS || "").split("\n").filter(Boolean)) {
      const m = /^(?:([^:=]+):)?([^=]+)=(.*)$/.exec(s);
      if (!m[1] || m[1] === d.name) set(m[2], m[3]);
    }
    for (const l of said) process.stderr.write("override " + l + "\n");
    process.stdout.write(JSON.stringify(c));' "$1"
}

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
names=()
for f in "${files[@]}"; do
  name=$(json 'd.name' <"$f") || { echo "register-connectors: $f is not valid JSON" >&2; exit 1; }
  config_of "$f" >"$tmp/body" || exit 1
  if [ "$dry" -eq 1 ]; then
    echo "PUT $connect/connectors/$name/config"
    json 'JSON.stringify(d, null, 2)' <"$tmp/body"; echo
    continue
  fi
  code=$(put "$name")
  # 409: the worker group is rebalancing (a worker just started or left); the request is retried
  for _ in $(seq 1 60); do [ "$code" = 409 ] || break; sleep 0.5; code=$(put "$name"); done
  if [ "$code" = "000" ]; then
    echo "register-connectors: Kafka Connect unreachable at $connect ($(head -c 300 "$tmp/err"))" >&2
    exit 1
  fi
  case "$code" in
    201) echo "created $name" ;;
    200) echo "updated $name" ;;
    *) echo "register-connectors: PUT $name failed with HTTP $code: $(head -c 2000 "$tmp/resp")" >&2; exit 1 ;;
  esac
  names+=("$name")
done
[ "$dry" -eq 1 ] && exit 0

deadline=$(( $(date +%s) + timeout_s ))
for name in "${names[@]}"; do
  while :; do
    status=$(curl -sS "$connect/connectors/$name/status" 2>"$tmp/err")
    if [ -z "$status" ]; then
      echo "register-connectors: Kafka Connect unreachable at $connect while waiting for $name" >&2; exit 1
    fi
    state=$(printf '%s' "$status" | json '[d.connector?.state ?? "UNKNOWN", ...(d.tasks ?? []).map(t => t.state)].join(" ")' 2>/dev/null || echo "UNKNOWN")
    if printf '%s' "$state" | grep -q FAILED; then
      echo "register-connectors: $name FAILED:" >&2
      printf '%s' "$status" | json '[d.connector?.state === "FAILED" ? "connector: " + (d.connector.trace ?? "") : "", ...(d.tasks ?? []).filter(t => t.state === "FAILED").map(t => "task " + t.id + ": " + (t.trace ?? ""))].filter(Boolean).join("\n")' >&2
      echo >&2
      exit 1
    fi
    words=0; running=0
    for w in $state; do words=$((words + 1)); [ "$w" = RUNNING ] && running=$((running + 1)); done
    # the connector and at least one task, all RUNNING
    if [ "$words" -gt 1 ] && [ "$running" -eq "$words" ]; then
      echo "$name RUNNING ($((words - 1)) task(s))"
      break
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "register-connectors: timed out after ${timeout_s} s waiting for $name to run (state: $state)" >&2
      exit 1
    fi
    sleep 0.5
  done
done
