#!/usr/bin/env bash
# Mirroring cost and the data-loss window, on lab hosts.
# Cost: 1 GiB in 10,240 files on h1, mirrored to h2 by dnsd (the daemon's own pass), by
# rsync-sync (the same code, one-shot), by rsync started on h1 directly with the same
# options (the floor), and by the same rsync command run over OpenSSH from the terminal
# server (`ssh root@h1 rsync ...`, as an operator would): full first sync, 1% of the files
# changed, one file appended, nothing changed; 4 rounds, each tool in every position once.
# Loss: a writer creates 100 files/s on the primary; the primary is crashed and the
# writes missing on the promoted member are counted, at [mirror] interval 1s and 5s.
#
#   bench/mirror.sh [--files 10240] [--file-kib 100] [--rounds 4] [--loss-trials 5]
#                   [--loss-intervals 1s,5s] [--no-cost] [--no-loss] ...
#
# Needs root (network namespaces, tmpfs) and about 7 GiB of free memory (the hosts.
# data folders are tmpfs). Waits for a quiet machine (at most 30 min) first.
# Typical duration: 7 to 9 minutes after the wait. Results: bench/results/mirror.jsonl.
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_prepare
run_bench mirror "$@"
