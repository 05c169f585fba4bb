#!/usr/bin/env bash
# Burn's libtorch backend (`tch`), run for real on the CPU with the libtorch that PyPI's torch
# wheel carries: the network's parity tests (the fixtures and tolerances of flex), the
# gradient checks, and train / eval / predict on `--device tch` against the CPU
# (crates/efea-cli/tests/backend.rs). A release check rather than part of `.ci/run`: the wheel
# and its CUDA dependencies take 6.7 GB and another build of Burn; its duration is in the
# README (Backends).
#
#   bash tests/tch/run.sh            # venv in target/tch-venv (or $EFEA_TCH_VENV), reused
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# Burn 0.22.1's `tch` is tch 0.22, built against libtorch 2.9.0 (torch-sys 0.22's
# TORCH_VERSION); another torch fails its version check at build time.
TORCH=2.9.0
VENV="${EFEA_TCH_VENV:-${CARGO_TARGET_DIR:-$ROOT/target}/tch-venv}"
has_torch() {
    "$VENV/bin/python" -c "import sys, torch; sys.exit(torch.__version__.split('+')[0] != '$TORCH')" 2>/dev/null
}
start=$SECONDS
if ! has_torch; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "torch==$TORCH"
fi
echo "tch: torch $TORCH in $VENV ($((SECONDS - start)) s)" >&2
# torch-sys finds libtorch through this Python; the binaries find it at run time through
# LD_LIBRARY_PATH (torch-sys sets no rpath).
export LIBTORCH_USE_PYTORCH=1 PATH="$VENV/bin:$PATH"
torch_lib=$("$VENV/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CARGO_INCREMENTAL=0
# Its own target directory (shared with `bench/run.sh --tch`): built with tch, target/debug/efea
# would need libtorch at run time, and every other user of that binary would fail to start it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/tch"
EFEA_TEST_DEVICE=tch cargo test -p efea-model -p efea-cli --features efea-model/tch,efea-cli/tch \
    --test parity --test fer_parity --test conv_grad --test activation_grad --test backend
echo "tch: passed in $((SECONDS - start)) s" >&2
