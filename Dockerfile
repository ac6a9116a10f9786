# Multi-stage build: compile with the Rust toolchain, run on a small Debian
# image as an unprivileged user.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml clippy.toml ./
COPY actors actors
COPY wire wire
COPY gateway gateway
COPY src src
COPY sql sql
COPY config config
COPY benches benches
COPY assets assets
RUN cargo build --release --locked --bin stockbot \
 && strip target/release/stockbot

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/stockbot --create-home stockbot
COPY --from=build /src/target/release/stockbot /usr/local/bin/stockbot
COPY config /etc/stockbot/config
USER stockbot
WORKDIR /var/lib/stockbot
ENV STOCKBOT_BIND=0.0.0.0:8080 \
    STOCKBOT_DATA_DIR=/var/lib/stockbot/data \
    STOCKBOT_LOG_FORMAT=json \
    RUST_LOG=info
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["stockbot"]
CMD ["serve"]
