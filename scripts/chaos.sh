#!/usr/bin/env bash
# The fault suite (issue 17): the built binary (dist/cdc-sink, rebuilt when older than src/ or the
# patched postgres.js) killed and crashed on purpose against throwaway PostgreSQL clusters and Kafka
# (librdkafka's mock cluster, or the real broker of scripts/stack.sh when STACK_DIR points at a
# running stack), with the five invariants checked after each scenario.
#
#   scripts/chaos.sh [--short|--long] [--seed N] [--json FILE] [--list] [SCENARIO[:ARG,…]…]
#
# Scenarios: kill9, failpoints, pgkill9, zombies, network, target, soak (--list; target:stop,lock
# runs only those of its faults). --short (default): the counts that fit in CI, about 12 min
# (scripts/test.sh runs it). --long: the issue's counts (600 kills of ≥ 2M events, 25 self-kills per
# failpoint, 240 kills of a PostgreSQL source, 30 zombie stops, 120 network faults, 20 stops of the
# analytics database among 53 target faults, a 60 min soak); README "How we test failure" has the
# last long run.
# Without SCENARIO every scenario runs. Prints a report (per scenario: what was injected, how
# many times, how many events, the checks and invariants), one line per scenario
# "chaos: SCENARIO ok|FAILED", and exits non-zero on any failure. Everything it starts (clusters,
# mock brokers, daemons, temporary folders) is stopped and removed, also on failure or Ctrl-C.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUN="$ROOT/node_modules/.bin/bun"
cd "$ROOT"

pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --short|--long|--list) pass+=("$1"); shift ;;
    --seed|--json) pass+=("$1" "$2"); shift 2 ;;
    --seed=*|--json=*) pass+=("$1"); shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "chaos.sh: unknown option $1 (see --help)" >&2; exit 64 ;;
    *) pass+=("$1"); shift ;;
  esac
done

if [ ! -x "$BUN" ] || [ ! -f "$ROOT/native/build/cdc_kafka.node" ]; then
  echo "chaos.sh: dependencies or the Kafka addon missing: running scripts/setup.sh" >&2
  bash "$ROOT/scripts/setup.sh" >&2
fi

# Everything the driver starts lives under one folder of this run (TMPDIR): its clusters' data
# directories and the daemons' configs. The driver stops and removes it all itself (also on SIGINT
# or SIGTERM, test/support/cleanup.ts); should it die without doing so (a crash, SIGKILL), this
# script stops the clusters and processes that still run from that folder, and removes it.
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/cdc-sink-chaos-run.XXXXXX")
chmod 755 "$run_dir"
export TMPDIR="$run_dir"
child=""
sweep() {
  local pid_file data cmd p pg_ctl
  pg_ctl=$(ls -d /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -1)
  for pid_file in "$run_dir"/*/data/postmaster.pid; do
    [ -f "$pid_file" ] || continue
    data=$(dirname "$pid_file")
    echo "chaos.sh: stopping the PostgreSQL cluster left at $data" >&2
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
    else "$pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true; fi
  done
  for p in /proc/[0-9]*; do
    cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
    case "$cmd" in *"$run_dir/"*) echo "chaos.sh: killing ${p#/proc/} left running: $cmd" >&2; kill -9 "${p#/proc/}" 2>/dev/null || true ;; esac
  done
  # the target scenario's small disk (a tmpfs) and the network scenario's namespaces
  awk -v d="$run_dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts 2>/dev/null | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  for ns in $(ip netns list 2>/dev/null | awk -v p="cdcchaos$child" 'index($1, p) == 1 { print $1 }'); do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$run_dir"
}
out="$run_dir.out"
cleanup() {
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then kill -TERM "$child" 2>/dev/null || true; wait "$child" 2>/dev/null || true; fi
  sweep
  rm -f "$out"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# librdkafka's mock cluster (it runs inside the driver) can abort the driver: it names group members
# by their struct's address, so a freed member's id comes back for a new one and a client holding the
# old id trips an assertion. That is the mock's fault, not the sink's: the run is swept and made
# once more, said so in the output; any other failure stands.
for attempt in 1 2; do
  status=0
  "$BUN" test/chaos/run.ts "${pass[@]}" > >(tee "$out") 2>&1 &
  child=$!
  wait "$child" || status=$?
  child=""
  if [ "$status" -ne 0 ] && [ "$attempt" = 1 ] && grep -q 'rdkafka_mock_cgrp.c.*Assertion' "$out"; then
    echo "chaos.sh: librdkafka's mock cluster aborted the driver (a bug of the mock, above); cleaning up and running again, once" >&2
    sweep
    mkdir -p "$run_dir" && chmod 755 "$run_dir"
    continue
  fi
  break
done
exit "$status"
