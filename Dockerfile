# syntax=docker/dockerfile:1
# consultd: build in the Rust image, the demo's socket.io-client with npm,
# run in a slim Debian with curl for the healthcheck, as a non-root user.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target/ live in BuildKit cache mounts: after any edit
# (even to the README) only consultd's own crates compile again, not its
# ~400 dependencies. The binary leaves the cache stripped (≈130 MB with
# line tables, ≈20 MB without).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin consultd \
 && strip --strip-all -o /consultd target/release/consultd

FROM node:20-bookworm-slim AS web
WORKDIR /web
COPY examples/web/package.json examples/web/package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/consultd --shell /usr/sbin/nologin consultd \
 && install -d -o consultd -g consultd -m 0700 /var/lib/consultd
COPY --from=build /consultd /usr/local/bin/consultd
# The demo page, served only when DEMO is set (`--demo`).
COPY examples/web/index.html examples/web/app.js examples/web/style.css /usr/share/consultd/demo/
COPY --from=web /web/node_modules/socket.io-client/dist/socket.io.min.js /usr/share/consultd/demo/node_modules/socket.io-client/dist/
ENV HOST=0.0.0.0 \
    PORT=4000 \
    CONSULTD_DATA_DIR=/var/lib/consultd \
    DEMO_DIR=/usr/share/consultd/demo
# A new named volume takes this directory's owner, so the unprivileged
# user can write the generated JWT secret there.
VOLUME /var/lib/consultd
USER consultd
EXPOSE 4000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:4000/readyz || exit 1
ENTRYPOINT ["consultd"]
CMD ["serve"]
