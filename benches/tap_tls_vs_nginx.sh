#!/usr/bin/env bash
# The tap terminating TLS against nginx terminating TLS, side by side in one run, on this
# machine, with wrk (built with OpenSSL) as the client over https.
#
#   kept connections:  nginx `listen ssl` + `proxy_pass` with upstream keepalive
#                      (worker_processes 1) vs `shadowdiff tap --threads 1 --tls-cert
#                      --tls-key`, recording every exchange and with recording off, same plain
#                      upstream (an nginx `return 200`), same ECDSA P-256 certificate:
#                      throughput and CPU per request at $CONC connections, p99 added
#                      latency at $LAT_CONC connections (p99 through the proxy minus p99
#                      straight to the upstream over plain HTTP).
#   a handshake each:  the same with `Connection: close` on every request, so every request
#                      pays a full TLS handshake (no session resumption: wrk offers none).
#
# The machine is shared, so every figure is the median of $ROUNDS interleaved rounds (each
# round runs every contender once, back to back), and next to throughput the CPU time per
# request of the proxy process (user + system, all threads) is given: it does not depend
# on how much CPU the neighbours left over.
#
#   benches/tap_tls_vs_nginx.sh                      # 3 rounds of 5 s runs
#   ROUNDS=5 DURATION=10s benches/tap_tls_vs_nginx.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
CONC=${CONC:-64}
LAT_CONC=${LAT_CONC:-4}
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { apt-get update -qq && apt-get install -y -qq nginx-light; }
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# BIN=path/to/shadowdiff measures another build on the same terms.
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin shadowdiff
  BIN=$PWD/target/release/shadowdiff
fi
# Under target/, not /tmp: a neighbour cleaning /tmp must not pull the floor away mid-run.
work=$(mktemp -d "$PWD/target/tap-tls-bench.XXXXXX")
cleanup() {
  for p in "$work"/*.tappid; do [ -f "$p" ] && kill -TERM "$(cat "$p")" 2>/dev/null || true; done
  sleep 0.5
  for p in "$work"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$work/key.pem" -out "$work/cert.pem" -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

nginx_conf() { # name port listen-params http-extra server-body
  local d=$work/$1; mkdir -p "$d"
  cat > "$d/nginx.conf" <<CONF
worker_processes 1;
error_log $d/error.log error;
pid $d/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $d; proxy_temp_path $d; fastcgi_temp_path $d; uwsgi_temp_path $d; scgi_temp_path $d;
  default_type application/json;
  keepalive_requests 1000000;
$4
  server {
    listen 127.0.0.1:$2 $3;
$5
  }
}
CONF
  "$NGINX" -p "$d" -c "$d/nginx.conf"
  cp "$d/nginx.pid" "$work/$1.pid"
  wait_port "$2"
}
worker_of() { pgrep -P "$(cat "$work/$1/nginx.pid")" | head -1; }

BODY='{"id":17,"name":"widget","price":12.5,"tags":["a","b"],"stock":{"warehouse":"north","count":42}}'
UP=$(free_port); nginx_conf up "$UP" "" "" "    location / { return 200 '$BODY'; }"
KA="  upstream prod { server 127.0.0.1:$UP; keepalive 128; }"
PASS='proxy_http_version 1.1; proxy_set_header Connection "";'
NG=$(free_port); nginx_conf ng "$NG" ssl "$KA" "    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    location / { proxy_pass http://prod; $PASS }"

start_tap() { # name extra-args... -> "port metrics-port pid"
  local name=$1; shift
  "$BIN" tap --threads 1 --listen 127.0.0.1:0 --metrics 127.0.0.1:0 --upstream "http://127.0.0.1:$UP" \
    --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" "$@" 2>"$work/$name.err" &
  local pid=$!; echo "$pid" > "$work/$name.tappid"
  for _ in $(seq 200); do grep -q 'listening on' "$work/$name.err" 2>/dev/null && break; sleep 0.05; done
  local port mport
  port=$(grep -o 'listening on [0-9.:]*' "$work/$name.err" | sed 's/.*://')
  mport=$(grep -o 'metrics on [0-9.:]*' "$work/$name.err" | sed 's/.*://')
  [ -n "$port" ] || { cat "$work/$name.err" >&2; exit 1; }
  echo "$port $mport $pid"
}
read -r T_REC T_REC_M T_REC_PID < <(start_tap rec --out "$work/rec.jsonl")
read -r T_OFF T_OFF_M T_OFF_PID < <(start_tap off --out "$work/off.jsonl" --sample 0 --min-per-interface 0)

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
clk=$(getconf CLK_TCK)
# run NAME SCHEME PORT PID CONNS [wrk args...] -> appends "rps p99_ms cpu_us_per_req non2xx
# errors" to $work/NAME.txt
run() {
  local name=$1 scheme=$2 port=$3 pid=$4 conns=$5; shift 5
  local c0 out c1 n secs rps p99 bad errs cpu
  c0=$(cpu_ticks "$pid")
  out=$(wrk -t1 -c"$conns" -d"$DURATION" --latency "$@" "$scheme://127.0.0.1:$port/api/products/17?currency=EUR")
  c1=$(cpu_ticks "$pid")
  n=$(awk '/requests in/{print $1}' <<<"$out")
  secs=$(awk '/requests in/{gsub(/s,/,"",$4); print $4}' <<<"$out")
  rps=$(python3 -c "print($n/$secs)")
  p99=$(awk '$1=="99%"{v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' <<<"$out")
  bad=$(awk '/Non-2xx/{print $NF}' <<<"$out"); bad=${bad:-0}
  # `Socket errors: connect 0, read 0, write 0, timeout 0`
  errs=$(awk '/Socket errors/{gsub(/,/,""); print $4+$6+$8+$10}' <<<"$out"); errs=${errs:-0}
  cpu=$(python3 -c "print(($c1-$c0)*1e6/$clk/max($n,1))")
  echo "$rps $p99 $cpu $bad $errs" >> "$work/$name.txt"
  sync
}
med() { python3 -c "import statistics; v=[float(l.split()[$2-1]) for l in open('$work/$1.txt')]; print(statistics.median(v))"; }
sumcol() { python3 -c "print(int(sum(float(l.split()[$2-1]) for l in open('$work/$1.txt'))))"; }
fmt() { python3 -c "print(f'{$1:.${2:-0}f}')"; }
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1==m{print $2}'; }

CLOSE=(-H "Connection: close")
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); wrk -t1 over https; $CONC connections for throughput, $LAT_CONC for latency; $ROUNDS rounds of $DURATION"
for r in $(seq "$ROUNDS"); do
  run ng https "$NG" "$(worker_of ng)" "$CONC"
  run tap https "$T_REC" "$T_REC_PID" "$CONC"
  run off https "$T_OFF" "$T_OFF_PID" "$CONC"
  run direct_lat http "$UP" "$(worker_of up)" "$LAT_CONC"
  run ng_lat https "$NG" "$(worker_of ng)" "$LAT_CONC"
  run tap_lat https "$T_REC" "$T_REC_PID" "$LAT_CONC"
  run ng_hs https "$NG" "$(worker_of ng)" "$CONC" "${CLOSE[@]}"
  run tap_hs https "$T_REC" "$T_REC_PID" "$CONC" "${CLOSE[@]}"
  echo "  round $r done (load average $(cut -d' ' -f1 /proc/loadavg))"
done

ng_rps=$(med ng 1); tap_rps=$(med tap 1); off_rps=$(med off 1)
ng_cpu=$(med ng 3); tap_cpu=$(med tap 3); off_cpu=$(med off 3)
d_p99=$(med direct_lat 2); ng_p99=$(med ng_lat 2); tap_p99=$(med tap_lat 2)
ng_add=$(python3 -c "print($ng_p99-$d_p99)"); tap_add=$(python3 -c "print($tap_p99-$d_p99)")
pair_p99=$(python3 -c "import statistics; t=[float(l.split()[1]) for l in open('$work/tap_lat.txt')]; n=[float(l.split()[1]) for l in open('$work/ng_lat.txt')]; print(statistics.median(a-b for a,b in zip(t,n)))")
ngh_rps=$(med ng_hs 1); taph_rps=$(med tap_hs 1); ngh_cpu=$(med ng_hs 3); taph_cpu=$(med tap_hs 3)

echo
echo "                                       req/s   CPU us/req   p99 added (ms, $LAT_CONC conns)   non-2xx   socket errors"
printf "nginx ssl + proxy_pass keepalive     %7s   %10s   %8s                        %7s   %s\n" "$(fmt "$ng_rps")" "$(fmt "$ng_cpu" 1)" "$(fmt "$ng_add" 3)" "$(sumcol ng 4)" "$(sumcol ng 5)"
printf "tap --tls-cert, recording on         %7s   %10s   %8s                        %7s   %s\n" "$(fmt "$tap_rps")" "$(fmt "$tap_cpu" 1)" "$(fmt "$tap_add" 3)" "$(sumcol tap 4)" "$(sumcol tap 5)"
printf "tap --tls-cert, recording off        %7s   %10s                                     %7s   %s\n" "$(fmt "$off_rps")" "$(fmt "$off_cpu" 1)" "$(sumcol off 4)" "$(sumcol off 5)"
printf "nginx, a handshake per request       %7s   %10s                                     %7s\n" "$(fmt "$ngh_rps")" "$(fmt "$ngh_cpu" 1)" "$(sumcol ng_hs 4)"
printf "tap, a handshake per request         %7s   %10s                                     %7s\n" "$(fmt "$taph_rps")" "$(fmt "$taph_cpu" 1)" "$(sumcol tap_hs 4)"
echo
echo "tap (recording): proxied $(metric "$T_REC_M" shadowdiff_tap_proxied_total), recorded $(metric "$T_REC_M" shadowdiff_tap_recorded_total), dropped queue_full $(metric "$T_REC_M" 'shadowdiff_tap_dropped_total{reason="queue_full"}'), handshakes completed $(metric "$T_REC_M" 'shadowdiff_tap_tls_handshakes_total{result="completed"}'), failed $(metric "$T_REC_M" 'shadowdiff_tap_tls_handshakes_total{result="failed"}')"
echo
r() { python3 -c "print(f'{$1/$2:.2f}')"; }
echo "ratios (medians)"
echo "  kept connections, recording on, throughput tap / nginx:   $(r "$tap_rps" "$ng_rps")x"
echo "  kept connections, recording on, CPU per request nginx / tap: $(r "$ng_cpu" "$tap_cpu")x   (1.0 = as efficient as nginx)"
echo "  kept connections, recording off, throughput tap / nginx:  $(r "$off_rps" "$ng_rps")x"
echo "  kept connections, recording off, CPU nginx / tap:         $(r "$ng_cpu" "$off_cpu")x"
echo "  p99 added latency, tap minus nginx:                       $(fmt "$pair_p99" 3) ms   (median of the rounds' differences)"
echo "  a handshake per request, throughput tap / nginx:          $(r "$taph_rps" "$ngh_rps")x"
echo "  a handshake per request, CPU per request nginx / tap:     $(r "$ngh_cpu" "$taph_cpu")x"
