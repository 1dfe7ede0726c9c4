# syntax=docker/dockerfile:1
# veer: a reverse proxy for rolling out ML model versions.
#
# Build it, then try it against the two demo model versions, each in its own
# container on one user network (the image's routing file, deploy/docker/veer.toml,
# names them churn-v1 and churn-v2):
#
#   docker build -t veer:0.1.0 .
#   docker network create veer-demo
#   docker run -d --rm --network veer-demo --name churn-v1 veer:0.1.0 demo --backend-only v1 --port 8080
#   docker run -d --rm --network veer-demo --name churn-v2 veer:0.1.0 demo --backend-only v2 --port 8080
#   docker run -d --rm --network veer-demo --name veer -p 8080:8080 -p 127.0.0.1:9901:9901 veer:0.1.0
#   curl -s -H 'x-user-id: 42' localhost:8080/v1/models/churn:predict -d '{"instances": [[3, 70, 210, 4]]}'
#
# The dashboard is then at http://127.0.0.1:9901/ (the admin port is published on
# the host's loopback only). Your own routing file: add
# -v $PWD/veer.toml:/etc/veer/veer.toml:ro to the last run, and make it listen on
# 0.0.0.0 with log_dir = "/var/lib/veer", as deploy/docker/veer.toml does.

# --- build: BuildKit cache mounts keep the registry and compiled dependencies between
# builds, so no list of crates to stub here can drift from the workspace.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked --bin veer \
 && cp target/dist/veer /usr/local/bin/veer

# --- run: a small image, no shell tools needed, not root -----------------------------
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home veer \
 && mkdir -p /var/lib/veer && chown 10001:10001 /var/lib/veer
COPY --from=build /usr/local/bin/veer /usr/local/bin/veer
COPY deploy/docker/veer.toml /etc/veer/veer.toml
USER 10001
# Client traffic and the admin listener (metrics, health, reload, dashboard).
EXPOSE 8080 9901
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/veer", "--log-format", "json"]
CMD ["run", "--config", "/etc/veer/veer.toml"]
