#!/usr/bin/env bash
# Creates or updates each Debezium connector in Kafka Connect (PUT /connectors/NAME/config, so
# re-running is safe), then waits until the connector and all its tasks are RUNNING.
#   CONNECT_URL          Kafka Connect REST endpoint (default http://localhost:8083)
#   --dry-run            print what would be sent, send nothing
#   --timeout SECONDS    how long to wait for RUNNING (default 120)
#   [FILE...]            connector JSONs ({"name", "config"}); default connectors/*-connector.json
set -uo pipefail
cd "$(dirname "$0")/.."

connect="${CONNECT_URL:-http://localhost:8083}"
connect="${connect%/}"
dry=0
timeout_s=120
files=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1; shift ;;
    --timeout) timeout_s="$2"; shift 2 ;;
    --timeout=*) timeout_s="${1#*=}"; shift ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
names=()
for f in "${files[@]}"; do
  name=$(json 'd.name' <"$f") || { echo "register-connectors: $f is not valid JSON" >&2; exit 1; }
  json 'd.config' <"$f" >"$tmp/body" || exit 1
  if [ "$dry" -eq 1 ]; then
    echo "PUT $connect/connectors/$name/config"
    json 'JSON.stringify(d.config, null, 2)' <"$f"; echo
    continue
  fi
  code=$(put "$name")
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
