# consultd: build in the Rust image, run in a slim Debian with curl for the healthcheck.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin consultd

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/consultd /usr/local/bin/consultd
ENV HOST=0.0.0.0 \
    PORT=4000 \
    CONSULTD_DATA_DIR=/var/lib/consultd
VOLUME /var/lib/consultd
EXPOSE 4000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:4000/readyz || exit 1
ENTRYPOINT ["consultd"]
CMD ["serve"]
