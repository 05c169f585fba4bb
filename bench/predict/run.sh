#!/usr/bin/env bash
# `efea predict` speed: the group photo of the rustface crate (29 faces, 1666x1136) through
# detection and classification, and 48x48 face crops through classification alone, with and
# without batching. Prints a Markdown table (also written to bench/predict/results.md).
#
#   bench/predict/run.sh          EFEA_MODEL=RUN_DIR to time a trained run (default: a random
#                                 network of the default size, which times the same)
# Timings are only meaningful on an otherwise idle machine.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

cargo build --quiet --release -p efea-cli
cargo build --quiet --release -p efea-infer --example write_run --example bench_inputs
bin="${CARGO_TARGET_DIR:-$root/target}/release"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$bin/examples/bench_inputs" "$work/inputs" >/dev/null
model="${EFEA_MODEL:-}"
if [ -z "$model" ]; then
    model="$work/run"
    "$bin/examples/write_run" "$model" 1.0 >/dev/null
fi

# One line of --verbose: "per image: T ms = decode D + detection E + classification C ms;
# classification F faces/s; overall I images/s".
measure() {
    local label="$1"
    shift
    # A first pass warms the caches; the second is timed.
    "$bin/efea" predict --model "$model" --format jsonl "$@" >/dev/null 2>&1 || true
    local line
    line="$("$bin/efea" predict --model "$model" --format jsonl --verbose "$@" 2>&1 >/dev/null | grep '^per image')"
    echo "$line" | sed -E 's/per image: ([0-9.]+) ms = decode ([0-9.]+) \+ detection ([0-9.]+) \+ classification ([0-9.]+) ms; classification ([0-9.]+) faces\/s; overall ([0-9.]+) images\/s/| '"$label"' | \1 | \2 | \3 | \4 | \5 | \6 |/'
}

{
    echo "| input | ms/image | decode | detection | classification | faces/s (classification) | images/s |"
    echo "|---|---|---|---|---|---|---|"
    measure "group photo, 8 images x 29 faces, batch 32" "$work/inputs/photos"
    measure "group photo, batch 1" --batch-size 1 "$work/inputs/photos"
    measure "640x480 frame (10 faces)" "$work/inputs/frame.jpg"
    measure "256 crops 48x48, --no-detect, batch 32" --no-detect "$work/inputs/crops"
    measure "256 crops 48x48, --no-detect, batch 1" --no-detect --batch-size 1 "$work/inputs/crops"
} | tee "$here/results.md"
echo >>"$here/results.md"
echo "$(nproc) cores; $(date -u +%Y-%m-%d); model $( [ -n "${EFEA_MODEL:-}" ] && echo "$EFEA_MODEL" || echo 'random, default size')" >>"$here/results.md"
