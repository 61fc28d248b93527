#!/usr/bin/env bash
# Builds native/build/cdc_kafka.node against the system librdkafka. Rebuilds only when a source changed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
out="$here/build/cdc_kafka.node"
mkdir -p "$here/build"
if [ -f "$out" ] && [ -z "$(find "$here/src" "$0" -newer "$out" -print -quit)" ]; then
  exit 0
fi
${CXX:-g++} -std=c++17 -O2 -g -fPIC -shared -Wall -Wextra -Wno-unused-parameter \
  -DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS -DNODE_ADDON_API_DISABLE_DEPRECATED \
  -I "$root/node_modules/node-addon-api" -I "$root/node_modules/node-api-headers/include" \
  $(pkg-config --cflags rdkafka) \
  "$here/src/addon.cc" -o "$out.tmp" \
  $(pkg-config --libs rdkafka) -lpthread
mv "$out.tmp" "$out"
echo "built $out"
