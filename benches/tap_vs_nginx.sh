#!/usr/bin/env bash
# The tap against nginx, side by side in one run, on this machine, with wrk as the client.
#
#   recording:   nginx `proxy_pass` (worker_processes 1) vs `shadowdiff tap --threads 1`
#                recording every exchange, same upstream (an nginx `return 200`):
#                throughput at $CONC connections, and p99 added latency at $LAT_CONC
#                connections (p99 through the proxy minus p99 straight to the upstream).
#                The tap's CPU is split into its proxy thread and its recorder thread,
#                and the tap also runs with recording off (`--sample 0`), to show what the
#                proxying alone costs against nginx and what the recording adds.
#   shadow:      nginx `mirror` to a second upstream vs the tap with --shadow at 100%.
#   broken disk: the tap recording into a path it cannot create, and onto a slow disk (a
#                delay before every write): statuses and share of the healthy throughput.
#   memory:      the tap's RSS after every round of sustained load.
#
# nginx's upstream connections use keepalive (the fair comparison); its default
# `proxy_pass` (a new upstream connection per request) is measured once for reference.
#
# The machine is shared, so every figure is the median of $ROUNDS interleaved rounds (each
# round runs every contender once, back to back), and next to throughput the CPU time per
# request of the proxy process (user + system, all threads) is given: it does not depend
# on how much CPU the neighbours left over.
#
#   benches/tap_vs_nginx.sh                      # 3 rounds of 5 s runs
#   ROUNDS=5 DURATION=10s benches/tap_vs_nginx.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
CONC=${CONC:-64}
LAT_CONC=${LAT_CONC:-4}
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { apt-get update -qq && apt-get install -y -qq nginx-light; }
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# BIN=path/to/shadowdiff measures another build (an earlier commit, say) on the same terms.
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin shadowdiff
  BIN=$PWD/target/release/shadowdiff
fi
# Under target/, not /tmp: a neighbour cleaning /tmp must not pull the floor away mid-run.
work=$(mktemp -d "$PWD/target/tap-bench.XXXXXX")
cleanup() {
  for p in "$work"/*.tappid; do [ -f "$p" ] && kill -TERM "$(cat "$p")" 2>/dev/null || true; done
  sleep 0.5
  for p in "$work"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

nginx_conf() { # name port http-extra server-body -> prints the worker pid
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
$3
  server {
    listen 127.0.0.1:$2;
$4
  }
}
CONF
  "$NGINX" -p "$d" -c "$d/nginx.conf"
  cp "$d/nginx.pid" "$work/$1.pid"
  wait_port "$2"
}
worker_of() { pgrep -P "$(cat "$work/$1/nginx.pid")" | head -1; }

BODY='{"id":17,"name":"widget","price":12.5,"tags":["a","b"],"stock":{"warehouse":"north","count":42}}'
UP=$(free_port); nginx_conf up "$UP" "" "    location / { return 200 '$BODY'; }"
CAND=$(free_port); nginx_conf cand "$CAND" "" "    location / { return 200 '$BODY'; }"
KA="  upstream prod { server 127.0.0.1:$UP; keepalive 128; }
  upstream cand { server 127.0.0.1:$CAND; keepalive 128; }"
PASS='proxy_http_version 1.1; proxy_set_header Connection "";'
NG_DEFAULT=$(free_port); nginx_conf ng_default "$NG_DEFAULT" "" "    location / { proxy_pass http://127.0.0.1:$UP; }"
NG=$(free_port); nginx_conf ng "$NG" "$KA" "    location / { proxy_pass http://prod; $PASS }"
NG_MIRROR=$(free_port); nginx_conf ng_mirror "$NG_MIRROR" "$KA" "    location / { mirror /mirror; proxy_pass http://prod; $PASS }
    location = /mirror { internal; proxy_pass http://cand\$request_uri; $PASS }"

start_tap() { # name extra-args... -> "port metrics-port pid"
  local name=$1; shift
  "$BIN" tap --threads 1 --listen 127.0.0.1:0 --metrics 127.0.0.1:0 --upstream "http://127.0.0.1:$UP" "$@" 2>"$work/$name.err" &
  local pid=$!; echo "$pid" > "$work/$name.tappid"
  for _ in $(seq 200); do grep -q 'listening on' "$work/$name.err" 2>/dev/null && break; sleep 0.05; done
  local port mport
  port=$(grep -o 'listening on [0-9.:]*' "$work/$name.err" | sed 's/.*://')
  mport=$(grep -o 'metrics on [0-9.:]*' "$work/$name.err" | sed 's/.*://')
  [ -n "$port" ] || { cat "$work/$name.err" >&2; exit 1; }
  echo "$port $mport $pid"
}
mkdir -p "$work/ro"; touch "$work/ro/file"
read -r T_REC T_REC_M T_REC_PID < <(start_tap rec --out "$work/rec.jsonl")
read -r T_SH T_SH_M T_SH_PID < <(start_tap shadow --out "$work/shadow.jsonl" --shadow "http://127.0.0.1:$CAND" --shadow-sample 1 --shadow-concurrency 256)
read -r T_OFF T_OFF_M T_OFF_PID < <(start_tap off --out "$work/off.jsonl" --sample 0 --min-per-interface 0)
read -r T_RO T_RO_M T_RO_PID < <(start_tap broken --out "$work/ro/file/traffic.jsonl")
read -r T_SLOW T_SLOW_M T_SLOW_PID < <(start_tap slow --out "$work/slow.jsonl" --debug-write-delay 2ms --queue-size 256)

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
# The CPU ticks of the process's recorder thread (0 for nginx, which has none).
recorder_ticks() {
  local t sum=0
  for t in /proc/"$1"/task/*; do
    grep -q '^shadowdiff-reco' "$t/comm" 2>/dev/null && sum=$((sum + $(awk '{print $14+$15}' "$t/stat")))
  done
  echo "$sum"
}
clk=$(getconf CLK_TCK)
# run NAME PORT PID CONNS -> appends "rps p99_ms cpu_us_per_req non2xx recorder_cpu_us_per_req"
# to $work/NAME.txt
run() {
  local c0 r0 out c1 r1 n secs rps p99 bad cpu rcpu
  c0=$(cpu_ticks "$3"); r0=$(recorder_ticks "$3")
  out=$(wrk -t1 -c"$4" -d"$DURATION" --latency "http://127.0.0.1:$2/api/products/17?currency=EUR")
  c1=$(cpu_ticks "$3"); r1=$(recorder_ticks "$3")
  n=$(awk '/requests in/{print $1}' <<<"$out")
  secs=$(awk '/requests in/{gsub(/s,/,"",$4); print $4}' <<<"$out")
  rps=$(python3 -c "print($n/$secs)")
  p99=$(awk '$1=="99%"{v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' <<<"$out")
  bad=$(awk '/Non-2xx/{print $NF}' <<<"$out"); bad=${bad:-0}
  cpu=$(python3 -c "print(($c1-$c0)*1e6/$clk/max($n,1))")
  rcpu=$(python3 -c "print(($r1-$r0)*1e6/$clk/max($n,1))")
  echo "$rps $p99 $cpu $bad $rcpu" >> "$work/$1.txt"
  # What a recording tap wrote is still in the page cache; the kernel writes it to disk
  # some seconds later, on these same two cores. Written now, between runs, it does not
  # slow down whichever contender happens to run then.
  sync
}
med() { # NAME COLUMN -> median
  python3 -c "import statistics,sys; v=[float(l.split()[$2-1]) for l in open('$work/$1.txt')]; print(statistics.median(v))"
}
sumcol() { python3 -c "print(int(sum(float(l.split()[$2-1]) for l in open('$work/$1.txt'))))"; }
fmt() { python3 -c "print(f'{$1:.${2:-0}f}')"; }
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1==m{print $2}'; }
rss_kb() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); wrk -t1; $CONC connections for throughput, $LAT_CONC for latency; $ROUNDS rounds of $DURATION"
run ng_default "$NG_DEFAULT" "$(worker_of ng_default)" "$CONC"
rss=()
for r in $(seq "$ROUNDS"); do
  run ng "$NG" "$(worker_of ng)" "$CONC"
  run tap "$T_REC" "$T_REC_PID" "$CONC"
  run off "$T_OFF" "$T_OFF_PID" "$CONC"
  run direct_lat "$UP" "$(worker_of up)" "$LAT_CONC"
  run ng_lat "$NG" "$(worker_of ng)" "$LAT_CONC"
  run tap_lat "$T_REC" "$T_REC_PID" "$LAT_CONC"
  run mirror "$NG_MIRROR" "$(worker_of ng_mirror)" "$CONC"
  run shadow "$T_SH" "$T_SH_PID" "$CONC"
  run broken "$T_RO" "$T_RO_PID" "$CONC"
  run slow "$T_SLOW" "$T_SLOW_PID" "$CONC"
  rss+=("$(rss_kb "$T_REC_PID")")
  echo "  round $r done (load average $(cut -d' ' -f1 /proc/loadavg))"
done

ng_rps=$(med ng 1); tap_rps=$(med tap 1); ngd_rps=$(med ng_default 1)
ng_cpu=$(med ng 3); tap_cpu=$(med tap 3); tap_rcpu=$(med tap 5)
off_rps=$(med off 1); off_cpu=$(med off 3)
d_p99=$(med direct_lat 2); ng_p99=$(med ng_lat 2); tap_p99=$(med tap_lat 2)
m_rps=$(med mirror 1); s_rps=$(med shadow 1); m_cpu=$(med mirror 3); s_cpu=$(med shadow 3)
b_rps=$(med broken 1); w_rps=$(med slow 1)
ng_add=$(python3 -c "print($ng_p99-$d_p99)"); tap_add=$(python3 -c "print($tap_p99-$d_p99)")
# The tap's p99 against nginx's measured right before it in the same round, the median of
# those differences: a p99 of a few seconds' run moves with the neighbours' load, and pairing
# within a round takes out what the two share.
pair_p99=$(python3 -c "import statistics; t=[float(l.split()[1]) for l in open('$work/tap_lat.txt')]; n=[float(l.split()[1]) for l in open('$work/ng_lat.txt')]; print(statistics.median(a-b for a,b in zip(t,n)))")

echo
echo "                                   req/s   CPU us/req   p99 added (ms, $LAT_CONC conns)   non-2xx"
printf "nginx proxy_pass, default        %7s\n" "$(fmt "$ngd_rps")"
printf "nginx proxy_pass, keepalive      %7s   %10s   %8s                        %s\n" "$(fmt "$ng_rps")" "$(fmt "$ng_cpu" 1)" "$(fmt "$ng_add" 3)" "$(sumcol ng 4)"
printf "tap --threads 1, recording on    %7s   %10s   %8s                        %s\n" "$(fmt "$tap_rps")" "$(fmt "$tap_cpu" 1)" "$(fmt "$tap_add" 3)" "$(sumcol tap 4)"
printf "  of which the recorder thread   %7s   %10s\n" "" "$(fmt "$tap_rcpu" 1)"
printf "tap --threads 1, recording off   %7s   %10s                                     %s\n" "$(fmt "$off_rps")" "$(fmt "$off_cpu" 1)" "$(sumcol off 4)"
printf "nginx mirror                     %7s   %10s\n" "$(fmt "$m_rps")" "$(fmt "$m_cpu" 1)"
printf "tap --shadow 100%%, recording on  %7s   %10s                                     %s\n" "$(fmt "$s_rps")" "$(fmt "$s_cpu" 1)" "$(sumcol shadow 4)"
printf "tap, output cannot be created    %7s                                                %s\n" "$(fmt "$b_rps")" "$(sumcol broken 4)"
printf "tap, slow disk (2 ms per write)  %7s                                                %s\n" "$(fmt "$w_rps")" "$(sumcol slow 4)"
echo
echo "tap (recording): recorded $(metric "$T_REC_M" shadowdiff_tap_recorded_total), dropped queue_full $(metric "$T_REC_M" 'shadowdiff_tap_dropped_total{reason="queue_full"}'); RSS after each round: ${rss[*]} kB"
echo "tap (shadow):    picked $(metric "$T_SH_M" shadowdiff_tap_shadow_selected_total), sent $(metric "$T_SH_M" shadowdiff_tap_shadow_sent_total), not sent (busy) $(metric "$T_SH_M" 'shadowdiff_tap_shadow_not_sent_total{reason="busy"}'), judged identical $(metric "$T_SH_M" 'shadowdiff_tap_shadow_judged_total{outcome="identical"}')"
echo "tap (cannot create): dropped write_error $(metric "$T_RO_M" 'shadowdiff_tap_dropped_total{reason="write_error"}')"
echo "tap (slow disk):     recorded $(metric "$T_SLOW_M" shadowdiff_tap_recorded_total), dropped queue_full $(metric "$T_SLOW_M" 'shadowdiff_tap_dropped_total{reason="queue_full"}')"
echo
r() { python3 -c "print(f'{$1/$2:.2f}')"; }
echo "ratios (medians)"
echo "  recording on, throughput tap / nginx keepalive:     $(r "$tap_rps" "$ng_rps")x   (target >= 1.0)"
echo "  recording on, CPU per request nginx / tap:          $(r "$ng_cpu" "$tap_cpu")x   (1.0 = as efficient as nginx)"
echo "  recording on, throughput tap / nginx default:       $(r "$tap_rps" "$ngd_rps")x"
echo "  recording off, throughput tap / nginx keepalive:    $(r "$off_rps" "$ng_rps")x   (the proxying alone)"
echo "  recording off, CPU per request nginx / tap:         $(r "$ng_cpu" "$off_cpu")x"
echo "  p99 added latency, tap minus nginx:                 $(fmt "$pair_p99" 3) ms   (target <= 0; median of the rounds' differences)"
echo "  shadow 100%, throughput tap / nginx mirror:         $(r "$s_rps" "$m_rps")x   (target >= 3.0)"
echo "  output cannot be created, throughput / healthy:     $(r "$b_rps" "$tap_rps")x   (target >= 0.95)"
echo "  slow disk, throughput / healthy:                    $(r "$w_rps" "$tap_rps")x   (target >= 0.95)"
