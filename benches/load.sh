#!/usr/bin/env bash
# End-to-end load benchmark: the same backend measured directly and through
# `veer run`, one after the other in the same run (the machines are shared and noisy:
# compare the ratio, not the absolute figures).
#
#   benches/load.sh [DURATION] [CONNECTIONS] [ROUNDS]     (defaults: 10s 32 1)
#
# Needs wrk (Debian package `wrk`). Only loopback addresses are used; every process
# started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-10s}
CONNECTIONS=${2:-32}
ROUNDS=${3:-1}
BACKEND=127.0.0.1:18001
PROXY=127.0.0.1:18080
URL_PATH=/v1/models/churn:predict

command -v wrk >/dev/null || { echo "skipped: wrk is not installed (apt-get install wrk)"; exit 0; }

cargo build --release --quiet --bin veer -p veer --bin model-backend -p veer-testkit
workdir=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$workdir"; }
trap cleanup EXIT

target/release/model-backend --addr "$BACKEND" --name churn-v1 2>/dev/null &
pids+=($!)
cat >"$workdir/bench.toml" <<TOML
[listen]
http = "$PROXY"
[backends.churn-v1]
url = "http://$BACKEND"
[[routes]]
name = "churn"
match = { path_prefix = "/v1/models/churn" }
split = [ { backend = "churn-v1", weight = 1 } ]
TOML
RUST_LOG=warn target/release/veer run --config "$workdir/bench.toml" 2>"$workdir/veer.log" &
pids+=($!)

wait_up() { for _ in $(seq 100); do curl -fs -o /dev/null "http://$1$URL_PATH" && return 0; sleep 0.1; done; echo "$1 did not come up"; exit 1; }
wait_up "$BACKEND"
wait_up "$PROXY"

# "label req/s p99_ms" from one wrk run.
measure() {
  wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "http://$2$URL_PATH" >"$workdir/wrk.out"
  local rps p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$workdir/wrk.out")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' "$workdir/wrk.out")
  if grep -q "Non-2xx\|Socket errors" "$workdir/wrk.out"; then grep "Non-2xx\|Socket errors" "$workdir/wrk.out"; fi
  printf '%-8s %10.0f req/s   p99 %7.2f ms\n' "$1" "$rps" "$p99"
  echo "$rps" >>"$workdir/$1.rps"
}

echo "wrk -t1 -c$CONNECTIONS -d$DURATION, $ROUNDS round(s), GET $URL_PATH"
for _ in $(seq "$ROUNDS"); do
  measure direct "$BACKEND"
  measure veer "$PROXY"
done
median() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
d=$(median "$workdir/direct.rps"); v=$(median "$workdir/veer.rps")
awk -v d="$d" -v v="$v" 'BEGIN {printf "median: direct %.0f req/s, veer %.0f req/s, ratio %.2f\n", d, v, v/d}'
