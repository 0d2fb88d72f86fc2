#!/usr/bin/env bash
# DNS throughput and CPU per query: dnsperf against dnsd, Knot, NSD and gdnsd serving the
# same zone (10 services, 30 members, NXDOMAIN names), each on its own loopback address
# (127.0.53.1-4, port 5300). Every server is pinned to CPU 1, dnsperf to CPU 0. Runs are
# interleaved in rounds, at 50,000 queries/s (with per-query latencies for the 99th
# percentile) and unthrottled; figures are medians over rounds, ratios dnsd/peer are
# medians of per-round ratios.
#
#   bench/dns.sh [--rounds 5] [--duration 10] [--qps 50000] [--clients 4] [--no-max] ...
#
# Needs 2 CPUs; as root the first time (scripts/deps installs packages). Waits for the
# 1-minute load average to drop below 0.5 (at most 30 min, --quiet-wait) before measuring.
# Typical duration: 8 to 9 minutes after the wait. Results: bench/results/dns.jsonl,
# plot: docs/bench-dns.svg.
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_prepare
run_bench dns "$@"
plot dns
