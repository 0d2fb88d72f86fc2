#!/usr/bin/env bash
# Every benchmark in turn (DNS, failover, mirroring, scale, several terminal servers on
# etcd), each with its defaults; see the scripts for what each measures. Needs root and 2
# CPUs. Typical duration: about 50 minutes of measuring, plus the waits for a quiet
# machine (each benchmark first waits, at most 30 min, for the 1-minute load average to
# drop below 0.5): 55 to 80 minutes in all on this kind of machine.
set -euo pipefail
dir=$(dirname "$0")
"$dir/dns.sh"
"$dir/failover.sh"
"$dir/mirror.sh"
"$dir/scale.sh"
"$dir/cluster.sh"
