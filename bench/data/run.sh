#!/usr/bin/env bash
# FER2013 CSV loading: efea's loader against pandas + numpy on a full-size synthetic file
# (35,887 rows, like the real fer2013.csv), and the synthetic generator's speed (issue 3).
#
#   bench/data/run.sh [ROWS]
#
# Builds the `bench_csv` example in release, installs numpy + pandas into bench/.venv
# (git-ignored) on first use, writes the CSV to bench/data/.work/ (git-ignored), then prints
# one JSON line per measurement. Copy the figures into bench/data/RESULTS.md. Run it on an idle
# machine: timings taken while anything else runs are not worth keeping.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$(dirname "$HERE")")"
VENV="$ROOT/bench/.venv"
WORK="$HERE/.work"
ROWS="${1:-35887}"
mkdir -p "$WORK"

if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import numpy, pandas" 2>/dev/null; then
    echo "bench/data: installing numpy and pandas into $VENV" >&2
    "$VENV/bin/python" -m pip install -q -r "$HERE/requirements.txt"
fi

echo "bench/data: building the bench_csv example (release)" >&2
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p efea-data --example bench_csv
BIN="$ROOT/target/release/examples/bench_csv"

CSV="$WORK/fer2013_synth_$ROWS.csv"
"$BIN" write "$CSV" "$ROWS"
"$BIN" synth 30000
# Load three times; the first run also warms the page cache for the others.
for _ in 1 2 3; do "$BIN" load "$CSV"; done
for mode in typical fast; do "$VENV/bin/python" "$HERE/pandas_load.py" "$CSV" "$mode"; done

# The same through the command line, when a release `efea` has been built.
if [[ -x "$ROOT/target/release/efea" ]]; then
    start=$(date +%s.%N)
    "$ROOT/target/release/efea" data stats --dataset fer2013 --data "$CSV" > /dev/null
    end=$(date +%s.%N)
    printf '{"task": "efea data stats", "rows": %s, "seconds": %.3f}\n' "$ROWS" "$(echo "$end - $start" | bc)"
fi
