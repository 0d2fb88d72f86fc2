# Shared by the bench/*.sh scripts (sourced, not run): go to the repository root, install
# what the benchmarks need, build the binaries, run one benchmark with its results saved.
#
# Environment:
#   BENCH_RESULTS   where the JSON lines go (default: bench/results)
#   BENCH_PLOTS     where the SVG plots go (default: docs)
#   CARGO_TARGET_DIR  honoured, as cargo does

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RESULTS=${BENCH_RESULTS:-$ROOT/bench/results}
PLOTS=${BENCH_PLOTS:-$ROOT/docs}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

# Packages (dnsperf, Knot, NSD, gdnsd, sshd, rsync, socat...) and the release binaries:
# dnsd, rsync-sync, heartbeat's echod example and dnsd-bench.
bench_prepare() {
  scripts/deps bench
  cargo build --release -p dnsd -p rsync-sync -p heartbeat -p bench --bins --examples
}

# run_bench NAME [OPTIONS...]: runs `dnsd-bench NAME`, JSON lines on stdout and in
# $RESULTS/NAME.jsonl, the human summary on stderr.
run_bench() {
  local name=$1
  shift
  mkdir -p "$RESULTS"
  "$TARGET/release/dnsd-bench" "$name" --out "$RESULTS/$name.jsonl" "$@"
}

# plot NAME: SVG plots of $RESULTS/NAME.jsonl into $PLOTS.
plot() {
  python3 bench/plot.py "$1" "$RESULTS/$1.jsonl" "$PLOTS"
}
