#!/usr/bin/env bash
# The fault soak (issue 15): three lab members with real sshd, rsync and echo, a client
# host writing numbered records to the primary it finds through dnsd's DNS, dnsd in front;
# random faults from a seeded plan (crash and revive, partition terminal server <-> primary,
# cut, slow and lossy links, the operator's failover and switchover), then a checker of
# what was lost and of whether two members ever accepted writes at once.
#
#   bench/soak.sh [--faults 500] [--duration 3h] [--seed N] [--clients 2] [--rate 5]
#                 [--mix crash=3,partition=2,cut=2,slow=1,lossy=1,failover=1,switchover=1]
#                 [--unsafe no-fence|no-guard|no-receive-gate]   # deliberately broken
#
# Needs root (network namespaces, tmpfs). Does not wait for a quiet machine: the checker
# judges data, not time. 500 faults take about 45 minutes. Each run is appended to
# bench/results/soak.jsonl (BENCH_RESULTS to change); docs/soak.md summarises them.
# Exits 1 when the checker finds a violation. BENCH_KEEP=1 keeps the run's folder (dnsd's
# log, its events, every acknowledgement, the members' hook logs).
set -euo pipefail
source "$(dirname "$0")/common.sh"
# The lab's tools (sshd, rsync, socat, util-linux...), then dnsd and dnsd-bench.
scripts/deps test
cargo build --release -p dnsd -p bench --bins
mkdir -p "$RESULTS"
"$TARGET/release/dnsd-bench" soak --out "$RESULTS/soak.jsonl" --append "$@"
