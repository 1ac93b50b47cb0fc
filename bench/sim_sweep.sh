#!/usr/bin/env bash
# Seed sweep of the deterministic simulator, TigerBeetle-VOPR style: runs many seeds over every
# topology, with and without loss, and prints the command line of every run that failed its
# checks (invariant violation, no convergence, no recovery, unreachable pairs at the end) with
# its first problem. Any failing line reproduces exactly by re-running it.
#
# Usage: [LOSSES="0 0.05"] bench/sim_sweep.sh [SEEDS] [NODES] [DURATION_S]   (defaults 20 60 20)
#   e.g. bench/sim_sweep.sh 100 200 30
# Runs as many simulations at once as the machine has cores. Not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="${1:-20}"
nodes="${2:-60}"
duration="${3:-20}"
cargo build --release --quiet -p sim --example run
binary="${CARGO_TARGET_DIR:-target}/release/examples/run"
export binary
results=$(mktemp)

one() { # seed topology loss
    local args="--nodes $nodes --topology $2 --loss $3 --fail 0.4 --seed $1 --duration-s $duration"
    local json
    # shellcheck disable=SC2086 # word splitting of $args is intended
    json=$("$binary" --json $args 2>/dev/null | head -n 1 || true)
    local violations unreachable recovered
    violations=$(sed -n 's/.*"invariant_violations":\([0-9]*\).*/\1/p' <<<"$json")
    unreachable=$(sed -n 's/.*"unreachable_pairs_after":\([0-9]*\).*/\1/p' <<<"$json")
    recovered=$(sed -n 's/.*"recovered_s":\([^,]*\).*/\1/p' <<<"$json")
    if [[ "$violations" != 0 || "$unreachable" != 0 || "$recovered" == null ]]; then
        local first
        first=$(sed -n 's/.*"violations":\["\([^"]*\)".*/\1/p' <<<"$json")
        echo "FAIL sim $args: violations ${violations:-?}, unreachable ${unreachable:-?}, recovered ${recovered:-?} ${first:+; first: $first}"
    else
        echo "ok   sim $args: recovered $recovered s"
    fi
}
export -f one
export nodes duration

for seed in $(seq 1 "$seeds"); do
    for topology in ring grid random; do
        for loss in ${LOSSES:-0 0.05}; do
            echo "$seed $topology $loss"
        done
    done
done | xargs -P "$(nproc)" -n 3 bash -c 'one "$@"' _ | sort -k1,1 -s | tee "$results"
echo "$(grep -c '^FAIL' "$results" || true) of $(wc -l <"$results") runs failed"
rm -f "$results"
