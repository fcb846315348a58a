#!/usr/bin/env bash
# Instructions the tap spends per proxied request, replay per replayed exchange and capture
# per captured exchange, counted by callgrind: figures that do not move with what else the
# machine is doing, so two builds can be compared on a shared machine where throughput
# ratios wander by a fifth from run to run.
#
# tap:    `tap --threads 1` recording every exchange, in front of an nginx `return 200`; a
#         keep-alive client sends N1, then (in a second run) N2 requests.
# replay: `replay --threads 1 --no-noise-probe` of a synthetic recording of N1, then N2
#         exchanges, baseline and candidate both that nginx.
# import: `import --from pcap` of tcpdump's capture of wrk (64 connections, so requests
#         overlap and exchanges wait for earlier ones to be written in capture order) against
#         that nginx, cut to its first P1, then P2 packets; the packet pipeline `capture`
#         runs too. Skipped without tcpdump or wrk.
# capture: `capture --device lo` on nginx's port while the same client sends N1, then N2
#         requests straight to nginx (needs root); with CLOSE=1 each request (the tap's
#         too) on a connection of its own (`connection: close`), so handshakes and closes
#         count too.
#         Both of capture's threads count: the ring reader and the recorder.
# Each under `valgrind --tool=callgrind`; (Ir(N2) - Ir(N1)) / (N2 - N1) takes the start and
# the stop out.
#
#   benches/instructions.sh                          # target/release/shadowdiff
#   benches/instructions.sh /tmp/base /tmp/new       # two builds side by side
#   JOBS=import benches/instructions.sh A B          # only some of tap, replay, import, capture
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${N1:-500}
N2=${N2:-2500}
P1=${P1:-20000}
P2=${P2:-100000}
JOBS=${JOBS:-tap replay import capture}
job() { [[ " $JOBS " == *" $1 "* ]]; }
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { apt-get update -qq && apt-get install -y -qq nginx-light; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ $# -eq 0 ]; then
  cargo build --release --quiet --bin shadowdiff
  set -- target/release/shadowdiff
fi
job replay && cargo build --release --quiet --example gen_recording
work=$(mktemp -d "$PWD/target/tap-instr.XXXXXX")
trap '[ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; rm -rf "$work"' EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
error_log $work/error.log error;
pid $work/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$port; location / { default_type application/json; return 200 '{"id":17,"name":"widget","price":12.5}'; } }
}
CONF
"$NGINX" -p "$work" -c "$work/nginx.conf"

# Sends N GET requests on one kept connection, each read to the end of its body.
client() { # port n
  python3 - "$1" "$2" <<'PY'
import os, socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
close = os.environ.get("CLOSE") == "1"
s = socket.create_connection(("127.0.0.1", port))
buf = b""
for i in range(n):
    if close and i > 0:
        s.close()
        s = socket.create_connection(("127.0.0.1", port))
        buf = b""
    s.sendall(b"GET /items/%d HTTP/1.1\r\nhost: shop\r\nuser-agent: bench\r\n%s\r\n"
              % (i, b"connection: close\r\n" if close else b""))
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, buf = buf.split(b"\r\n\r\n", 1)
    length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
    while len(buf) < length:
        buf += s.recv(65536)
    buf = buf[length:]
    if not head.startswith(b"HTTP/1.1 200"):
        sys.exit("unexpected answer: %r" % head[:60])
PY
}

# Total instructions of one tap run that proxies n requests.
instructions() { # bin n
  local out=$work/cg.$RANDOM err=$work/tap.err
  valgrind --tool=callgrind --callgrind-out-file="$out" "$1" tap --threads 1 \
    --listen 127.0.0.1:0 --upstream "http://127.0.0.1:$port" --out "$out.jsonl" 2>"$err" &
  local pid=$!
  for _ in $(seq 600); do grep -q 'listening on' "$err" 2>/dev/null && break; sleep 0.1; done
  local tport
  tport=$(grep -o 'listening on [0-9.:]*' "$err" | sed 's/.*://')
  [ -n "$tport" ] || { cat "$err" >&2; exit 1; }
  client "$tport" "$2"
  kill -TERM "$pid"; wait "$pid" || true
  awk '/^summary:|^totals:/ {print $2; exit}' "$out"
}

# Total instructions of one replay of n exchanges.
replayed() { # bin n
  local out=$work/cg.$RANDOM rec=$work/rec.$2.jsonl
  [ -f "$rec" ] || target/release/examples/gen_recording "$2" "$rec" 2>/dev/null
  valgrind --tool=callgrind --callgrind-out-file="$out" "$1" replay "$rec" --quiet \
    --baseline "http://127.0.0.1:$port" --candidate "http://127.0.0.1:$port" \
    --threads 1 --concurrency 8 --no-noise-probe --json "$out.json" 2>"$work/replay.err" || true
  awk '/^summary:|^totals:/ {print $2; exit}' "$out"
}

# Total instructions of one capture while the client sends n requests to nginx.
captured() { # bin n
  local out=$work/cg.$RANDOM err=$work/capture.err
  rm -f "$work/cap.jsonl"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$1" capture --device lo \
    --port "$port" --out "$work/cap.jsonl" 2>"$err" &
  local pid=$!
  # valgrind starts a large binary slowly on a busy machine: the client waits for it.
  for _ in $(seq 600); do grep -q 'capturing on' "$err" 2>/dev/null && break; sleep 0.5; done
  grep -q 'capturing on' "$err" || { cat "$err" >&2; exit 1; }
  client "$port" "$2"
  sleep 1
  kill -TERM "$pid"; wait "$pid" || true
  grep -q "= $2 recorded" "$err" || { echo "capture did not record all $2:" >&2; cat "$err" >&2; exit 1; }
  awk '/^summary:|^totals:/ {print $2; exit}' "$out"
}

printf '%-8s %-32s %14s %14s %14s\n' job build "Ir ($N1)" "Ir ($N2)" "instr/each"
job tap && for bin in "$@"; do
  a=$(instructions "$bin" "$N1")
  b=$(instructions "$bin" "$N2")
  printf '%-8s %-32s %14s %14s %14s\n' tap "$bin" "$a" "$b" "$(( (b - a) / (N2 - N1) ))"
done
job replay && for bin in "$@"; do
  a=$(replayed "$bin" "$N1")
  b=$(replayed "$bin" "$N2")
  printf '%-8s %-32s %14s %14s %14s\n' replay "$bin" "$a" "$b" "$(( (b - a) / (N2 - N1) ))"
done

# Total instructions of one import of a pcap, and the exchanges it wrote.
imported() { # bin pcap
  local out=$work/cg.$RANDOM
  valgrind --tool=callgrind --callgrind-out-file="$out" "$1" import --from pcap "$2" \
    --out "$out.jsonl" 2>"$work/import.err" || { cat "$work/import.err" >&2; exit 1; }
  echo "$(awk '/^summary:|^totals:/ {print $2; exit}' "$out") $(grep -o 'wrote *[0-9]*' "$work/import.err" | grep -o '[0-9]*')"
}

if ! job import; then
  :
elif command -v tcpdump >/dev/null && command -v wrk >/dev/null; then
  tcpdump -i lo -s 0 -B 65536 -w "$work/wrk.pcap" "tcp port $port" 2>"$work/tcpdump.err" &
  tpid=$!
  for _ in $(seq 50); do grep -q listening "$work/tcpdump.err" 2>/dev/null && break; sleep 0.1; done
  wrk -t2 -c64 -d2s "http://127.0.0.1:$port/" >/dev/null
  sleep 0.5; kill -INT "$tpid"; wait "$tpid" || true
  tcpdump -r "$work/wrk.pcap" -c "$P1" -w "$work/p1.pcap" 2>/dev/null
  tcpdump -r "$work/wrk.pcap" -c "$P2" -w "$work/p2.pcap" 2>/dev/null
  printf '%-8s %-32s %14s %14s %14s\n' job build "Ir ($P1 pkts)" "Ir ($P2 pkts)" "instr/exchange"
  for bin in "$@"; do
    read -r a ea < <(imported "$bin" "$work/p1.pcap")
    read -r b eb < <(imported "$bin" "$work/p2.pcap")
    printf '%-8s %-32s %14s %14s %14s\n' import "$bin" "$a" "$b" "$(( (b - a) / (eb - ea) ))"
  done
else
  echo "import: skipped (needs tcpdump and wrk)" >&2
fi

if ! job capture; then
  :
elif [ "$(id -u)" = 0 ]; then
  for bin in "$@"; do
    a=$(captured "$bin" "$N1")
    b=$(captured "$bin" "$N2")
    printf '%-8s %-32s %14s %14s %14s\n' capture "$bin" "$a" "$b" "$(( (b - a) / (N2 - N1) ))"
  done
else
  echo "capture: skipped (capturing needs root)"
fi
