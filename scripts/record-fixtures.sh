#!/usr/bin/env bash
# Records real Debezium output into test/fixtures/debezium/ (or, with --check, re-records and
# compares with the committed fixtures). Starts its own throwaway stack (scripts/stack.sh) unless
# --stack-dir names a running one. Options: see scripts/record-fixtures.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x node_modules/.bin/bun ] || npm ci --no-audit --no-fund >&2
exec node_modules/.bin/bun scripts/record-fixtures.ts "$@"
