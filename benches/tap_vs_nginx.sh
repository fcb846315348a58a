#!/usr/bin/env bash
# The tap against nginx, side by side in one run, on this machine, with wrk as the client.
#
#   1. recording on:   nginx `proxy_pass` (worker_processes 1) vs `shadowdiff tap --threads 1`,
#                      same upstream (an nginx `return 200`); throughput at $CONC connections
#                      and p99 added latency at $LAT_CONC connections (p99 through the proxy
#                      minus p99 straight to the upstream).
#   2. live shadow:    nginx `mirror` to a second upstream vs the tap with --shadow at 100%.
#   3. broken disk:    the tap recording into a directory it cannot write, and onto a slow
#                      disk (a delay before every write): same statuses, share of throughput.
#   4. memory:         the tap's RSS across a sustained run.
#
# nginx is measured twice: its default `proxy_pass` (a new upstream connection per request,
# HTTP/1.0) and tuned with upstream keepalive (the fair comparison; the ratios use it).
# Absolute figures move on a shared machine; the ratios are what to read.
#
#   benches/tap_vs_nginx.sh              # 10 s per run
#   DURATION=5s benches/tap_vs_nginx.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONC=${CONC:-64}
LAT_CONC=${LAT_CONC:-4}
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { apt-get update -qq && apt-get install -y -qq nginx-light; }
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release --quiet --bin shadowdiff
BIN=$PWD/target/release/shadowdiff
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "$work"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

nginx_conf() { # name port body
  local d=$work/$1; mkdir -p "$d"
  cat > "$d/nginx.conf" <<CONF
worker_processes 1;
error_log $d/error.log error;
pid $work/$1.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $d; proxy_temp_path $d; fastcgi_temp_path $d; uwsgi_temp_path $d; scgi_temp_path $d;
  default_type application/json;
  keepalive_requests 1000000;
$3
  server {
    listen 127.0.0.1:$2;
$4
  }
}
CONF
  "$NGINX" -p "$d" -c "$d/nginx.conf"
  wait_port "$2"
}

BODY='{"id":17,"name":"widget","price":12.5,"tags":["a","b"],"stock":{"warehouse":"north","count":42}}'
UP=$(free_port); nginx_conf up "$UP" "" "    location / { return 200 '$BODY'; }"
CAND=$(free_port); nginx_conf cand "$CAND" "" "    location / { return 200 '$BODY'; }"

KA="  upstream prod { server 127.0.0.1:$UP; keepalive 128; }
  upstream cand { server 127.0.0.1:$CAND; keepalive 128; }"
NG_DEFAULT=$(free_port); nginx_conf ng_default "$NG_DEFAULT" "" "    location / { proxy_pass http://127.0.0.1:$UP; }"
NG_KA=$(free_port); nginx_conf ng_ka "$NG_KA" "$KA" "    location / { proxy_pass http://prod; proxy_http_version 1.1; proxy_set_header Connection \"\"; }"
NG_MIRROR=$(free_port); nginx_conf ng_mirror "$NG_MIRROR" "$KA" "    location / { mirror /mirror; proxy_pass http://prod; proxy_http_version 1.1; proxy_set_header Connection \"\"; }
    location = /mirror { internal; proxy_pass http://cand\$request_uri; proxy_http_version 1.1; proxy_set_header Connection \"\"; }"

start_tap() { # name extra-args... ; sets TAP_PORT, TAP_METRICS, TAP_PID
  local name=$1; shift
  "$BIN" tap --threads 1 --listen 127.0.0.1:0 --metrics 127.0.0.1:0 --upstream "http://127.0.0.1:$UP" "$@" 2>"$work/$name.err" &
  TAP_PID=$!; pids+=("$TAP_PID")
  for _ in $(seq 200); do grep -q 'listening on' "$work/$name.err" 2>/dev/null && break; sleep 0.05; done
  TAP_PORT=$(grep -o 'listening on [0-9.:]*' "$work/$name.err" | sed 's/.*://')
  TAP_METRICS=$(grep -o 'metrics on [0-9.:]*' "$work/$name.err" | sed 's/.*://')
  [ -n "$TAP_PORT" ] || { cat "$work/$name.err"; exit 1; }
}
stop_tap() { kill -TERM "$TAP_PID"; wait "$TAP_PID" 2>/dev/null || true; }
metric() { curl -s "http://127.0.0.1:$TAP_METRICS/metrics" | awk -v m="$1" '$1==m{print $2}'; }

# wrk_run PORT CONC -> "req/s p99_ms non2xx"
wrk_run() {
  local out; out=$(wrk -t1 -c"$2" -d"$DURATION" --latency "http://127.0.0.1:$1/api/products/17?currency=EUR")
  local rps p99 bad
  rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
  p99=$(awk '$1=="99%"{v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' <<<"$out")
  bad=$(awk '/Non-2xx/{print $NF}' <<<"$out"); bad=${bad:-0}
  echo "$rps $p99 $bad"
}
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
sub() { python3 -c "print(f'{$1-$2:.3f}')"; }
rss_kb() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }

echo "machine: $(nproc) cores; wrk -t1, $CONC connections for throughput, $LAT_CONC for latency, $DURATION per run"
echo

read -r d_rps d_p99 _ < <(wrk_run "$UP" "$CONC")
read -r _ dl_p99 _ < <(wrk_run "$UP" "$LAT_CONC")
echo "upstream direct:                 $d_rps req/s   (p99 at $LAT_CONC conns: ${dl_p99} ms)"
read -r ngd_rps _ _ < <(wrk_run "$NG_DEFAULT" "$CONC")
echo "nginx proxy_pass (default):      $ngd_rps req/s"
read -r ng_rps _ ng_bad < <(wrk_run "$NG_KA" "$CONC")
read -r _ ngl_p99 _ < <(wrk_run "$NG_KA" "$LAT_CONC")
echo "nginx proxy_pass (keepalive):    $ng_rps req/s   p99 added: $(sub "$ngl_p99" "$dl_p99") ms"

start_tap rec --out "$work/rec.jsonl"
read -r t_rps _ t_bad < <(wrk_run "$TAP_PORT" "$CONC")
rss1=$(rss_kb "$TAP_PID")
read -r _ tl_p99 _ < <(wrk_run "$TAP_PORT" "$LAT_CONC")
read -r t2_rps _ _ < <(wrk_run "$TAP_PORT" "$CONC")
rss2=$(rss_kb "$TAP_PID")
rec_n=$(metric shadowdiff_tap_recorded_total); drop_n=$(curl -s "http://127.0.0.1:$TAP_METRICS/metrics" | awk '/^shadowdiff_tap_dropped_total/{s+=$2} END{print s}')
stop_tap
echo "tap --threads 1, recording on:   $t_rps req/s   p99 added: $(sub "$tl_p99" "$dl_p99") ms   (recorded $rec_n, dropped $drop_n, non-2xx $t_bad)"
echo "  RSS after ${DURATION}: ${rss1} kB, after 3x${DURATION}: ${rss2} kB"
echo

read -r m_rps _ _ < <(wrk_run "$NG_MIRROR" "$CONC")
echo "nginx mirror:                    $m_rps req/s"
start_tap shadow --out "$work/shadow.jsonl" --shadow "http://127.0.0.1:$CAND" --shadow-sample 1 --shadow-concurrency 256
read -r s_rps _ _ < <(wrk_run "$TAP_PORT" "$CONC")
sent=$(metric shadowdiff_tap_shadow_sent_total); sel=$(metric shadowdiff_tap_shadow_selected_total)
ident=$(curl -s "http://127.0.0.1:$TAP_METRICS/metrics" | awk '/shadow_judged_total\{outcome="identical"\}/{print $2}')
stop_tap
echo "tap --shadow 100%:               $s_rps req/s   (picked $sel, sent $sent, judged identical $ident)"
echo

mkdir -p "$work/ro"; touch "$work/ro/file"
start_tap broken --out "$work/ro/file/traffic.jsonl"
read -r b_rps _ b_bad < <(wrk_run "$TAP_PORT" "$CONC")
werr=$(curl -s "http://127.0.0.1:$TAP_METRICS/metrics" | awk '/dropped_total\{reason="write_error"\}/{print $2}')
stop_tap
echo "tap, output cannot be written:   $b_rps req/s   non-2xx $b_bad, dropped write_error $werr"
start_tap slow --out "$work/slow.jsonl" --debug-write-delay 2ms --queue-size 256
read -r w_rps _ w_bad < <(wrk_run "$TAP_PORT" "$CONC")
qfull=$(curl -s "http://127.0.0.1:$TAP_METRICS/metrics" | awk '/dropped_total\{reason="queue_full"\}/{print $2}')
stop_tap
echo "tap, slow disk (2 ms per write): $w_rps req/s   non-2xx $w_bad, dropped queue_full $qfull"
echo

echo "ratios"
echo "  recording on, tap / nginx proxy_pass keepalive:   $(ratio "$t_rps" "$ng_rps")x   (target >= 1.0)"
echo "  recording on, tap / nginx proxy_pass default:     $(ratio "$t_rps" "$ngd_rps")x"
echo "  p99 added latency, tap - nginx:                   $(sub "$(sub "$tl_p99" "$dl_p99")" "$(sub "$ngl_p99" "$dl_p99")") ms   (target <= 0)"
echo "  shadow 100%, tap / nginx mirror:                  $(ratio "$s_rps" "$m_rps")x   (target >= 3.0)"
echo "  unwritable output / healthy recording:            $(ratio "$b_rps" "$t_rps")x   (target >= 0.95)"
echo "  slow disk / healthy recording:                    $(ratio "$w_rps" "$t_rps")x   (target >= 0.95)"
