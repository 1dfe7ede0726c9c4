#!/usr/bin/env bash
# End-to-end load benchmark on loopback, every target measured in the same run (the
# machines are shared and noisy: compare medians and ratios, not absolute figures):
#
#   direct        the model backend itself
#   veer          veer passthrough (one route, one backend)
#   veer-shadow   veer with every request mirrored to a second backend and compared
#   nginx, nginx-mirror   the same two setups in nginx, when nginx is installed
#
#   benches/load.sh [DURATION] [CONNECTIONS] [ROUNDS]     (defaults: 10s 32 1)
#
# Needs wrk (Debian package `wrk`); nginx is optional. Only loopback addresses are
# used; every process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-10s}
CONNECTIONS=${2:-32}
ROUNDS=${3:-1}
LIVE=127.0.0.1:18001
SHADOW=127.0.0.1:18002
VEER=127.0.0.1:18080
VEER_SHADOW=127.0.0.1:18081
NGINX=127.0.0.1:18090
NGINX_MIRROR=127.0.0.1:18091
URL_PATH=/v1/models/churn:predict

command -v wrk >/dev/null || { echo "skipped: wrk is not installed (apt-get install wrk)"; exit 0; }

cargo build --release --quiet --bin veer -p veer --bin model-backend -p veer-testkit
workdir=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$workdir"; }
trap cleanup EXIT

target/release/model-backend --addr "$LIVE" --name churn-v1 2>/dev/null & pids+=($!)
target/release/model-backend --addr "$SHADOW" --name churn-v1 2>/dev/null & pids+=($!)

veer_config() { # listen, then an optional [routes.shadow] section
  cat <<TOML
[listen]
http = "$1"
admin = "127.0.0.1:0"
[backends.v1]
url = "http://$LIVE"
[backends.v2]
url = "http://$SHADOW"
[[routes]]
name = "churn"
match = { path_prefix = "/v1/models/churn" }
split = [ { backend = "v1", weight = 1 } ]
$2
TOML
}
veer_config "$VEER" "" >"$workdir/veer.toml"
veer_config "$VEER_SHADOW" $'[routes.shadow]\nbackend = "v2"\npercent = 100\n[routes.compare]\nselect = "/predictions"' >"$workdir/veer-shadow.toml"
RUST_LOG=warn target/release/veer run --config "$workdir/veer.toml" 2>"$workdir/veer.log" & pids+=($!)
RUST_LOG=warn target/release/veer run --config "$workdir/veer-shadow.toml" 2>"$workdir/veer-shadow.log" & pids+=($!)
targets=(direct:$LIVE veer:$VEER veer-shadow:$VEER_SHADOW)

if command -v nginx >/dev/null; then
  mkdir -p "$workdir/nginx"
  cat >"$workdir/nginx/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
error_log $workdir/nginx/error.log;
pid $workdir/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $workdir/nginx; proxy_temp_path $workdir/nginx;
  fastcgi_temp_path $workdir/nginx; uwsgi_temp_path $workdir/nginx; scgi_temp_path $workdir/nginx;
  upstream live { server $LIVE; keepalive 64; }
  upstream shadow { server $SHADOW; keepalive 64; }
  server {
    listen $NGINX;
    location / { proxy_pass http://live; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  server {
    listen $NGINX_MIRROR;
    location / { mirror /mirror; proxy_pass http://live; proxy_http_version 1.1; proxy_set_header Connection ""; }
    location = /mirror { internal; proxy_pass http://shadow\$request_uri; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGINX
  nginx -c "$workdir/nginx/nginx.conf" -p "$workdir/nginx" & pids+=($!)
  targets+=(nginx:$NGINX nginx-mirror:$NGINX_MIRROR)
else
  echo "nginx not installed: its baselines are skipped (apt-get install nginx-light)"
fi

wait_up() { for _ in $(seq 100); do curl -fs -o /dev/null "http://$1$URL_PATH" && return 0; sleep 0.1; done; echo "$1 did not come up"; exit 1; }
for t in "${targets[@]}"; do wait_up "${t#*:}"; done

# One wrk run: prints "label req/s p99" and keeps req/s for the medians.
measure() {
  wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "http://$2$URL_PATH" >"$workdir/wrk.out"
  local rps p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$workdir/wrk.out")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' "$workdir/wrk.out")
  grep -E "Non-2xx|Socket errors" "$workdir/wrk.out" || true
  printf '%-13s %9.0f req/s   p99 %7.2f ms\n' "$1" "$rps" "$p99"
  echo "$rps" >>"$workdir/$1.rps"
  echo "$p99" >>"$workdir/$1.p99"
}

echo "wrk -t1 -c$CONNECTIONS -d$DURATION, $ROUNDS round(s), GET $URL_PATH"
for _ in $(seq "$ROUNDS"); do
  for t in "${targets[@]}"; do measure "${t%%:*}" "${t#*:}"; done
done

median() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo "medians:"
for t in "${targets[@]}"; do
  name=${t%%:*}
  printf '  %-13s %9.0f req/s   p99 %7.2f ms\n' "$name" "$(median "$workdir/$name.rps")" "$(median "$workdir/$name.p99")"
done
ratio() { awk -v a="$(median "$workdir/$1.rps")" -v b="$(median "$workdir/$2.rps")" 'BEGIN {printf "%.2f", a/b}'; }
echo "ratios: veer/direct $(ratio veer direct), veer-shadow/veer $(ratio veer-shadow veer)"
if [[ -f "$workdir/nginx.rps" ]]; then
  echo "        nginx/direct $(ratio nginx direct), nginx-mirror/nginx $(ratio nginx-mirror nginx)"
fi
