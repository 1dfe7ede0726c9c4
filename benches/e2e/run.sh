#!/usr/bin/env bash
# veer side by side with nginx and HAProxy, on loopback, in one alternating run.
#
#   benches/e2e/run.sh [--rounds N] [--duration 10s] [--connections 32] [--no-install]
#                      [--out benches/RESULTS.md]
#
# Targets, each with GET and a 1 KiB JSON POST:
#   direct            the backend itself
#   veer              passthrough (one route, one backend)
#   veer-canary       95/5 by a sticky x-user-id hash (wrk cycles 1,000 users)
#   veer-shadow       every request mirrored to a fast shadow and compared
#   veer-shadow-200ms every request mirrored to a shadow that answers after 200 ms
#   nginx             proxy_pass              } when nginx is installed
#   nginx-split       split_clients 95/5      }
#   nginx-mirror      mirror to the fast shadow }
#   haproxy           plain reverse proxy       (when haproxy is installed)
#
# Every proxy has one worker (veer `[runtime] workers = 1`, nginx `worker_processes 1`,
# HAProxy `nbthread 1`), keep-alive upstreams and no access log, and shares one core
# with no one but the other proxies, which are idle while it is measured; wrk and the
# backends share the other core. The backend is nginx when installed (a fixed JSON
# answer), else veer's `model-backend`; the 200 ms shadow is always `model-backend`.
#
# Rounds alternate the targets, so drift on a shared machine falls on all of them;
# the table holds medians. Columns: req/s, p50 and p99 latency, ratio to direct,
# ratio to the nginx counterpart (passthrough and HAProxy: proxy_pass; canary:
# split_clients; shadow: mirror), the proxy's CPU time per request (user + system,
# from /proc), and its RSS idle and at its peak under load. Then: veer's RSS with
# 1,000 idle keep-alive clients and the time veer takes to reload a 1,000-route file
# (veer_config_reload_duration_seconds), and each issue target, met or missed.
#
# Peers are installed with apt-get when missing and this runs as root (--no-install
# turns that off); a peer that cannot be had is skipped with a message. Only loopback
# addresses are used, and every process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=3
DURATION=10s
CONNECTIONS=32
INSTALL=1
OUT=benches/RESULTS.md
while (($#)); do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --out) OUT=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--duration 10s] [--connections 32] [--no-install] [--out FILE]" >&2; exit 2 ;;
  esac
done
((ROUNDS >= 3)) || echo "note: $ROUNDS round(s); medians of fewer than 3 rounds are not comparable"

# --- peers ------------------------------------------------------------------------
have() { command -v "$1" >/dev/null; }
get() { # command, Debian package
  have "$1" && return 0
  if ((INSTALL)) && [[ $(id -u) == 0 ]] && have apt-get; then
    echo "installing $2 ..."
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1; } \
      || true
    # Debian starts the service it installs: stop it, only what this script runs serves.
    if have systemctl; then systemctl stop "$1" >/dev/null 2>&1 || true; fi
  fi
  have "$1"
}
get wrk wrk || { echo "skipped: wrk is not installed and could not be (apt-get install wrk)"; exit 0; }
NGINX_OK=0; get nginx nginx-light && NGINX_OK=1 || echo "skipped: nginx (apt-get install nginx-light): no nginx backend or baselines"
HAPROXY_OK=0; get haproxy haproxy && HAPROXY_OK=1 || echo "skipped: haproxy (apt-get install haproxy)"

# veer as it ships (the dist profile: release with fat LTO); the backend as released.
cargo build --profile dist --quiet --bin veer -p veer
cargo build --release --quiet --bin model-backend -p veer-testkit
VEER_BIN=target/dist/veer

# Two cores or more: proxies on the last, everything else on the first.
CORES=$(nproc)
if ((CORES >= 2)) && have taskset; then
  PROXY_CPU="taskset -c $((CORES - 1))"; LOAD_CPU="taskset -c 0"
else
  PROXY_CPU=""; LOAD_CPU=""; echo "note: fewer than 2 cores (or no taskset): nothing is pinned"
fi

work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ulimit -n 8192 2>/dev/null || true

LIVE=127.0.0.1:19001
FAST=127.0.0.1:19002
SLOW=127.0.0.1:19003
PATH_=/v1/models/churn:predict
declare -A ADDR PIDS

# An nginx of one worker, no access log, its files in $work/NAME, serving the
# http{} block's inside read from stdin (server, upstream and split_clients blocks).
nginx_conf() { # name
  mkdir -p "$work/$1"
  {
    cat <<NGINX
worker_processes 1;
daemon off;
pid $work/$1/nginx.pid;
error_log $work/$1/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work/$1; proxy_temp_path $work/$1;
  fastcgi_temp_path $work/$1; uwsgi_temp_path $work/$1; scgi_temp_path $work/$1;
NGINX
    cat
    echo "}"
  } >"$work/$1/nginx.conf"
}

# --- backends (load core) -----------------------------------------------------------
$LOAD_CPU target/release/model-backend --addr "$SLOW" --name churn-v2-slow --delay 200ms 2>/dev/null & pids+=($!)
if ((NGINX_OK)); then
  nginx_conf backend <<NGINX
  server { listen $LIVE; location / { default_type application/json; return 200 '{"predictions":[0.27,0.73],"model_version":"churn-v1"}'; } }
  server { listen $FAST; location / { default_type application/json; return 200 '{"predictions":[0.27,0.73],"model_version":"churn-v2"}'; } }
NGINX
  $LOAD_CPU nginx -c "$work/backend/nginx.conf" -p "$work/backend" & pids+=($!)
  BACKEND="nginx $(nginx -v 2>&1 | sed 's/.*nginx\///')"
else
  $LOAD_CPU target/release/model-backend --addr "$LIVE" --name churn-v1 2>/dev/null & pids+=($!)
  $LOAD_CPU target/release/model-backend --addr "$FAST" --name churn-v2 2>/dev/null & pids+=($!)
  BACKEND="veer's model-backend (hyper)"
fi
ADDR[direct]=$LIVE

# --- veer (proxy core) ----------------------------------------------------------------
veer_target() { # name, port, route tail (split and sections)
  cat >"$work/$1.toml" <<TOML
[listen]
http = "127.0.0.1:$2"
admin = "127.0.0.1:$(($2 + 100))"
[runtime]
workers = 1
[backends.v1]
url = "http://$LIVE"
[backends.v2]
url = "http://$FAST"
[backends.slow]
url = "http://$SLOW"
timeout = "2s"
[[routes]]
name = "churn"
match = { path_prefix = "/v1/models/churn" }
$3
TOML
  RUST_LOG=warn $PROXY_CPU "$VEER_BIN" run --config "$work/$1.toml" 2>"$work/$1.log" & pids+=($!)
  ADDR[$1]=127.0.0.1:$2; PIDS[$1]=$!
}
COMPARE=$'[routes.compare]\nselect = "/predictions"'
veer_target veer 19080 'split = [ { backend = "v1", weight = 1 } ]'
veer_target veer-canary 19081 $'split = [ { backend = "v1", weight = 95 }, { backend = "v2", weight = 5 } ]\nsplit_by = { header = "x-user-id" }'
veer_target veer-shadow 19082 $'split = [ { backend = "v1", weight = 1 } ]\n[routes.shadow]\nbackend = "v2"\npercent = 100\n'"$COMPARE"
veer_target veer-shadow-200ms 19083 $'split = [ { backend = "v1", weight = 1 } ]\n[routes.shadow]\nbackend = "slow"\npercent = 100\n'"$COMPARE"
targets=(direct veer veer-canary veer-shadow veer-shadow-200ms)

# --- peers (proxy core) ---------------------------------------------------------------
if ((NGINX_OK)); then
  nginx_conf proxy <<NGINX
  upstream live { server $LIVE; keepalive 64; }
  upstream canary { server $FAST; keepalive 64; }
  upstream shadow { server $FAST; keepalive 64; }
  split_clients "\$http_x_user_id" \$pick { 5% canary; * live; }
  server {
    listen 127.0.0.1:19090;
    location / { proxy_pass http://live; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  server {
    listen 127.0.0.1:19091;
    location / { proxy_pass http://\$pick; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  server {
    listen 127.0.0.1:19092;
    location / { mirror /mirror; proxy_pass http://live; proxy_http_version 1.1; proxy_set_header Connection ""; }
    location = /mirror { internal; proxy_pass http://shadow\$request_uri; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
NGINX
  $PROXY_CPU nginx -c "$work/proxy/nginx.conf" -p "$work/proxy" & pids+=($!)
  ADDR[nginx]=127.0.0.1:19090; ADDR[nginx-split]=127.0.0.1:19091; ADDR[nginx-mirror]=127.0.0.1:19092
  for t in nginx nginx-split nginx-mirror; do PIDS[$t]=$!; done
  targets+=(nginx nginx-split nginx-mirror)
fi
if ((HAPROXY_OK)); then
  cat >"$work/haproxy.cfg" <<HAPROXY
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:19093
  default_backend live
backend live
  server live $LIVE
HAPROXY
  $PROXY_CPU haproxy -f "$work/haproxy.cfg" -db 2>"$work/haproxy.log" & pids+=($!)
  ADDR[haproxy]=127.0.0.1:19093; PIDS[haproxy]=$!
  targets+=(haproxy)
fi

for t in "${targets[@]}"; do
  for _ in $(seq 100); do curl -fs -o /dev/null "http://${ADDR[$t]}$PATH_" && continue 2; sleep 0.1; done
  echo "$t did not come up on ${ADDR[$t]}"; cat "$work/$t.log" 2>/dev/null || true; exit 1
done

# --- measuring ------------------------------------------------------------------------
# wrk requests: one pre-formatted request per user (1,000 users), cycled; POST
# carries a 1 KiB KServe V1 body.
cat >"$work/requests.lua" <<'LUA'
local pool, i = {}, 0
init = function(args)
  local method, body = args[1] or "GET", nil
  if method == "POST" then
    local values = {}
    for k = 1, 160 do values[k] = string.format("%.2f", (k * 7919 % 1000) / 10) end
    body = '{"instances": [[' .. table.concat(values, ",") .. ']]}'
    body = body:sub(1, -2) .. string.rep(" ", 1024 - #body) .. "}"
  end
  for u = 1, 1000 do
    pool[u] = wrk.format(method, nil, { ["x-user-id"] = "user-" .. u, ["content-type"] = "application/json" }, body)
  end
end
request = function()
  i = i % #pool + 1
  return pool[i]
end
LUA

TICKS=$(getconf CLK_TCK)
cpu_ticks() { # the process and its children (nginx's worker), user + system
  local total=0 p
  for p in $1 $(pgrep -P "$1" 2>/dev/null); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$total"
}
rss_kib() { # field (VmRSS or VmHWM) of the process and its children
  local total=0 p
  for p in $1 $(pgrep -P "$1" 2>/dev/null); do
    total=$((total + $(awk -v f="$2:" '$1 == f {print $2}' "/proc/$p/status")))
  done
  echo "$total"
}
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; printf "%.3f", v}'; }

for t in "${targets[@]}"; do
  [[ -n ${PIDS[$t]:-} ]] && rss_kib "${PIDS[$t]}" VmRSS >"$work/$t.rss-idle"
done

measure() { # target, method: appends "rps p50 p99 cpu_us" to $work/target.method
  local t=$1 m=$2 pid=${PIDS[$1]:-} before=0 after=0
  $LOAD_CPU wrk -t1 -c"$CONNECTIONS" -d2s -s "$work/requests.lua" "http://${ADDR[$t]}$PATH_" -- "$m" >/dev/null
  [[ -n $pid ]] && before=$(cpu_ticks "$pid")
  $LOAD_CPU wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$work/requests.lua" "http://${ADDR[$t]}$PATH_" -- "$m" >"$work/wrk.out"
  [[ -n $pid ]] && after=$(cpu_ticks "$pid")
  if grep -qE "Non-2xx|Socket errors" "$work/wrk.out"; then
    echo "  $t $m: $(grep -E 'Non-2xx|Socket errors' "$work/wrk.out" | tr -s ' ' | tr '\n' ';')"
  fi
  local rps n p50 p99 cpu
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
  n=$(awk '/requests in/ {print $1}' "$work/wrk.out")
  p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.out" | to_ms)
  p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.out" | to_ms)
  cpu=$(awk -v d=$((after - before)) -v n="$n" -v hz="$TICKS" 'BEGIN {printf "%.1f", (n > 0 ? d * 1e6 / hz / n : 0)}')
  echo "$rps $p50 $p99 $cpu" >>"$work/$t.$m"
  printf '  %-18s %-4s %9.0f req/s  p50 %6.2f ms  p99 %6.2f ms  %6s µs CPU/req\n' "$t" "$m" "$rps" "$p50" "$p99" "$([[ -n $pid ]] && echo "$cpu" || echo -)"
}

echo "wrk -t1 -c$CONNECTIONS -d$DURATION, $ROUNDS alternating rounds; backend: $BACKEND"
for r in $(seq "$ROUNDS"); do
  echo "round $r"
  for t in "${targets[@]}"; do
    for m in GET POST; do measure "$t" "$m"; done
  done
done

# Peak RSS under load, read now: the idle-clients check below raises veer's.
for t in "${targets[@]}"; do
  [[ -n ${PIDS[$t]:-} ]] && rss_kib "${PIDS[$t]}" VmHWM >"$work/$t.rss-peak"
done

# --- veer alone: 1,000 idle keep-alive clients; reloading 1,000 routes -------------------
idle_rss=$(python3 - "${ADDR[veer]}" "${PIDS[veer]}" <<'PY'
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
conns = []
for _ in range(1000):
    s = socket.create_connection((host, int(port)))
    s.sendall(b"GET /v1/models/churn:predict HTTP/1.1\r\nhost: veer\r\n\r\n")
    conns.append(s)
for s in conns:
    s.settimeout(5)
    s.recv(65536)
time.sleep(0.5)
rss = 0
for line in open(f"/proc/{sys.argv[2]}/status"):
    if line.startswith("VmRSS:"):
        rss = int(line.split()[1])
print(rss)
PY
)

{
  echo "[listen]"; echo 'http = "127.0.0.1:19380"'; echo 'admin = "127.0.0.1:19480"'
  echo "[backends.v1]"; echo "url = \"http://$LIVE\""
  for i in $(seq 1000); do
    echo "[[routes]]"; echo "name = \"r$i\""; echo "match = { path_prefix = \"/m$i/\" }"
    echo 'split = [ { backend = "v1", weight = 1 } ]'
  done
} >"$work/routes-1000.toml"
RUST_LOG=warn "$VEER_BIN" run --config "$work/routes-1000.toml" 2>"$work/routes-1000.log" & pids+=($!)
up=0; for _ in $(seq 100); do curl -fs -o /dev/null http://127.0.0.1:19480/livez && { up=1; break; }; sleep 0.1; done
((up)) || { echo "veer with 1,000 routes did not come up:"; cat "$work/routes-1000.log"; exit 1; }
reload_sum() { curl -fs http://127.0.0.1:19480/metrics | awk '$1 == "veer_config_reload_duration_seconds_sum" {print $2}'; }
# Each reload is of a changed file (the last route's prefix toggles), as an edit is.
for i in $(seq 5); do
  sed -i "s|/m1000[a-z]*/|/m1000$( ((i % 2)) && echo b)/|" "$work/routes-1000.toml"
  a=$(reload_sum); curl -fs -o /dev/null -X POST http://127.0.0.1:19480/-/reload; b=$(reload_sum)
  awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f\n", (b - a) * 1000}' >>"$work/reload.ms"
done

# --- the table ----------------------------------------------------------------------------
median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print 0; else print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
col() { awk -v c="$2" '{print $c}' "$work/$1" | median; }
counterpart() {
  case $1 in veer|haproxy) echo nginx ;; veer-canary) echo nginx-split ;; veer-shadow) echo nginx-mirror ;; *) echo "" ;; esac
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else printf "-"}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

table="$work/table.md"
{
  echo "| target | method | req/s | p50 ms | p99 ms | × direct | × nginx | CPU µs/req | RSS idle MiB | RSS peak MiB |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  for t in "${targets[@]}"; do
    for m in GET POST; do
      rps=$(col "$t.$m" 1); other=$(counterpart "$t")
      vs_nginx="-"; [[ -n $other && -f $work/$other.$m ]] && vs_nginx="$(ratio "$rps" "$(col "$other.$m" 1)") ($other)"
      if [[ -n ${PIDS[$t]:-} ]]; then
        cpu=$(col "$t.$m" 4); idle=$(mib "$(cat "$work/$t.rss-idle")"); peak=$(mib "$(cat "$work/$t.rss-peak")")
      else cpu="-"; idle="-"; peak="-"; fi
      printf '| %s | %s | %.0f | %.2f | %.2f | %s | %s | %s | %s | %s |\n' "$t" "$m" "$rps" "$(col "$t.$m" 2)" "$(col "$t.$m" 3)" \
        "$(ratio "$rps" "$(col "direct.$m" 1)")" "$vs_nginx" "$cpu" "$idle" "$peak"
    done
  done
} >"$table"

verdict() { # value, >= or <=, goal, unit: "0.93× (goal ≥ 0.97×): MISSED"
  awk -v v="$1" -v op="$2" -v goal="$3" -v u="$4" 'BEGIN {
    ok = (op == ">=") ? v >= goal : v <= goal
    printf "%s%s (goal %s %s%s): %s", v, u, (op == ">=") ? "≥" : "≤", goal, u, ok ? "met" : "**missed**" }'
}
g() { col "$1.$2" "$3"; }
targets_md="$work/targets.md"
{
  if [[ -f $work/nginx.GET ]]; then
    for m in GET POST; do
      echo "- passthrough $m vs nginx proxy_pass, req/s: $(verdict "$(ratio "$(g veer $m 1)" "$(g nginx $m 1)")" ">=" 1.2 ×); p99: $(verdict "$(g veer $m 3)" "<=" "$(g nginx $m 3)" " ms")"
      echo "- shadow 100 % $m vs nginx mirror: $(verdict "$(ratio "$(g veer-shadow $m 1)" "$(g nginx-mirror $m 1)")" ">=" 4 ×)"
    done
  fi
  for m in GET POST; do
    echo "- canary $m vs passthrough: $(verdict "$(ratio "$(g veer-canary $m 1)" "$(g veer $m 1)")" ">=" 0.97 ×)"
    echo "- shadow 100 % $m vs passthrough: $(verdict "$(ratio "$(g veer-shadow $m 1)" "$(g veer $m 1)")" ">=" 0.5 ×)"
    echo "- 200 ms shadow $m, live vs passthrough: $(verdict "$(ratio "$(g veer-shadow-200ms $m 1)" "$(g veer $m 1)")" ">=" 0.95 ×)"
  done
  echo "- veer RSS idle: $(verdict "$(mib "$(cat "$work/veer.rss-idle")")" "<=" 12 " MiB")"
  echo "- veer RSS peak under $CONNECTIONS connections: $(verdict "$(mib "$(cat "$work/veer.rss-peak")")" "<=" 32 " MiB")"
  echo "- veer RSS with 1,000 idle keep-alive clients: $(verdict "$(mib "$idle_rss")" "<=" 64 " MiB")"
  echo "- reload of a 1,000-route file (median of 5, veer_config_reload_duration_seconds): $(verdict "$(median <"$work/reload.ms")" "<=" 10 " ms")"
} >"$targets_md"

echo
cat "$table"
echo
cat "$targets_md"

{
  echo "# Load benchmark results"
  echo
  echo "Written by \`benches/e2e/run.sh --rounds $ROUNDS --duration $DURATION --connections $CONNECTIONS\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
  echo
  echo "- machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), Linux $(uname -r); shared, so read medians and ratios, not absolute figures"
  echo "- pinning: proxies on CPU $((CORES - 1)), wrk and the backends on CPU 0 (${PROXY_CPU:-none})"
  echo "- load: wrk -t1 -c$CONNECTIONS -d$DURATION after a 2 s warm-up, 1,000 users cycled by x-user-id; GET, and POST of a 1 KiB KServe V1 body"
  echo "- backend: $BACKEND; the 200 ms shadow is model-backend --delay 200ms"
  echo "- peers: $( ((NGINX_OK)) && nginx -v 2>&1 | sed 's/^nginx version: //' || echo 'nginx skipped'), $( ((HAPROXY_OK)) && haproxy -v 2>/dev/null | awk 'NR == 1 {print "HAProxy " $3}' || echo 'HAProxy skipped'), $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
  echo "- veer: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff HEAD --quiet -- . ":!$OUT" 2>/dev/null || echo ' (with uncommitted changes)'), dist profile (release, fat LTO)"
  echo
  echo "Medians of $ROUNDS rounds. × nginx is against the nginx setup named beside it."
  echo
  cat "$table"
  echo
  echo "## The targets (issue 12)"
  echo
  cat "$targets_md"
} >"$OUT"
echo
echo "written to $OUT"
