#!/usr/bin/env bash
# Benchmark of the loopback demo: runs `x0tta6bl4 demo --json` RUNS times and prints the
# median and worst of the reroute time (relay SIGKILLed -> node 1 forwards via the other side),
# the convergence time and the idle control traffic per node.
#
# Usage: bench/demo_reroute.sh [RUNS] [extra demo flags...]
#   e.g. bench/demo_reroute.sh 20 --nodes 12 --topology grid
# Target (issue 2): reroute <= 300 ms on loopback. Not part of the test suite: timings depend
# on the machine's load.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-10}"
shift || true
cargo build --release --quiet -p cli
binary="${CARGO_TARGET_DIR:-target}/release/x0tta6bl4"

field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }

reroute=(); converged=(); control=(); healed=0
for run in $(seq 1 "$runs"); do
    summary=$("$binary" demo --json --measure-s 3 "$@" 2>/dev/null || true)
    if [[ "$summary" == *'"healed":true'* ]]; then healed=$((healed + 1)); fi
    reroute+=("$(field reroute_ms <<<"$summary")")
    converged+=("$(field converged_ms <<<"$summary")")
    control+=("$(field control_bytes_per_node_s <<<"$summary")")
    echo "run $run: reroute ${reroute[-1]:-?} ms, converged ${converged[-1]:-?} ms, control ${control[-1]:-?} B/s per node" >&2
done

stats() { # name unit values...
    local name=$1 unit=$2; shift 2
    printf '%s\n' "$@" | grep -v '^$' | sort -g | awk -v name="$name" -v unit="$unit" '
        { v[NR] = $1 } END { if (NR == 0) { print name ": no data"; exit }
          printf "%-28s median %8.1f %s   max %8.1f %s   (n=%d)\n", name, v[int((NR + 1) / 2)], unit, v[NR], unit, NR }'
}
echo "demo $* over $runs runs: healed $healed/$runs"
stats "reroute after SIGKILL" ms "${reroute[@]}"
stats "convergence after start" ms "${converged[@]}"
stats "idle control traffic" "B/s" "${control[@]}"
