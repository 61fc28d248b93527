#!/usr/bin/env bash
# Runs setup, the type check, every bun test, the addon tests under Node, the fault suite's short
# mode (scripts/chaos.sh --short: one pass or failure per scenario), and the real-stack tier:
# test/stack/ against Kafka, Kafka Connect with Debezium and PostgreSQL from scripts/stack.sh,
# started once for the tier and stopped after it (also on failure or Ctrl-C).
# Arguments are passed to the first `bun test` (a filter); the Node tests, the fault suite and the
# real-stack tier run only without them.
# Last line: "N passed, N failed" from the real counts; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"

scripts/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }

passed=0; failed=0
log=$(mktemp -d)
stack_dir=""
finish() {
  trap - EXIT INT TERM
  if [ -n "$stack_dir" ]; then scripts/stack.sh down --dir "$stack_dir" >/dev/null 2>&1; stack_dir=""; fi
  rm -rf "$log"
}
trap finish EXIT
trap 'echo "interrupted"; exit 130' INT TERM

# bun_counts LOG: adds the pass/fail counts of a bun test run to the totals; sets $skipped
skipped=0
bun_counts() {
  local p f
  p=$(grep -Eo '^ *[0-9]+ pass$' "$1" | tail -1 | grep -Eo '[0-9]+' || true)
  f=$(grep -Eo '^ *[0-9]+ fail$' "$1" | tail -1 | grep -Eo '[0-9]+' || true)
  skipped=$(grep -Eo '^ *[0-9]+ skip$' "$1" | tail -1 | grep -Eo '[0-9]+' || true)
  skipped=${skipped:-0}
  if [ -z "$p" ]; then echo "bun test printed no summary"; failed=$((failed+1)); p=0; fi
  passed=$((passed+p)); failed=$((failed+${f:-0}))
}

echo "== type check (tsc --noEmit)"
if tsc --noEmit -p . >"$log/tsc" 2>&1; then passed=$((passed+1)); else cat "$log/tsc"; failed=$((failed+1)); fi

echo "== bun test"
# the real-stack tier runs below, on its stack
env -u STACK_DIR bun test --path-ignore-patterns='test/stack/**' "$@" 2>&1 | tee "$log/bun"
bun_counts "$log/bun"

if [ $# -eq 0 ]; then
  echo "== addon tests under Node $(node --version)"
  rm -rf .build/node-test
  bun build test/node/*.node.ts --target=node --outdir .build/node-test >"$log/build" 2>&1 || cat "$log/build"
  node --test --test-reporter=tap .build/node-test/*.node.js 2>&1 | tee "$log/node" | grep -E '^(not )?ok|^# (pass|fail)'
  np=$(grep -Eo '^# pass [0-9]+' "$log/node" | grep -Eo '[0-9]+' || true)
  nf=$(grep -Eo '^# fail [0-9]+' "$log/node" | grep -Eo '[0-9]+' || true)
  if [ -z "$np" ]; then echo "node --test printed no summary"; failed=$((failed+1)); np=0; fi
  passed=$((passed+np)); failed=$((failed+${nf:-0}))

  echo "== fault suite (scripts/chaos.sh --short: librdkafka's mock cluster)"
  env -u STACK_DIR scripts/chaos.sh --short 2>&1 | tee "$log/chaos"
  chaos_status=${PIPESTATUS[0]}
  cp=$(grep -Ec '^chaos: [a-z0-9]+ ok$' "$log/chaos" || true)
  cf=$(grep -Ec '^chaos: [a-z0-9]+ FAILED$' "$log/chaos" || true)
  if [ "$chaos_status" -ne 0 ] && [ "$cf" -eq 0 ]; then echo "chaos.sh exited $chaos_status"; cf=1; fi
  passed=$((passed+cp)); failed=$((failed+cf))

  echo "== real-stack tests (test/stack: KRaft Kafka, Kafka Connect + Debezium, PostgreSQL)"
  t0=$(date +%s)
  stack_dir="${TMPDIR:-/tmp}/cdc-sink-test-stack-$$"
  if scripts/stack.sh up --dir "$stack_dir" >"$log/stack.env" 2>"$log/stack"; then
    t1=$(date +%s)
    echo "stack up in $((t1 - t0)) s ($stack_dir)"
    STACK_DIR="$stack_dir" bun test ./test/stack/ 2>&1 | tee "$log/stack-bun"
    bun_counts "$log/stack-bun"
    # in this tier nothing may be skipped: every test has its stack
    if [ "$skipped" -gt 0 ]; then echo "real-stack tier: $skipped test(s) skipped"; failed=$((failed+skipped)); fi
    t2=$(date +%s)
    scripts/stack.sh down --dir "$stack_dir" >/dev/null 2>&1; stack_dir=""
    echo "real-stack tier: $(( $(date +%s) - t0 )) s (stack up $((t1 - t0)) s, tests $((t2 - t1)) s, down $(( $(date +%s) - t2 )) s)"
  else
    cat "$log/stack"
    echo "real-stack tier: the stack did not start"
    failed=$((failed+1)); stack_dir=""
  fi
fi

# what failed, next to the totals: CI shows only the tail of this output
if [ "$failed" -gt 0 ]; then
  echo "== failed"
  grep -E 'error TS' "$log"/tsc 2>/dev/null | head -20
  grep -hE '^\(fail\)' "$log"/bun "$log"/stack-bun 2>/dev/null | awk '!seen[$0]++'
  grep -hE '^not ok' "$log"/node 2>/dev/null
  sed -n '/^FAILED (seed/,$p' "$log"/chaos 2>/dev/null
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
