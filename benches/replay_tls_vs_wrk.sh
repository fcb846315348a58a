#!/usr/bin/env bash
# Replay over https against wrk over https: one nginx upstream pair serving the same answer
# on a plain port and a TLS port (a certificate made here with `openssl req`, HTTP/1.1 on
# both, as wrk speaks it), and for each round wrk's requests/s on one upstream, then replay's
# upstream requests/s (counted by the upstreams themselves) with baseline and candidate on
# the two upstreams; over plain HTTP and over TLS, so the TLS cost of each is seen beside
# the other's. The ratios (replay / wrk) are what to compare: this machine is shared and
# absolute figures move. Each figure is the median of $ROUNDS rounds; every round is printed.
#
#   benches/replay_tls_vs_wrk.sh             # 100,000 exchanges, 3 rounds
#   SIZE=20000 ROUNDS=1 benches/replay_tls_vs_wrk.sh
#   BIN=/path/to/shadowdiff benches/replay_tls_vs_wrk.sh   # another build, not rebuilt
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-100000}
CONC=${CONC:-64}
WRK_SECS=${WRK_SECS:-5}
ROUNDS=${ROUNDS:-3}
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { apt-get update -qq && apt-get install -y -qq nginx-light; }
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl; }
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin shadowdiff
  BIN=target/release/shadowdiff
fi
cargo build --release --quiet --example gen_recording
work=$(mktemp -d)
trap 'for p in $work/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done; rm -rf "$work"' EXIT

# A CA and a certificate for 127.0.0.1 signed by it: replay verifies it as it would a real one.
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 "${ec[@]}" -keyout "$work/ca.key" -out "$work/ca.pem" -subj /CN=bench-ca -days 2 2>/dev/null
openssl req "${ec[@]}" -keyout "$work/srv.key" -out "$work/srv.csr" -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$work/san"
openssl x509 -req -in "$work/srv.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -out "$work/srv.pem" -days 2 -extfile "$work/san" 2>/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
served() { # plain port...
  local total=0 n
  for p in "$@"; do
    n=$(curl -s "http://127.0.0.1:$p/__requests" | awk 'NR==3{print $3}')
    total=$((total + n))
  done
  echo "$total"
}
start_nginx() { # name plain-port tls-port
  local d=$work/$1; mkdir -p "$d"
  cat > "$d/nginx.conf" <<CONF
worker_processes 1;
error_log $d/error.log warn;
pid $work/$1.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $d; proxy_temp_path $d; fastcgi_temp_path $d; uwsgi_temp_path $d; scgi_temp_path $d;
  default_type application/json;
  keepalive_requests 1000000;
  ssl_certificate $work/srv.pem;
  ssl_certificate_key $work/srv.key;
  server {
    listen 127.0.0.1:$2;
    listen 127.0.0.1:$3 ssl;
    location = /__requests { stub_status; }
    location / { return 200 '{"path":"\$uri","items":[{"id":1,"name":"widget","price":12.5,"tags":["a","b"]},{"id":2,"name":"gadget","price":7.25,"tags":["c"]}],"total":2,"currency":"EUR","page":{"size":20,"number":1}}'; }
  }
}
CONF
  "$NGINX" -p "$d" -c "$d/nginx.conf"
}
P1=$(free_port); S1=$(free_port); start_nginx up1 "$P1" "$S1"
P2=$(free_port); S2=$(free_port); start_nginx up2 "$P2" "$S2"
sleep 0.5

rec=$work/rec.jsonl.zst
cargo run --release --quiet --example gen_recording -- "$SIZE" "$rec" 2>/dev/null
echo "machine: $(nproc) cores; $SIZE exchanges, concurrency $CONC, noise probe off; $BIN"
: > "$work/rounds"
for round in $(seq "$ROUNDS"); do
  line="$round"
  for scheme in http https; do
    if [ "$scheme" = https ]; then a=$S1; b=$S2; else a=$P1; b=$P2; fi
    wrk -t1 -c"$CONC" -d"${WRK_SECS}s" "$scheme://127.0.0.1:$a/api/users/1" > "$work/wrk.txt"
    wrk_rate=$(awk '/Requests\/sec/{print $2}' "$work/wrk.txt")
    before=$(served "$P1" "$P2")
    start=$(date +%s.%N)
    "$BIN" replay "$rec" --quiet --baseline "$scheme://127.0.0.1:$a" --candidate "$scheme://127.0.0.1:$b" \
      --ca-cert "$work/ca.pem" --concurrency "$CONC" --no-noise-probe --json "$work/r.json" || true
    end=$(date +%s.%N)
    reqs=$(( $(served "$P1" "$P2") - before - 2 ))
    rate=$(python3 -c "print(round($reqs / ($end - $start)))")
    ratio=$(python3 -c "print(f'{$rate / $wrk_rate:.2f}')")
    echo "  round $round, $scheme: wrk $wrk_rate req/s; replay $rate upstream req/s ($reqs requests); ${ratio}x wrk"
    line="$line $wrk_rate $rate $ratio"
  done
  echo "$line" >> "$work/rounds"
done
python3 - "$work/rounds" <<'PY'
import statistics, sys
rows = [list(map(float, l.split()[1:])) for l in open(sys.argv[1]) if l.strip()]
med = [statistics.median(c) for c in zip(*rows)]
for name, (w, r, x), col in (("http ", med[0:3], 2), ("https", med[3:6], 5)):
    print(f"{name}: wrk {w:9.0f} req/s, replay {r:9.0f} upstream req/s, median {x:.2f}x wrk "
          f"(rounds: {', '.join(f'{row[col]:.2f}' for row in rows)})")
print(f"TLS keeps {med[4] / med[1]:.2f} of replay's plain-HTTP rate and {med[3] / med[0]:.2f} of wrk's")
PY
