#!/usr/bin/env bash
# `shadowdiff capture`'s memory under hostile and long-running traffic, on this machine: the
# release binary captures nginx on loopback through three loads in turn, and its resident
# size (VmRSS, and the peak VmHWM) is printed every few seconds beside what it follows
# (live connections, bytes held by the reassembler, connections given up).
#
#   1. a SYN flood: FLOOD SYNs (default 1,000,000) from distinct 127/8 addresses and ports,
#      sent from a packet socket with their IP checksum left zero, so the kernel's stack
#      drops them after the capture saw them: each is a connection left half open;
#   2. a slowloris: SLOW real sockets (default 4,000) each sending a request line and a
#      few header fields, then one more field every 2 s, never the empty line; with
#      --idle-timeout 5s those that go quiet are given up;
#   3. many real connections: wrk with `Connection: close` for CONNS_SECS seconds
#      (default 120), one connection per request, as many as the machine makes.
#
#   benches/capture_memory.sh
#   FLOOD=3000000 CONNS_SECS=300 benches/capture_memory.sh
# Needs root (packet capture). nginx, wrk, curl and python3 are installed if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
FLOOD=${FLOOD:-1000000}
SLOW=${SLOW:-4000}
SLOW_SECS=${SLOW_SECS:-20}
CONNS_SECS=${CONNS_SECS:-120}
inst() { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || inst nginx-light
command -v wrk >/dev/null || inst wrk
command -v curl >/dev/null || inst curl
command -v python3 >/dev/null || inst python3
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin shadowdiff
  BIN=$PWD/target/release/shadowdiff
fi
work=$(mktemp -d "$PWD/target/capture-memory.XXXXXX")
cap_pid=
cleanup() {
  [ -n "$cap_pid" ] && kill "$cap_pid" 2>/dev/null || true
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

PORT=$(free_port)
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile 65536;
error_log $work/error.log error;
pid $work/nginx.pid;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;
  default_type application/json;
  client_header_timeout 600s;
  server { listen 127.0.0.1:$PORT backlog=4096; location / { return 200 '{"ok":true}'; } }
}
CONF
"$NGINX" -p "$work" -c "$work/nginx.conf"
wait_port "$PORT"

"$BIN" capture --device lo --port "$PORT" --out "$work/cap.jsonl.zst" --metrics 127.0.0.1:0 \
  --idle-timeout 5s 2> "$work/cap.err" &
cap_pid=$!
for _ in $(seq 200); do grep -q '^capturing on' "$work/cap.err" && break; sleep 0.05; done
METRICS=$(sed -n 's/^metrics on //p' "$work/cap.err")

metric() { curl -s "http://$METRICS/metrics" | awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%d", s }'; }
kib() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$cap_pid/status"; }
T0=$(date +%s)
sample() {
  printf '%-12s %6ds  RSS %5d MiB  peak %5d MiB  live %6d  held %9d B  given up %8d  exchanges %9d\n' \
    "$1" $(( $(date +%s) - T0 )) $(( $(kib VmRSS) / 1024 )) $(( $(kib VmHWM) / 1024 )) \
    "$(metric shadowdiff_capture_live_connections)" "$(metric shadowdiff_capture_held_bytes)" \
    "$(metric shadowdiff_capture_connections_given_up_total)" \
    "$(metric shadowdiff_capture_exchanges_seen_total)"
}
# Samples every 3 s while "$@" runs.
watched() {
  local phase=$1; shift
  "$@" &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do sample "$phase"; sleep 3; done
  wait "$pid"
  sample "$phase"
}

echo "capture of nginx on lo:$PORT with --idle-timeout 5s (other limits at their defaults)"
sample start

flood() {
  python3 - "$PORT" "$FLOOD" <<'PY'
import socket, struct, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
dest = ("lo", 0x0800)
for i in range(n):
    src = bytes([127, 10 + (i >> 16) % 200, (i >> 8) & 255, i & 255])
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, 6, 0, src, bytes([127, 0, 0, 1]))
    tcp = struct.pack("!HHIIBBHHH", 1024 + i % 30000, port, i, 0, 5 << 4, 0x02, 65535, 0, 0)
    s.sendto(ip + tcp, dest)
PY
}
watched syn-flood flood

slowloris() {
  python3 - "$PORT" "$SLOW" "$SLOW_SECS" <<'PY'
import socket, sys, time
port, n, secs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /slow/%d HTTP/1.1\r\nHost: a\r\nX-A: %s\r\n" % (i, b"a" * 200))
    socks.append(s)
end = time.time() + secs
k = 0
while time.time() < end:
    # Half of them drip a field every 2 s; the other half went quiet after their first.
    for s in socks[: n // 2]:
        s.sendall(b"X-%d: b\r\n" % k)
    k += 1
    time.sleep(2)
for s in socks:
    s.close()
PY
}
watched slowloris slowloris

conns() { wrk -t2 -c64 -d"${CONNS_SECS}s" -H 'Connection: close' "http://127.0.0.1:$PORT/" > "$work/wrk.out"; }
watched connections conns
echo "wrk: $(awk '/requests in/ {print $1}' "$work/wrk.out") requests, each on its own connection"

kill -TERM "$cap_pid"
wait "$cap_pid" || true
cap_pid=
echo "--- capture's account"
cat "$work/cap.err"
