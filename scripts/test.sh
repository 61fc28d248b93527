#!/usr/bin/env bash
# Runs setup, the type check, every bun test, and the addon tests under Node.
# Last line: "N passed, N failed" from the real counts; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"

scripts/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }

passed=0; failed=0
log=$(mktemp -d)

echo "== type check (tsc --noEmit)"
if tsc --noEmit -p . >"$log/tsc" 2>&1; then passed=$((passed+1)); else cat "$log/tsc"; failed=$((failed+1)); fi

echo "== bun test"
bun test "$@" 2>&1 | tee "$log/bun"
p=$(grep -Eo '^ *[0-9]+ pass$' "$log/bun" | tail -1 | grep -Eo '[0-9]+' || true)
f=$(grep -Eo '^ *[0-9]+ fail$' "$log/bun" | tail -1 | grep -Eo '[0-9]+' || true)
if [ -z "$p" ]; then echo "bun test printed no summary"; failed=$((failed+1)); p=0; fi
passed=$((passed+p)); failed=$((failed+${f:-0}))

if [ $# -eq 0 ]; then
  echo "== addon tests under Node $(node --version)"
  rm -rf .build/node-test
  bun build test/node/*.node.ts --target=node --outdir .build/node-test >"$log/build" 2>&1 || cat "$log/build"
  node --test --test-reporter=tap .build/node-test/*.node.js 2>&1 | tee "$log/node" | grep -E '^(not )?ok|^# (pass|fail)'
  np=$(grep -Eo '^# pass [0-9]+' "$log/node" | grep -Eo '[0-9]+' || true)
  nf=$(grep -Eo '^# fail [0-9]+' "$log/node" | grep -Eo '[0-9]+' || true)
  if [ -z "$np" ]; then echo "node --test printed no summary"; failed=$((failed+1)); np=0; fi
  passed=$((passed+np)); failed=$((failed+${nf:-0}))
fi

rm -rf "$log"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
