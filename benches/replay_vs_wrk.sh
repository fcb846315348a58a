#!/usr/bin/env bash
# Replays large synthetic recordings against two local nginx upstreams and prints, for each
# size, the upstream requests/s replay achieved (counted by the upstreams themselves), its peak RSS, its CPU time per upstream
# request, and wrk's requests/s against one of the same upstreams with the same connection
# count (the ratio is what to compare: this machine is shared and absolute figures move).
#
# For calibration it also runs two wrk processes at once, one per upstream: the load shape
# replay makes (every exchange goes to both). On a machine with few cores that is what the
# cores can give two upstreams, and it is printed as a ratio to wrk on one upstream too.
#
# With the noise probe off, each round also replays with baseline and candidate both on the
# upstream wrk measured, at half the concurrency: the same server and the same number of
# connections as wrk, which isolates the client's own cost from the second server's.
#
# It also prints what the nginx workers spent per request under each load (from /proc), and
# from that the ratio a client exactly as cheap as wrk would reach against two upstreams: on a
# machine whose cores the client and the servers share, that separates replay's own cost from
# what the second server costs.
#
# Each figure is the median of $ROUNDS rounds (wrk, then replay), since wrk's own rate moves by
# a quarter from one run to the next here; every round is printed too.
#
#   benches/replay_vs_wrk.sh            # 100,000 and 1,000,000 exchanges, 3 rounds each
#   SIZES="20000" ROUNDS=1 benches/replay_vs_wrk.sh
#   BIN=/path/to/shadowdiff benches/replay_vs_wrk.sh   # another build, not rebuilt
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"100000 1000000"}
CONC=${CONC:-64}
WRK_SECS=${WRK_SECS:-5}
ROUNDS=${ROUNDS:-3}
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { apt-get update -qq && apt-get install -y -qq nginx-light; }
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time; }
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin shadowdiff
  BIN=target/release/shadowdiff
fi
cargo build --release --quiet --example gen_recording
work=$(mktemp -d)
trap 'for p in $work/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done; rm -rf "$work"' EXIT

# CPU seconds the nginx workers of the named upstreams have used so far, from /proc: what a
# request costs the server depends on the load shape, and the ratio to wrk depends on it too.
nginx_cpu() { # name...
  local pids=()
  for u in "$@"; do pids+=($(pgrep -P "$(cat "$work/$u.pid")")); done
  python3 - "${pids[@]}" <<'PY'
import os, sys
hz = os.sysconf("SC_CLK_TCK")
total = 0
for pid in sys.argv[1:]:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    total += int(fields[11]) + int(fields[12])  # utime, stime
print(total / hz)
PY
}
# Requests the named upstreams have served so far (nginx's stub_status), each asking counted
# once: replay's upstream requests are counted, not assumed from the exchange count.
served() { # port...
  local total=0 n
  for p in "$@"; do
    n=$(curl -s "http://127.0.0.1:$p/__requests" | awk 'NR==3{print $3}')
    total=$((total + n))
  done
  echo "$total"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_nginx() { # name port
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
  server {
    listen 127.0.0.1:$2;
    location = /__requests { stub_status; }
    location / { return 200 '{"path":"\$uri","items":[{"id":1,"name":"widget","price":12.5,"tags":["a","b"]},{"id":2,"name":"gadget","price":7.25,"tags":["c"]}],"total":2,"currency":"EUR","page":{"size":20,"number":1}}'; }
  }
}
CONF
  "$NGINX" -p "$d" -c "$d/nginx.conf"
}
P1=$(free_port); start_nginx up1 "$P1"
P2=$(free_port); start_nginx up2 "$P2"
sleep 0.5

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; concurrency $CONC"
echo "(wrk runs for ${WRK_SECS}s right before every replay, so each ratio compares figures taken"
echo " moments apart: this machine is shared, and wrk's own rate moves by a quarter between runs)"
# measure_wrk -> sets wrk_out (one upstream), wrk_cpu (us per request), both (two at once)
measure_wrk() {
  local n wu ws before after
  before=$(nginx_cpu up1)
  /usr/bin/time -f '%U %S' -o "$work/wrk.time" wrk -t1 -c"$CONC" -d"${WRK_SECS}s" "http://127.0.0.1:$P1/api/users/1" > "$work/wrk.txt"
  after=$(nginx_cpu up1)
  wrk_out=$(awk '/Requests\/sec/{print $2}' "$work/wrk.txt")
  n=$(awk '/requests in/{print $1}' "$work/wrk.txt")
  read -r wu ws < "$work/wrk.time"
  wrk_cpu=$(python3 -c "print(f'{($wu + $ws) * 1e6 / $n:.1f}')")
  wrk_ngx=$(python3 -c "print(f'{($after - $before) * 1e6 / $n:.1f}')")
  wrk -t1 -c"$CONC" -d"${WRK_SECS}s" "http://127.0.0.1:$P1/api/users/1" > "$work/wrk1.txt" &
  wrk -t1 -c"$CONC" -d"${WRK_SECS}s" "http://127.0.0.1:$P2/api/users/1" > "$work/wrk2.txt"
  wait
  both=$(cat "$work/wrk1.txt" "$work/wrk2.txt" | awk '/Requests\/sec/{s+=$2} END{print s}')
}

for n in $SIZES; do
  rec=$work/rec-$n.jsonl.zst
  cargo run --release --quiet --example gen_recording -- "$n" "$rec" 2>/dev/null
  for probe in off on; do
    : > "$work/rounds"
    for round in $(seq "$ROUNDS"); do
      measure_wrk
      echo "  wrk, one upstream, $CONC connections: $wrk_out req/s, $wrk_cpu us CPU per request" \
        "(nginx $wrk_ngx us);" \
        "both upstreams at once (two processes, $CONC connections each): $both req/s"
      flags=(--no-noise-probe)
      [ "$probe" = on ] && flags=()
      ngx_before=$(nginx_cpu up1 up2)
      served_before=$(served "$P1" "$P2")
      /usr/bin/time -f '%e %M %U %S' -o "$work/time" "$BIN" replay "$rec" --quiet \
        --baseline "http://127.0.0.1:$P1" --candidate "http://127.0.0.1:$P2" \
        --concurrency "$CONC" "${flags[@]}" --json "$work/r.json" || true
      ngx_after=$(nginx_cpu up1 up2)
      # Per exchange: the pair, and with the probe the baseline's second call and the
      # candidate's (both carry the same load); the two status requests are taken off.
      reqs=$(( $(served "$P1" "$P2") - served_before - 2 ))
      per=$(python3 -c "print($reqs / $n)")
      read -r secs rss_kb user sys < "$work/time"
      same=0
      if [ "$probe" = off ]; then
        /usr/bin/time -f '%e' -o "$work/time1" "$BIN" replay "$rec" --quiet \
          --baseline "http://127.0.0.1:$P1" --candidate "http://127.0.0.1:$P1" \
          --concurrency "$((CONC / 2))" --no-noise-probe --json "$work/r1.json" || true
        same=$(python3 -c "print($n * 2 / $(cat "$work/time1"))")
      fi
      python3 - "$n" "$per" "$secs" "$rss_kb" "$wrk_out" "$probe" "$both" "$user" "$sys" "$round" "$work/rounds" "$same" \
        "$wrk_cpu" "$wrk_ngx" "$ngx_before" "$ngx_after" <<'PY'
import sys
n, per, secs, rss_kb, wrk, probe, both, user, sys_, rnd, out, same = (int(sys.argv[1]),
    float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6],
    float(sys.argv[7]), float(sys.argv[8]), float(sys.argv[9]), sys.argv[10], sys.argv[11],
    float(sys.argv[12]))
wrk_cpu, wrk_ngx, ngx_before, ngx_after = map(float, sys.argv[13:17])
rate = n * per / secs
cpu = (user + sys_) * 1e6 / (n * per)
ngx = (ngx_after - ngx_before) * 1e6 / (n * per)
# Both cores are busy in both runs, so rates go inversely with the CPU a request costs client
# and server together: a client exactly as cheap as wrk, on servers costing what they cost
# under replay, would reach this ratio.
bound = (wrk_cpu + wrk_ngx) / (wrk_cpu + ngx)
print(f"  replay {n:>9} exchanges, noise probe {probe:>3}, round {rnd}: {secs:7.1f} s, "
      f"{rate:9.0f} upstream req/s ({rate / wrk:.2f}x wrk on one upstream, "
      f"{rate / both:.2f}x wrk on both), {cpu:.1f} us CPU per upstream request, "
      f"peak RSS {rss_kb / 1024:.1f} MB")
print(f"    nginx CPU per request: {ngx:.1f} us under replay, {wrk_ngx:.1f} us under wrk; "
      f"a client as cheap as wrk would reach {bound:.2f}x here")
if same:
    print(f"  replay with both sides on wrk's upstream, {n} exchanges: {same:9.0f} upstream "
          f"req/s ({same / wrk:.2f}x wrk, the same server and connection count)")
with open(out, "a") as f:
    f.write(f"{rate} {rate / wrk} {rate / both} {cpu} {rss_kb / 1024} {same / wrk} "
            f"{ngx} {wrk_ngx} {bound}\n")
PY
    done
    python3 - "$n" "$probe" "$work/rounds" <<'PY'
import statistics, sys
n, probe = int(sys.argv[1]), sys.argv[2]
rows = [list(map(float, l.split())) for l in open(sys.argv[3]) if l.strip()]
med = [statistics.median(c) for c in zip(*rows)]
print(f"replay {n:>9} exchanges, noise probe {probe:>3}, median of {len(rows)}: "
      f"{med[0]:9.0f} upstream req/s, {med[1]:.2f}x wrk on one upstream "
      f"(rounds: {', '.join(f'{r[1]:.2f}' for r in rows)}), {med[2]:.2f}x wrk on both, "
      f"{med[3]:.1f} us CPU per upstream request, peak RSS {max(r[4] for r in rows):.1f} MB")
print(f"  nginx CPU per request, median: {med[6]:.1f} us under replay, {med[7]:.1f} us under "
      f"wrk; a client as cheap as wrk would reach {med[8]:.2f}x "
      f"(rounds: {', '.join(f'{r[8]:.2f}' for r in rows)})")
if med[5]:
    print(f"  both sides on wrk's upstream, median: {med[5]:.2f}x wrk "
          f"(rounds: {', '.join(f'{r[5]:.2f}' for r in rows)})")
PY
  done
done
