#!/usr/bin/env bash
# Idempotent: installs what cdc-sink needs on a Debian machine with Node/npm, then builds the addon
# with librdkafka linked in (native/librdkafka.sh builds librdkafka from source once per version,
# into .cache/).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# a C++ toolchain and the libraries librdkafka links (SSL, SASL, zstd, lz4, zlib)
for p in g++ make pkg-config libssl-dev zlib1g-dev libzstd-dev liblz4-dev libsasl2-dev; do have_pkg "$p" || need+=("$p"); done
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  need+=(postgresql)
fi
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
# promtool checks deploy/prometheus/alerts.yml (test/deploy.test.ts); Debian ships it in prometheus
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x node_modules/.bin/bun ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error
fi
node_modules/.bin/bun --version >/dev/null
# npm ci runs it as postinstall; again here for a node_modules installed before it existed (idempotent)
node scripts/patch-deps.mjs

native/build.sh
