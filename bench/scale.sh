#!/usr/bin/env bash
# The controller at scale: dnsd heartbeating 10, 100 and 1,000 members (echo responders
# on 127.88.0.0/16, heartbeat's echod example, in processes of their own on CPU 0) every
# 200 ms over TCP, dnsd pinned to CPU 1. Per pool size: dnsd's CPU share and resident
# memory over one minute, then the delay from a member's death to dnsd's node_down event
# (10 trials).
#
#   bench/scale.sh [--sizes 10,100,1000] [--measure 60s] [--interval 200ms]
#                  [--protocol tcp|udp] [--death-trials 10] ...
#
# Needs 2 CPUs. Waits for a quiet machine (at most 30 min) before each pool size.
# Typical duration: 4 to 5 minutes after the wait. Results: bench/results/scale.jsonl,
# plot: docs/bench-scale.svg.
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_prepare
run_bench scale "$@"
plot scale
