#!/usr/bin/env bash
# UDP scaling with worker threads: dnsperf against dnsd (dns.threads = N: N sockets per
# address with SO_REUSEPORT, each on its own thread), Knot (udp-workers = N) and NSD
# (server-count = N), first with 1 worker each (server pinned to CPU 1, dnsperf to CPU 0),
# then with 2 (nothing pinned: servers and dnsperf share both CPUs). Ratios dnsd/peer are
# taken within each run, at the same worker count.
#
#   bench/dns-threads.sh [--rounds 5] [--duration 10] [--qps 50000] ...
#
# Needs 2 CPUs; as root the first time (scripts/deps installs packages). Waits for a
# quiet machine before each half (see bench/dns.sh). Results: bench/results/dns-threads-1.jsonl and dns-threads-2.jsonl.
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_prepare
mkdir -p "$RESULTS"
for threads in 1 2; do
  "$TARGET/release/dnsd-bench" dns --threads "$threads" --servers dnsd,knot,nsd \
    --out "$RESULTS/dns-threads-$threads.jsonl" "$@"
done
