#!/usr/bin/env bash
# Writes lost when the primary crashes: dnsd's mirroring side by side with lsyncd, on lab
# hosts (three by default: h1 primary, h2 and h3 secondaries). A writer creates 100 small
# numbered files a second on h1; h1 is crashed at a random point of the sync cycle; the
# writes missing on the promoted member, and those missing from every member's live data
# and kept folders once the pool has resynced, are counted.
# Configurations: lsyncd at its default delay and at delay = 1 (default.rsync over ssh from
# the primary to every secondary; "promoted" = h2, the one you would fail over to), and
# dnsd at [mirror] interval 1s and 5s, each with election = "freshest" and "round-robin".
#
#   bench/dataloss.sh [--trials 10] [--systems lsyncd,lsyncd:1,dnsd:1s:freshest,...]
#                     [--hosts 3] [--write-rate 100] [--time-limit 30m]
#                     [--quiet-load 0.5] [--quiet-wait 30m]
#
# Needs root (network namespaces, tmpfs) and lsyncd (installed by scripts/deps bench).
# Trials are interleaved across configurations; no new round starts after --time-limit of
# measuring. Typical duration: 25 to 30 minutes for 10 trials each, after the wait for a
# quiet machine (at most --quiet-wait). Results: bench/results/dataloss.jsonl; the table is
# printed at the end (Markdown, on stderr). `bench/dataloss.sh --table-of FILE` measures
# nothing and prints the table of the trials in FILE (e.g. bench/results/dataloss.jsonl).
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_prepare
for arg in "$@"; do
  case $arg in
    # Not through run_bench: its --out would truncate the results file before it is read.
    --table-of | --table-of=*) exec "$TARGET/release/dnsd-bench" dataloss "$@" ;;
  esac
done
run_bench dataloss "$@"
