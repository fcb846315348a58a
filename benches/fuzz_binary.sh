#!/usr/bin/env bash
# Black-box fuzz of the release binary: mutates the test fixtures (HAR, pcap, pcapng), the
# bundled recording (plain and zstd), a GoReplay capture, the example rules file, a rules
# list and a result JSON made by `shadowdiff demo` with bit flips, truncation, splicing,
# long lines, deep nesting, huge numbers, length fields set to their maximum, corrupt
# gzip/zstd and small gzip files that expand to hundreds of megabytes; then runs
# `interfaces`, `import --from gor|har|pcap`, `show`, `report`, `merge`, and `replay
# --config` against an unreachable target (only the rules file is exercised), each under
# `prlimit --as=2000000000` and `timeout`. Every run is classified: clean (exit 0-3), panic
# (exit 101 or "panicked at" on stderr), abort (killed by a signal: an allocation over the
# limit, a stack overflow), hang (still running at the timeout); a clean exit 2 whose
# message does not name the input is counted apart as "unnamed". Failing inputs are kept,
# with the command and its stderr, under the directory the script prints.
#
# benches/fuzz.sh runs the proptest "never panics" properties in-process; this script tests
# the same promise from outside, through the real commands, with memory bounded as the
# README promises.
#
#   benches/fuzz_binary.sh               # 10 minutes
#   benches/fuzz_binary.sh 30m           # or DURATION=30m; seconds without a unit
#   nice -n 10 benches/fuzz_binary.sh 30m
#
# Environment: DURATION, SEED (random by default, printed), HANG_SECONDS (20), OUT (the
# directory for inputs and failures, default target/fuzz-binary/<time>), BIN (the binary;
# by default target/release/shadowdiff, built first unless NO_BUILD=1). Exits 1 when any
# run panicked, aborted or hung.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-${DURATION:-10m}}
for tool in prlimit timeout python3; do
    command -v "$tool" >/dev/null || { echo "fuzz_binary: $tool is required" >&2; exit 2; }
done
if [ -z "${BIN:-}" ]; then
    BIN=target/release/shadowdiff
    [ "${NO_BUILD:-0}" = 1 ] || cargo build --release --quiet
fi
OUT=${OUT:-target/fuzz-binary/$(date +%Y%m%d-%H%M%S)}
export BIN OUT DURATION
exec python3 benches/fuzz_binary.py
