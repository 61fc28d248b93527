#!/usr/bin/env bash
# Builds native/build/cdc_kafka.node: the addon's sources (native/src/*.cc) with librdkafka linked
# statically (native/librdkafka.sh builds it once per version); only the system libraries it
# needs (ssl, crypto, sasl2, zstd, z) stay dynamic. Rebuilds only when a source, this script or
# the librdkafka build changed. Debug info goes to cdc_kafka.node.debug beside it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
rdk=$("$here/librdkafka.sh")
out="$here/build/cdc_kafka.node"
mkdir -p "$here/build"
# one build at a time (setup may run from several test runs at once)
exec 8>"$here/build/.lock"
flock 8

cxx=${CXX:-g++}
recipe="librdkafka $(cat "$rdk/.built") at $rdk, $cxx"
if [ -f "$out" ] && [ "$(cat "$out.recipe" 2>/dev/null)" = "$recipe" ] &&
  [ -z "$(find "$here/src" "$here/build.sh" "$here/librdkafka.sh" "$rdk/lib/librdkafka.a" -newer "$out" -print -quit)" ]; then
  exit 0
fi

obj="$here/build/obj"
rm -rf "$obj"
mkdir -p "$obj"
flags=(-std=c++17 -O2 -g -fPIC -fvisibility=hidden -Wall -Wextra -Wno-unused-parameter
  -DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS -DNODE_ADDON_API_DISABLE_DEPRECATED
  -I "$root/node_modules/node-addon-api" -I "$root/node_modules/node-api-headers/include" -isystem "$rdk/include")
export cxx obj
printf '%s\n' "$here"/src/*.cc | xargs -P "$(nproc)" -I{} bash -c '$cxx "$@" -c "{}" -o "$obj/$(basename "{}" .cc).o"' _ "${flags[@]}"
# --exclude-libs: librdkafka's symbols stay private to the addon (no clash with another copy in the process)
# shellcheck disable=SC2046
"$cxx" -shared -o "$out.tmp" "$obj"/*.o "$rdk/lib/librdkafka.a" -Wl,--exclude-libs,ALL -Wl,--as-needed $(cat "$rdk/libs")
objcopy --only-keep-debug "$out.tmp" "$out.debug"
objcopy --strip-debug --add-gnu-debuglink="$out.debug" "$out.tmp"
rm -rf "$obj"
mv "$out.tmp" "$out"
echo "$recipe" >"$out.recipe"
echo "built $out (librdkafka $(cat "$rdk/.built"), static)"
