#!/usr/bin/env bash
# Runs every "never panics" property of the parsers and decoders as a bounded fuzz: the same
# proptest properties as the normal suite (recording lines, rules files, protobuf, gRPC frames,
# multipart, the gor/HAR/pcap importers, the packet pipeline's HTTP/2 decoder), with many more
# cases. A failure prints the minimal failing input, which proptest also saves under
# proptest-regressions/ so it is replayed by the normal suite from then on (commit those
# files). benches/fuzz_binary.sh tests the same promise from outside: mutated files through
# the release binary's commands, with memory bounded, classifying panics, aborts and hangs.
#
#   benches/fuzz.sh                 # 20,000 cases per property
#   CASES=200000 benches/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CASES=${CASES:-20000}
export SHADOWDIFF_FUZZ_CASES=$CASES
start=$(date +%s)
cargo test --release --lib -- never_panic --test-threads 2
cargo test --release --test tests -- never_panic --test-threads 2
echo "fuzz: $CASES cases per property, no panic, $(( $(date +%s) - start )) s"
