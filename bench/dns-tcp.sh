#!/usr/bin/env bash
# DNS over TCP: dnsperf -m tcp against dnsd and Knot serving the same zone, one worker
# each (dnsd: dns.threads = 1, its TCP on the async runtime; Knot: tcp-workers = 1), the
# server pinned to CPU 1 and dnsperf to CPU 0, at a fixed load and unthrottled.
#
#   bench/dns-tcp.sh [--rounds 5] [--duration 10] [--qps 20000] [--clients 4] ...
#
# Needs 2 CPUs; as root the first time. Waits for a quiet machine first (see
# bench/dns.sh). Results: bench/results/dns-tcp.jsonl.
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_prepare
mkdir -p "$RESULTS"
"$TARGET/release/dnsd-bench" dns --transport tcp --servers dnsd,knot --qps 20000 \
  --out "$RESULTS/dns-tcp.jsonl" "$@"
