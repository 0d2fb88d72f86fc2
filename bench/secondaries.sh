#!/usr/bin/env bash
# Failover through standard secondaries: dnsd as the hidden primary of Knot and NSD
# (configured from etc/secondaries/, TSIG on, NOTIFY on), 25 failovers, and for each the
# time from dnsd's decision until dnsd, Knot and NSD answer the new primary (each polled
# every millisecond over UDP).
#
#   bench/secondaries.sh [--trials 25] [--no-tsig] [--port 5300] ...
#
# As root the first time (scripts/deps installs packages). Waits for a quiet machine
# first (at most 30 min, --quiet-wait). Typical duration: 1 to 2 minutes after the wait.
# Results: bench/results/secondaries.jsonl.
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_prepare
run_bench secondaries "$@"
