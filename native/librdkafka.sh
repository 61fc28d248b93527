#!/usr/bin/env bash
# Builds librdkafka (static library and headers) from the source shipped in the npm package
# @confluentinc/kafka-javascript, once per version, into .cache/librdkafka-<version>/, and prints
# that folder. Later runs only print it. Needs g++, make and the -dev packages of the libraries
# it links (scripts/setup.sh installs them): libssl-dev zlib1g-dev libzstd-dev liblz4-dev libsasl2-dev.
#
# Another version: set all three (npm view @confluentinc/kafka-javascript@<v> dist.integrity, and
# the librdkafka version in that package's deps/librdkafka/src/rdkafka.h):
#   LIBRDKAFKA_VERSION=2.x.y LIBRDKAFKA_NPM_VERSION=1.a.b LIBRDKAFKA_NPM_INTEGRITY=sha512-... native/librdkafka.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

version=${LIBRDKAFKA_VERSION:-2.15.1}
npm_version=${LIBRDKAFKA_NPM_VERSION:-1.10.1}
integrity=${LIBRDKAFKA_NPM_INTEGRITY:-sha512-KVePUBn21EqCVP9mfxzEuM3SYJHHEF7X+iiC2e43QQgDSyEaksInmCGooT3w5q+cNAdkSCrK71j0ICfqoSqZLw==}
cache=${LIBRDKAFKA_CACHE:-$root/.cache}
prefix="$cache/librdkafka-$version"
stamp="$prefix/.built"

if [ -f "$stamp" ]; then echo "$prefix"; exit 0; fi
mkdir -p "$cache"
# one build at a time (setup may run from several test runs at once)
exec 9>"$cache/librdkafka.lock"
flock 9
if [ -f "$stamp" ]; then echo "$prefix"; exit 0; fi

start=$(date +%s)
work=$(mktemp -d "$cache/librdkafka-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "librdkafka: fetching @confluentinc/kafka-javascript@$npm_version (librdkafka $version source)" >&2
tgz=$(cd "$work" && npm pack --silent "@confluentinc/kafka-javascript@$npm_version" | tail -1)
got=$(node -e 'const f = process.argv[1]; process.stdout.write("sha512-" + require("crypto").createHash("sha512").update(require("fs").readFileSync(f)).digest("base64"))' "$work/$tgz")
if [ "$got" != "$integrity" ]; then
  echo "librdkafka: integrity mismatch for $tgz: expected $integrity, got $got" >&2
  exit 1
fi
tar -xzf "$work/$tgz" -C "$work" package/deps/librdkafka
src="$work/package/deps/librdkafka"
hex=$(awk '/^#define RD_KAFKA_VERSION /{print $3}' "$src/src/rdkafka.h")
want=$(printf '0x%02x%02x%02xff' ${version//./ })
if [ "$hex" != "$want" ]; then
  echo "librdkafka: the package ships RD_KAFKA_VERSION $hex, expected $want ($version)" >&2
  exit 1
fi

echo "librdkafka: building $version (a minute or two)" >&2
(
  cd "$src"
  # SSL, SASL (GSSAPI via Cyrus; SCRAM and OAUTHBEARER built in), zstd and zlib are required, not
  # just tried: a missing -dev package fails here instead of building a client without them
  ./configure --disable-curl --enable-static --no-download \
    --enable-ssl --enable-gssapi --enable-zstd --enable-zlib >"$work/configure.log" 2>&1 \
    || { cat "$work/configure.log" >&2; exit 1; }
  make -j"$(nproc)" libs >"$work/make.log" 2>&1 || { tail -50 "$work/make.log" >&2; exit 1; }
)
sed -n 's/^BUILT_WITH=[[:space:]]*/librdkafka: built with /p' "$src/Makefile.config" >&2

rm -rf "$prefix"
mkdir -p "$prefix/include/librdkafka" "$prefix/lib"
cp "$src/src/rdkafka.h" "$src/src/rdkafka_mock.h" "$prefix/include/librdkafka/"
cp "$src/src/librdkafka.a" "$prefix/lib/"
cp "$src/LICENSE" "$prefix/"
# what the static library needs from the system, for the addon's link line
sed -n 's/^MKL_DYNAMIC_LIBS=[[:space:]]*//p' "$src/Makefile.config" >"$prefix/libs"
[ -s "$prefix/libs" ] || { echo "librdkafka: no MKL_DYNAMIC_LIBS in Makefile.config" >&2; exit 1; }
echo "$version" >"$stamp"
echo "librdkafka: $version built in $(($(date +%s) - start)) s into $prefix" >&2
echo "$prefix"
