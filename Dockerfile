# AuthMCP Gateway image: the release binary, with the admin SPA built into it.
# Build: docker build -t authmcp-gateway .   Run: docker compose up

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Installs the wasm target, trunk, wasm-bindgen and wasm-opt, then builds web/dist, which the
# release build embeds (server/build.rs).
RUN cargo xtask build-web \
 && cargo build --release --locked --package authmcp-gateway

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data authmcp \
 && mkdir -p /data /keys && chown authmcp /data /keys
COPY --from=build /src/target/release/authmcp-gateway /usr/local/bin/authmcp-gateway
ENV GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8000 \
    DATA_DIR=/data \
    KEY_DIR=/keys \
    LOG_FORMAT=json
USER authmcp
# The generated encryption key (when ENCRYPTION_KEY is not given) on its own volume: the
# database's volume and its snapshots do not carry the key to its secrets.
VOLUME ["/data", "/keys"]
EXPOSE 8000
# The binary asks itself (GET /ready on its own port): no shell, no curl in the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s CMD ["/usr/local/bin/authmcp-gateway", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/authmcp-gateway"]
CMD ["serve"]
