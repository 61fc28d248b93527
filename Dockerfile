# cdc-sink: built on Debian bookworm with Bun, run on distroless as a non-root user.
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      nodejs npm g++ make pkg-config ca-certificates \
      libssl-dev zlib1g-dev libzstd-dev liblz4-dev libsasl2-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
COPY scripts/patch-deps.mjs scripts/
RUN npm ci --no-audit --no-fund
# librdkafka built from the npm package's source (its own layer: rebuilt only when the script changes)
COPY native/librdkafka.sh native/
RUN native/librdkafka.sh
# the addon, librdkafka linked in statically
COPY native/build.sh native/
COPY native/src native/src
RUN native/build.sh
COPY tsconfig.json bunfig.toml ./
COPY src src
RUN node_modules/.bin/bun run build
# the system libraries the addon links that the distroless base lacks (ssl, crypto, sasl2, zstd, z)
COPY scripts/runtime-libs.sh scripts/
RUN mkdir -p /out/lib /out/tmp \
 && scripts/runtime-libs.sh native/build/cdc_kafka.node | xargs -r -I{} cp -L {} /out/lib/ \
 && chmod 1777 /out/tmp

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/lib/ /usr/lib/x86_64-linux-gnu/
# the compiled binary extracts its embedded addon to a temporary directory at start
COPY --from=build --chown=65532:65532 /out/tmp /tmp
COPY --from=build /src/dist/cdc-sink /usr/local/bin/cdc-sink
ENV TMPDIR=/tmp
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/cdc-sink"]
CMD ["run", "--config", "/etc/cdc-sink/sink.toml"]
