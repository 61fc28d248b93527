#!/usr/bin/env bash
# Prints the shared libraries FILE needs that gcr.io/distroless/cc-debian12 does not have
# (it has glibc, libgcc_s and libstdc++): the Dockerfile copies exactly these into the image.
set -euo pipefail
# provided by the distroless cc image
base='^(linux-vdso\.so\.1|ld-linux-x86-64\.so\.2|libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|libgcc_s\.so\.1|libstdc\+\+\.so\.6)$'
ldd "${1:?usage: runtime-libs.sh FILE}" | awk '/=> \// {print $1, $3}' | while read -r name path; do
  [[ "$name" =~ $base ]] || echo "$path"
done
