# One image for every Hush service: `hush serve <service>` picks which one runs.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p hush

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 hush \
    && mkdir -p /var/lib/hush-audit && chown hush /var/lib/hush-audit
COPY --from=build /src/target/release/hush /usr/local/bin/hush
USER hush
ENTRYPOINT ["hush"]
