#!/usr/bin/env bash
# `shadowdiff capture` against tcpdump, side by side in one run, on this machine: nginx on
# loopback (`return 200`, worker_processes 1) driven by wrk at its maximum rate, and at
# fixed rates by wrk paced with a Lua `delay()` that spaces each wrk thread's requests on
# the clock (the rate reached is measured from nginx's count and printed). The truth is nginx's own request count
# (`stub_status`, on a second port so the counting requests are not captured; the one
# status request inside each window is taken off).
#
# For each load it prints:
#   capture:   exchanges recorded / nginx's requests (completeness), what was lost by reason,
#              the kernel's drops, CPU time per exchange (and as a share of one core per
#              100k exchanges/s) and peak RSS of the capture process;
#   tcpdump:   `tcpdump -w` at the same load, its kernel drops, and the completeness of
#              `shadowdiff import --from pcap` of its file;
#   cost:      at wrk's maximum, wrk's throughput with the capture running over without it
#              (ROUNDS alternating pairs, each ratio and their median); at the fixed rates,
#              the rate reached and wrk's latency p50/p99 without and with the capture.
#
#   benches/capture_vs_tcpdump.sh                 # 5 s per run
#   DURATION=10s ROUNDS=5 RATES="10000 50000" benches/capture_vs_tcpdump.sh
# Needs root (packet capture). tcpdump, nginx and wrk are installed if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5s}
SECS=${DURATION%s}
CONC=${CONC:-32}
ROUNDS=${ROUNDS:-3}
RATES=${RATES:-10000 50000}
inst() { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || inst nginx-light
command -v wrk >/dev/null || inst wrk
command -v curl >/dev/null || inst curl
command -v tcpdump >/dev/null || [ -x /usr/bin/tcpdump ] || [ -x /usr/sbin/tcpdump ] || inst tcpdump
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
TCPDUMP=$(command -v tcpdump || { [ -x /usr/bin/tcpdump ] && echo /usr/bin/tcpdump; } || echo /usr/sbin/tcpdump)

if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin shadowdiff
  BIN=$PWD/target/release/shadowdiff
fi
work=$(mktemp -d "$PWD/target/capture-bench.XXXXXX")
cleanup() {
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

PORT=$(free_port)
SPORT=$(free_port)
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
error_log $work/error.log error;
pid $work/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;
  default_type application/json;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$PORT; location / { return 200 '{"ok":true,"items":[1,2,3]}'; } }
  server { listen 127.0.0.1:$SPORT; location / { stub_status; } }
}
CONF
"$NGINX" -p "$work" -c "$work/nginx.conf"
wait_port "$PORT"
wait_port "$SPORT"

requests() { curl -s "http://127.0.0.1:$SPORT/" | awk 'NR==3 {print $3}'; }
# Runs "$@" as the load and sets TRUTH to the requests nginx served meanwhile.
# ELAPSED_MS is how long the load took, so a fixed rate the machine could not keep is seen.
measured() {
  local before after t0
  before=$(requests)
  t0=$(date +%s%N)
  "$@"
  ELAPSED_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
  after=$(requests)
  TRUTH=$((after - before - 1))
}
wrk_max() { wrk -t2 -c"$CONC" -d"$DURATION" --latency "http://127.0.0.1:$PORT/" > "$work/wrk.out"; }
rps() { awk '/Requests\/sec/ {printf "%d", $2}' "$work/wrk.out"; }
# wrk's latency percentile ("50%" or "99%") in microseconds.
pct() {
  awk -v p="$1" '$1 == p {v=$2; u=v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
    f = (u == "us") ? 1 : (u == "ms") ? 1000 : (u == "s") ? 1000000 : 0; printf "%d", v * f}' "$work/wrk.out"
}

# Fixed rates: request k of each wrk thread is due at k / (rate / 2) seconds after its
# first; `delay()` holds each connection's next request until the next slot is due (LuaJIT's
# ffi reads the monotonic clock, wrk's Lua has none finer than a second), sending at once
# when behind. RATE/100 connections leave room for the answers' latency.
cat > "$work/pace.lua" <<'LUA'
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } pace_timespec;
int clock_gettime(int clk, pace_timespec *ts);
]]
local ts = ffi.new("pace_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local step = 1000 / tonumber(os.getenv("PACE_PER_THREAD"))
local next_at = nil
function delay()
  local now = now_ms()
  if next_at == nil then next_at = now end
  next_at = next_at + step
  local d = next_at - now
  if d <= 0 then return 0 end
  return math.floor(d + 0.5)
end
LUA
fixed() { # rate-in-requests/s
  PACE_PER_THREAD=$(( $1 / 2 )) wrk -t2 -c"$(( $1 / 100 ))" -d"$DURATION" --latency \
    -s "$work/pace.lua" "http://127.0.0.1:$PORT/" > "$work/wrk.out"
}

capture_run() { # label load...
  local label=$1; shift
  rm -f "$work/cap.jsonl"
  : > "$work/cap.err"
  "$BIN" capture --device lo --port "$PORT" --out "$work/cap.jsonl" 2> "$work/cap.err" &
  local pid=$!
  for _ in $(seq 100); do grep -q "capturing on" "$work/cap.err" && break; sleep 0.05; done
  measured "$@"
  sleep 1.5
  local ticks rss
  ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  kill -TERM "$pid"; wait "$pid" || true
  local line rec lost
  line=$(grep '^stopped:' "$work/cap.err")
  rec=$(echo "$line" | sed -E 's/.* = ([0-9]+) recorded.*/\1/')
  lost=$(echo "$line" | sed -E 's/.* ([0-9]+) lost$/\1/')
  local kdrop
  kdrop=$(grep -oE '[0-9]+ dropped by the kernel' "$work/cap.err" | awk '{print $1}')
  local hz; hz=$(getconf CLK_TCK)
  local us; us=$(echo "1000000 * $ticks / $hz / ($rec + 1)" | bc -l)
  printf '%-14s capture  nginx %8d  recorded %8d  completeness %7.3f%%  lost %d  kernel drops %d  CPU %.2f us/exchange (%.0f%% of a core per 100k/s)  peak RSS %d MiB\n' \
    "$label" "$TRUTH" "$rec" "$(echo "100 * $rec / $TRUTH" | bc -l)" "$lost" "$kdrop" \
    "$us" "$(echo "$us * 10" | bc -l)" "$((rss / 1024))"
  grep -E '^  (lost|dropped) ' "$work/cap.err" | sed "s/^/$(printf '%-14s' '')/" || true
}

tcpdump_run() { # label load...
  local label=$1; shift
  rm -f "$work/td.pcap"
  : > "$work/td.err"
  "$TCPDUMP" -i lo -s 0 -B 65536 -w "$work/td.pcap" "tcp port $PORT" 2> "$work/td.err" &
  local pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$work/td.err" && break; sleep 0.05; done
  measured "$@"
  sleep 1
  kill -INT "$pid"; wait "$pid" || true
  local drops written
  drops=$(grep -oE '[0-9]+ packets dropped by kernel' "$work/td.err" | awk '{print $1}')
  "$BIN" import --from pcap "$work/td.pcap" --out "$work/td.jsonl" 2> "$work/imp.err" || true
  rm -f "$work/td.jsonl"
  written=$(grep -oE 'wrote +[0-9]+' "$work/imp.err" | awk '{print $2}')
  printf '%-14s tcpdump  nginx %8d  imported %8d  completeness %7.3f%%  kernel drops %s\n' \
    "$label" "$TRUTH" "$written" "$(echo "100 * $written / $TRUTH" | bc -l)" "${drops:-?}"
}

echo "nginx on 127.0.0.1:$PORT, wrk -t2 -c$CONC, $DURATION per run, $(nproc) cores"
ratios=""
for round in $(seq "$ROUNDS"); do
  measured wrk_max; base=$(rps); bp50=$(pct 50%); bp99=$(pct 99%)
  if [ "$round" -eq 1 ]; then
    capture_run "wrk max" wrk_max
  else
    capture_run "wrk max" wrk_max >/dev/null
  fi
  with=$(rps)
  r=$(echo "scale=3; $with / $base" | bc)
  ratios="$ratios $r"
  echo "cost round $round  wrk alone $base req/s (p50 $bp50 us, p99 $bp99 us), with capture $with req/s (p50 $(pct 50%) us, p99 $(pct 99%) us): ${r}x"
done
tcpdump_run "wrk max" wrk_max
echo "cost           median of$ratios: $(echo $ratios | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')x"
for rate in $RATES; do
  measured fixed "$rate"
  got=$((TRUTH * 1000 / ELAPSED_MS)); p50=$(pct 50%); p99=$(pct 99%)
  echo "fixed $rate/s: wrk alone reached $got requests/s (p50 $p50 us, p99 $p99 us)"
  capture_run "fixed $rate/s" fixed "$rate"
  got=$((TRUTH * 1000 / ELAPSED_MS))
  echo "fixed $rate/s: with capture reached $got requests/s (p50 $(pct 50%) us, p99 $(pct 99%) us)"
  tcpdump_run "fixed $rate/s" fixed "$rate"
done
