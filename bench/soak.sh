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
#                 [--cluster [--terminal-servers 3] [--lease 2s]]
#                 [--flap-threshold 0]   # dnsd's flap damping off: more failovers
#
# --cluster runs it against a cluster: a real etcd (Debian's etcd-server) and N terminal
# servers (default 3), each in a lab host of its own (ts1..tsN, etcd), every dnsd with a
# [cluster] section on the same pool; the clients resolve through any terminal server's
# DNS (the next one when one does not answer). Its default mix adds kill_ts=2 (kill -9 of
# a terminal server, the leader on even picks; started again on its own folder when the
# fault ends) and etcd_partition=2 (one terminal server cut from etcd); one terminal
# server is impaired at a time. Member faults target the leader's view, the operator's
# moves go to the leader, and a partition cuts every terminal server from the primary.
# The checker also samples every terminal server's answer every 250 ms: servers in touch
# with etcd naming different primaries for longer than the lease plus one watch (1 s) is
# a violation, and so is a terminal server that exits or panics unless the soak killed
# it. "In touch" is: not held cut from etcd by the soak, and saying in its status that it
# has an etcd session; one without answers its last known state, as documented: those
# samples are counted (stale_answers_while_away), not judged, and how long a terminal
# server takes to get a session back once its etcd partition is healed is reported
# (etcd_rejoin_ms). The run's folder keeps every sample (samples.jsonl) and every
# terminal server's logs (tsN/dnsd.log, then dnsd-2.log... after each restart).
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
