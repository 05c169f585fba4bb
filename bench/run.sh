#!/usr/bin/env bash
# Benchmarks efea (Burn `flex`) side by side with the PyTorch reference and ONNX Runtime on
# this machine (issue 7): `bench/run.sh [--quick]`. Builds efea-bench in release, installs the
# Python side into bench/.venv (git-ignored) on first use, then runs bench/run.py, which prints
# a markdown table, appends it to bench/RESULTS.md and writes bench/results.json.
# Run it on an idle machine: timings taken while anything else runs are not worth keeping.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
VENV="$BENCH/.venv"

if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c "import torch, onnx, onnxruntime" 2>/dev/null; then
    echo "bench: installing the Python side into $VENV" >&2
    if [[ -x "$ROOT/reference/.venv/bin/python" && ! -e "$VENV" ]] \
        && "$ROOT/reference/.venv/bin/python" -c "import torch" 2>/dev/null; then
        # Reuse the reference's PyTorch (several GB of wheels): hard links cost no space.
        cp -al "$ROOT/reference/.venv" "$VENV" 2>/dev/null || cp -a "$ROOT/reference/.venv" "$VENV"
    else
        python3 -m venv "$VENV"
        "$VENV/bin/python" -m pip install -q -r "$ROOT/reference/requirements.txt"
    fi
    "$VENV/bin/python" -m pip install -q -r "$BENCH/requirements.txt"
fi

echo "bench: building efea-bench (release)" >&2
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p efea-bench

# --tch: also efea on Burn's libtorch backend (CPU), built against the torch 2.9.0 wheel that
# tests/tch/run.sh installs (target/tch-venv), into target/tch/ (a second release build).
if [[ " $* " == *" --tch "* ]]; then
    TCH_VENV="${EFEA_TCH_VENV:-$ROOT/target/tch-venv}"
    if ! "$TCH_VENV/bin/python" -c "import sys, torch; sys.exit(torch.__version__.split('+')[0] != '2.9.0')" 2>/dev/null; then
        python3 -m venv "$TCH_VENV" && "$TCH_VENV/bin/pip" install -q torch==2.9.0
    fi
    echo "bench: building efea-bench --features tch (release)" >&2
    LIBTORCH_USE_PYTORCH=1 PATH="$TCH_VENV/bin:$PATH" cargo build --release --quiet \
        --manifest-path "$ROOT/Cargo.toml" --target-dir "$ROOT/target/tch" -p efea-bench --features tch
    torch_lib=$("$TCH_VENV/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
    export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

exec "$VENV/bin/python" "$BENCH/run.py" "$@"
