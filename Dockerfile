# veer: a reverse proxy for rolling out ML model versions.
#
#   docker build -t veer .
#   docker run -p 8080:8080 -p 9901:9901 -v $PWD/config/veer.toml:/etc/veer/veer.toml veer

# --- build: dependencies first, so source edits do not rebuild them ---------------
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates/config/Cargo.toml crates/config/Cargo.toml
COPY crates/route/Cargo.toml crates/route/Cargo.toml
COPY crates/compare/Cargo.toml crates/compare/Cargo.toml
COPY crates/telemetry/Cargo.toml crates/telemetry/Cargo.toml
COPY crates/proxy/Cargo.toml crates/proxy/Cargo.toml
COPY crates/testkit/Cargo.toml crates/testkit/Cargo.toml
# Stub every target so `cargo fetch`/`build` can resolve and cache the dependencies.
RUN for c in config route compare telemetry proxy testkit; do \
      mkdir -p crates/$c/src && echo "" > crates/$c/src/lib.rs; done \
 && mkdir -p src benches crates/testkit/src/bin \
 && echo "fn main() {}" > src/main.rs \
 && echo "fn main() {}" > crates/testkit/src/bin/model-backend.rs \
 && echo "fn main() {}" > benches/route.rs && echo "fn main() {}" > benches/compare.rs \
 && cargo build --release --locked --bin veer \
 && rm -rf src crates/*/src
COPY src src
COPY crates crates
COPY config config
RUN touch src/main.rs crates/*/src/lib.rs && cargo build --release --locked --bin veer

# --- run: a small image, no shell tools needed, not root -----------------------------
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home veer
COPY --from=build /src/target/release/veer /usr/local/bin/veer
COPY config/veer.toml /etc/veer/veer.toml
USER 10001
# Client traffic and the admin listener (metrics, health, reload, dashboard). The
# config must listen on 0.0.0.0 for these to be reachable from outside the container.
EXPOSE 8080 9901
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/veer", "--log-format", "json"]
CMD ["run", "--config", "/etc/veer/veer.toml"]
