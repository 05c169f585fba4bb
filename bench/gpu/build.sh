#!/usr/bin/env bash
# Builds what bench/gpu/run.sh carries to a GPU machine that has no Rust toolchain:
# efea-bench in release with the wgpu backend (Vulkan), and with libtorch (`tch`, for CUDA)
# when a Python with torch 2.9.0 is given, into bench/gpu/dist/ (git-ignored).
#
#   bash bench/gpu/build.sh                     # wgpu only
#   TORCH_PYTHON=reference/.venv/bin/python bash bench/gpu/build.sh   # wgpu and tch
#
# Burn 0.22's `tch` is built against libtorch 2.9.0 (torch-sys 0.22's TORCH_VERSION); PyPI's
# torch 2.9.0 wheel for Linux carries a CUDA libtorch, so a binary linked against it here runs
# on CUDA there, given the same torch version on the GPU machine (run.sh checks it).
set -euo pipefail
GPU="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$GPU/../.." && pwd)"
DIST="$GPU/dist"
export CARGO_INCREMENTAL=0
mkdir -p "$DIST/lib"

features=wgpu
if [[ -n "${TORCH_PYTHON:-}" ]]; then
    version=$("$TORCH_PYTHON" -c 'import torch; print(torch.__version__.split("+")[0])')
    [[ "$version" == 2.9.0 ]] || { echo "build.sh: tch needs torch 2.9.0, $TORCH_PYTHON has $version" >&2; exit 1; }
    features=wgpu,tch
    export LIBTORCH_USE_PYTORCH=1 PATH="$(dirname "$TORCH_PYTHON"):$PATH"
fi
echo "build.sh: efea-bench --features $features (release)" >&2
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p efea-bench --features "$features"
cp "$ROOT/target/release/efea-bench" "$DIST/"
echo "$features" > "$DIST/features"
# The Vulkan loader: wgpu opens libvulkan.so.1 at run time, and a container that has the
# NVIDIA driver may lack the loader package.
loader=$(ldconfig -p | awk '/libvulkan\.so\.1 /{print $NF; exit}')
if [[ -n "$loader" ]]; then cp -L "$loader" "$DIST/lib/"; fi
git -C "$ROOT" rev-parse --short HEAD > "$DIST/revision"
du -sh "$DIST" >&2
