#!/usr/bin/env bash
# `shadowdiff capture` against tcpdump, side by side in one run, on this machine: nginx on
# loopback (`return 200`, worker_processes 1) driven by wrk at its maximum rate, and at
# fixed rates by `shadowdiff replay --rate` (10k and 50k requests/s where the machine gets
# there). The truth is nginx's own request count (`stub_status`, on a second port so the
# counting requests are not captured; the one status request inside each window is taken
# off).
#
# For each load it prints:
#   capture:   exchanges recorded / nginx's requests (completeness), what was lost by reason,
#              the kernel's drops, CPU time per exchange and peak RSS of the capture process;
#   tcpdump:   `tcpdump -w` at the same load, its kernel drops, and the completeness of
#              `shadowdiff import --from pcap` of its file;
#   cost:      wrk's throughput with the capture running over wrk's throughput without it.
#
#   benches/capture_vs_tcpdump.sh                 # 5 s per run
#   DURATION=10s benches/capture_vs_tcpdump.sh
# Needs root (packet capture). tcpdump, nginx and wrk are installed if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5s}
SECS=${DURATION%s}
CONC=${CONC:-32}
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
wrk_max() { wrk -t2 -c"$CONC" -d"$DURATION" "http://127.0.0.1:$PORT/" > "$work/wrk.out"; }
rps() { awk '/Requests\/sec/ {printf "%d", $2}' "$work/wrk.out"; }

# A recording of GETs for the fixed rates: replay sends each exchange to the baseline and
# the candidate, both this nginx, so --rate R makes 2R requests/s (noise calls off).
"$BIN" capture --device lo --port "$PORT" --out "$work/seed.jsonl" --max-exchanges 1 --duration 30s 2>/dev/null &
sleep 0.5
curl -s -o /dev/null "http://127.0.0.1:$PORT/item"
wait
gen() { # count -> $work/fixed.jsonl
python3 - "$work/seed.jsonl" "$work/fixed.jsonl" "$1" <<'PY'
import json, sys, datetime
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = open(src).read().splitlines()
head, ex = lines[0], json.loads(lines[1])
t0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
with open(dst, "w") as f:
    f.write(head + "\n")
    for i in range(n):
        ex["id"] = f"r{i}"
        ex["ts"] = (t0 + datetime.timedelta(microseconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        ex["request"]["uri"] = f"/item/{i % 50}"
        f.write(json.dumps(ex, separators=(",", ":")) + "\n")
PY
}
fixed() { # rate-in-requests/s
  local r=$(( $1 / 2 ))
  timeout "$((SECS + 30))" "$BIN" replay "$work/fixed.jsonl" --baseline "http://127.0.0.1:$PORT" \
    --candidate "http://127.0.0.1:$PORT" --rate "$r" --no-recorded-noise --no-noise-probe \
    --json "$work/replay.json" >/dev/null 2>&1 || true
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
  printf '%-14s capture  nginx %8d  recorded %8d  completeness %7.3f%%  lost %d  kernel drops %d  CPU %.2f us/exchange  peak RSS %d MiB\n' \
    "$label" "$TRUTH" "$rec" "$(echo "100 * $rec / $TRUTH" | bc -l)" "$lost" "$kdrop" \
    "$(echo "1000000 * $ticks / $hz / ($rec + 1)" | bc -l)" "$((rss / 1024))"
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
measured wrk_max; base=$(rps)
capture_run "wrk max" wrk_max; with=$(rps)
tcpdump_run "wrk max" wrk_max
echo "cost           wrk alone $base req/s, with capture $with req/s: $(echo "scale=3; $with / $base" | bc)x"
for rate in 10000 50000; do
  gen $(( rate / 2 * SECS ))
  measured fixed "$rate"
  got=$((TRUTH * 1000 / ELAPSED_MS))
  if [ "$got" -lt $((rate * 9 / 10)) ]; then
    echo "fixed $rate/s: this machine reaches $got requests/s with replay as the client; skipped"
    continue
  fi
  echo "fixed $rate/s: replay reached $got requests/s"
  capture_run "fixed $rate/s" fixed "$rate"
  tcpdump_run "fixed $rate/s" fixed "$rate"
done
