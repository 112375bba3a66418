# The tweetoscope image: the one binary, the dataflow configs and the bundled sample.
#
#   docker build -t tweetoscope:0.1.0 .
#   docker run --rm tweetoscope:0.1.0                 # the embedded replay of the sample
#   docker run --rm tweetoscope:0.1.0 live --brokers HOST:9092 --metrics-addr 0.0.0.0:9464
#
# On Kubernetes the StatefulSet runs `tweetoscope hostfile … -- live …` (k8s/README.md).
# scripts/k8s-check lints this file (hadolint) and runs the build stage's COPY/RUN steps as
# a script on this machine; no Docker engine runs there (see k8s/README.md).

# ---- build: the pinned toolchain (the rust-version of Cargo.toml is the minimum) -----------
FROM rust:1.95.0-bookworm AS build
WORKDIR /src
# rdkafka-sys builds librdkafka from source with make and the C compiler of this image, with
# TLS and SASL against Debian's OpenSSL 3 (libssl-dev and pkg-config are in this image).
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY src src
COPY dataflows dataflows
# The manifest declares a [[bench]] target: cargo must find its source to parse Cargo.toml.
COPY benches benches
# (Relative paths only: scripts/k8s-check replays these steps in a scratch folder.)
RUN cargo build --release --locked --bin tweetoscope \
    && install -D -m 0755 target/release/tweetoscope dist/tweetoscope

# ---- runtime: a small base, a non-root user --------------------------------------------------
FROM debian:bookworm-slim
# The binary needs libc, libm, libgcc_s and libz, all in this base, and OpenSSL 3 (libssl3:
# TLS to Kafka), installed here with the CA bundle for publicly signed brokers (checked by
# scripts/k8s-check against the binary's dynamic section). Unpinned on purpose: bookworm's
# security updates of libssl3 must reach the image at its next build.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libssl3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 tweetoscope \
    && useradd --system --uid 10001 --gid tweetoscope --home-dir /opt/tweetoscope \
       --no-create-home --shell /usr/sbin/nologin tweetoscope
COPY --from=build /src/dist/tweetoscope /usr/local/bin/tweetoscope
WORKDIR /opt/tweetoscope
COPY dataflows dataflows
COPY data/seismic-tideh100 data/seismic-tideh100
# Relative paths (the configs' [input] path, `generate --input data/…`) resolve here.
ENV TWEETOSCOPE_HOME=/opt/tweetoscope
USER 10001:10001
# 9464: /metrics, the live page, /healthz (bind with --metrics-addr 0.0.0.0:9464);
# 2101: timely's process-to-process connections.
EXPOSE 9464 2101
ENTRYPOINT ["tweetoscope"]
