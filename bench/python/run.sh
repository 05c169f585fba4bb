#!/usr/bin/env bash
# efea's Python package against fer (FER(mtcnn=True)) on the same photos, faces/s
# (bench/python/bench.py), then the Dask recipe on 1 and 2 workers (bench/python/bench_dask.py).
# One venv (bench/python/.venv, git-ignored) with fer from PyPI (TensorFlow, and PyTorch through
# facenet-pytorch, whose MTCNN weights ship inside its wheel: nothing is downloaded at run time)
# and efea built from this checkout (`pip install ./crates/efea-py`, a release build: about
# 15 minutes the first time on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=bench/python/.venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q fer
# facenet-pytorch pins NumPy below 2, and pyarrow 18 and later need NumPy 2.
"$venv/bin/pip" install -q "dask[bag]" distributed "pyarrow<18"
"$venv/bin/pip" install -q ./crates/efea-py
uptime
"$venv/bin/python" bench/python/bench.py --json bench/python/results.json "$@"
"$venv/bin/python" bench/python/bench_dask.py
uptime
