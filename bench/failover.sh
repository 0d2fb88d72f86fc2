#!/usr/bin/env bash
# Failover and failback time on three lab hosts (network namespaces with sshd and echo):
# the primary is crashed again and again, and DNS is polled every 10 ms until the answer
# names the next member; then it is revived and DNS is polled until it names it again.
# dnsd at its default heartbeat (500 ms, fall 3, rise 3) and at an aggressive one
# (100 ms, fall 3, rise 3), 30 trials each, with gdnsd (tcp_connect health checks at the
# fastest settings it accepts, simplefo) watching the same hosts in the same trials.
#
#   bench/failover.sh [--trials 30] [--settings default,aggressive] [--time-limit 40m] ...
#
# Needs root (network namespaces). Waits for a quiet machine (at most 30 min) first.
# Typical duration: 10 to 12 minutes after the wait. Results: bench/results/failover.jsonl,
# plot: docs/bench-failover.svg.
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_prepare
run_bench failover "$@"
plot failover
