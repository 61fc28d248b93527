#!/usr/bin/env bash
# Event fuzzing (issue 18): mutants of real Debezium records inside a stream of good events, applied
# by the built binary (dist/cdc-sink, rebuilt when older than src/) from librdkafka's mock cluster into
# a throwaway PostgreSQL, then the fast-check property tests of decode -> plan.
#
#   scripts/fuzz.sh [--long] [--seed N] [--mutants N] [--good N] [--json FILE]
#
# Default: 1,000 mutants in 5,000 good events, 10^4 property runs. --long: 10,000 mutants in 200,000
# good events and 10^6 property runs. Prints a report (per class: count, outcome, deviations; RSS
# clean vs fuzzed; /healthz) and exits non-zero on any deviation. Everything it starts (PostgreSQL
# cluster, mock brokers, daemons, temporary folders) is stopped and removed, also on failure or Ctrl-C.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUN="$ROOT/node_modules/.bin/bun"
cd "$ROOT"

long=0
seed=""
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --long) long=1; pass+=(--long); shift ;;
    --seed) seed="$2"; shift 2 ;;
    --seed=*) seed="${1#--seed=}"; shift ;;
    --mutants|--good|--json|--classes|--skip) pass+=("$1" "$2"); shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fuzz.sh: unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
done
[ -n "$seed" ] || seed=$(( (RANDOM << 15 | RANDOM) ))
[ -x "$BUN" ] || { echo "fuzz.sh: $BUN missing (run scripts/setup.sh or npm ci)" >&2; exit 69; }

# the fuzz driver and bun test clean up after themselves (test/support/cleanup.ts); this trap stops
# the children if this script itself is interrupted
child=""
cleanup() { if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then kill -TERM "$child" 2>/dev/null || true; wait "$child" 2>/dev/null || true; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM

status=0
echo "== event fuzzing (seed $seed)"
"$BUN" test/fuzz/run.ts --seed "$seed" "${pass[@]}" &
child=$!
wait "$child" || status=1
child=""

runs=10000
[ "$long" = 1 ] && runs=1000000
echo
echo "== property tests ($runs runs each, seed $seed)"
FUZZ_PROPERTY_RUNS=$runs FUZZ_SEED=$seed "$BUN" test --timeout 7200000 test/fuzz/properties.test.ts &
child=$!
wait "$child" || status=1
child=""

echo
if [ "$status" = 0 ]; then echo "fuzz.sh: OK (seed $seed)"; else echo "fuzz.sh: FAILED (seed $seed): see the deviations above" >&2; fi
exit "$status"
