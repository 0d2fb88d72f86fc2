#!/usr/bin/env bash
# Every benchmark in turn, each with its defaults: DNS over UDP, over TCP and with 1 and 2
# worker threads, failover, failover through Knot and NSD as secondaries, mirroring, the
# data lost at a crash against lsyncd, scale, and three terminal servers on etcd against
# one; see each script for what it measures. The fault soak (bench/soak.sh) checks rather
# than measures, and is run on its own. Needs root and 2 CPUs. Each benchmark first waits,
# at most 30 min, for the 1-minute load average to drop below 0.5; on this kind of machine
# the whole takes about two hours.
set -euo pipefail
dir=$(dirname "$0")
"$dir/dns.sh"
"$dir/dns-tcp.sh"
"$dir/dns-threads.sh"
"$dir/failover.sh"
"$dir/secondaries.sh"
"$dir/mirror.sh"
"$dir/dataloss.sh"
"$dir/scale.sh"
"$dir/cluster.sh"
