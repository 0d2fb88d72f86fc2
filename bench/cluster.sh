#!/usr/bin/env bash
# Several terminal servers against one, on loopback: three dnsd sharing one etcd and one
# standalone dnsd watch the same three members (heartbeat echod processes, crashed by
# SIGKILL to their PID) with the same heartbeat settings (500 ms, timeout 400 ms, fall 3,
# rise 3; lease 3 s).
#   - steady: etcd's revisions, writes and keep-alive requests over 60 s of nothing;
#   - failover: 25 crashes of the primary, each timed to the first DNS answer naming the
#     next member on standalone dnsd and on every terminal server (same crash for both);
#   - takeover: 25 times, SIGKILL to the leader's dnsd and the primary crashed right after,
#     timed until a survivor leads and until DNS on every survivor names the next member;
#   - flap, failovers: etcd's writes over 60 s while a secondary goes down and up every
#     3 s, then while the primary is crashed and revived every 6 s.
#
#   bench/cluster.sh [--trials 25] [--takeover-trials 25] [--window 60s] [--lease 3s]
#                    [--phases steady,failover,takeover,flap,failovers] [--time-limit 40m] ...
#
# As root the first time (scripts/deps installs etcd-server). Waits for a quiet machine
# first (at most 30 min, --quiet-wait). Typical duration: 12 to 15 minutes after the wait.
# Results: bench/results/cluster.jsonl; `python3 bench/tables.py` prints the tables.
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_prepare
run_bench cluster "$@"
