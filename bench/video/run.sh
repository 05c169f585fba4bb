#!/usr/bin/env bash
# Video throughput of `efea predict clip.mp4` (issue 17): frames/s of input on generated
# 640x480 30 frames/s clips with 1 and 5 faces, analysing every frame and every third, with the
# detector's and the classifier's share of the time. Goal: real time (30 frames/s of input)
# with `--every 3` on 2 cores. `bench/video/run.sh [SECONDS]` (clip length, default 20).
# Prints a markdown table and appends it, with the CPU, the load and the date, to
# bench/video/results.md. Needs ffmpeg. EFEA_BENCH_PROFILE=dev uses the debug build (whose
# dependencies, Burn and the detectors, are optimised anyway) instead of building release;
# EFEA_BENCH_BIN=DIR takes `efea` and `examples/synth_clip` from DIR without building.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$(dirname "$BENCH")")"
SECONDS_OF_VIDEO="${1:-20}"
PROFILE="${EFEA_BENCH_PROFILE:-release}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"

command -v ffmpeg >/dev/null || { echo "bench/video: ffmpeg not found: apt-get install ffmpeg" >&2; exit 1; }
if [[ -n "${EFEA_BENCH_BIN:-}" ]]; then
    BIN="$EFEA_BENCH_BIN"                 # prebuilt: efea and examples/synth_clip there
elif [[ "$PROFILE" == release ]]; then
    cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p efea-cli -p efea-video --example synth_clip
    BIN="$TARGET/release"
else
    cargo build --quiet --manifest-path "$ROOT/Cargo.toml" -p efea-cli -p efea-video --example synth_clip
    BIN="$TARGET/debug"
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# Private copies: another build in a shared target directory cannot swap them mid-run.
cp "$BIN/efea" "$BIN/examples/synth_clip" "$WORK/"

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
rows=()
for faces in 1 5; do
    clip="$WORK/faces$faces.mp4"
    "$WORK/synth_clip" "$clip" "$faces" 640x480 "$SECONDS_OF_VIDEO" 30
    for every in 1 3; do
        log="$WORK/log"
        "$WORK/efea" predict "$clip" --every "$every" --format csv --verbose >/dev/null 2>"$log"
        fps="$(sed -n 's/^throughput: \([0-9.]*\) frames\/s of input, \([0-9.]*\)x real time.*/\1/p' "$log")"
        rt="$(sed -n 's/^throughput: .*, \([0-9.]*\)x real time.*/\1/p' "$log")"
        det="$(sed -n 's/.*of the wall time: detection \([0-9]*\) %.*/\1/p' "$log")"
        cls="$(sed -n 's/.*classification \([0-9]*\) %$/\1/p' "$log")"
        per="$(sed -n 's/^per analysed frame: detection \([0-9.]*\) ms, classification \([0-9.]*\) ms.*/\1 ms + \2 ms/p' "$log")"
        rows+=("| $faces | $every | $fps | ${rt}x | $det % | $cls % | $per |")
    done
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

cpu="$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)"
table="$(
    echo "### $(date -u +%Y-%m-%d) on $cpu, $(nproc) cores ($PROFILE build, ${SECONDS_OF_VIDEO} s clips)"
    echo
    echo "Load average before: $load_before; after: $load_after."
    echo
    echo "| faces | --every | frames/s of input | real time | detection | classification | per analysed frame (detection + classification) |"
    echo "|---|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
)"
echo "$table"
printf '\n%s\n' "$table" >> "$BENCH/results.md"
