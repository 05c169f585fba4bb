#!/usr/bin/env bash
# The GPU benchmark (issue 14): training images/s of the default network at 48x48, batch 64
# and 256, and inference at batch 1 and 256, on efea's GPU backends against the PyTorch
# reference on CUDA, in one run; prints a markdown table and writes bench/gpu/results.md.
#
# On a machine with an NVIDIA GPU, PyTorch and no Rust toolchain: build here with
# bench/gpu/build.sh, carry bench/gpu/dist/, then
#
#   bash bench/gpu/run.sh                       # every backend the binary and machine have
#   bash bench/gpu/run.sh --dry-run             # the same on a software Vulkan (lavapipe)
#                                               # and the CPU: small steps, checks the plumbing
#
# efea devices: `wgpu` (Vulkan; the NVIDIA driver's ICD) and `tch:cuda:0` (libtorch 2.9.0 of
# this machine's torch, when the binary was built with tch and the versions agree).
set -uo pipefail
GPU="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$GPU/../.." && pwd)"
DIST="$GPU/dist"
BIN="$DIST/efea-bench"
PY="${PYTHON:-python3}"
OUT="$GPU/results.md"
RAW="$(mktemp)"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
export LD_LIBRARY_PATH="$DIST/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

dry=0
[[ "${1:-}" == "--dry-run" ]] && dry=1
if (( dry )); then
    efea_devices=(wgpu:cpu); torch_device=cpu
    train_batches=(8); infer_batches=(1 8); steps=2; min_seconds=0; warmup=1
    OUT="$GPU/dry-run.md"
else
    efea_devices=(wgpu); torch_device=cuda
    train_batches=(64 256); infer_batches=(1 256); steps=20; min_seconds=10; warmup=3
fi
[[ -x "$BIN" ]] || { echo "run.sh: no $BIN: run bench/gpu/build.sh first" >&2; exit 1; }

torch_version=$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo none)
if grep -q tch "$DIST/features" 2>/dev/null && (( ! dry )); then
    if [[ "${torch_version%%+*}" == 2.9.0 ]]; then
        torch_lib=$("$PY" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
        export LD_LIBRARY_PATH="$torch_lib:$LD_LIBRARY_PATH"
        efea_devices+=(tch:cuda:0)
    else
        echo "run.sh: skipping efea tch: the binary needs libtorch 2.9.0, this torch is $torch_version" >&2
        echo '{"contender":"efea","device":"tch:cuda:0","skipped":"needs torch 2.9.0, found '"$torch_version"'"}' >> "$RAW"
    fi
fi

measure() {  # contender device task batch: one process, one JSON line (or a failure line)
    local who=$1 device=$2 task=$3 batch=$4 line
    if [[ $who == efea ]]; then
        line=$(timeout 600 "$BIN" "$task" --device "$device" --batch "$batch" --warmup "$warmup" \
            --steps "$steps" --min-seconds "$min_seconds" 2>"$RAW.err" | tail -n 1)
    else
        line=$(timeout 600 "$PY" "$ROOT/bench/bench_torch.py" "$task" --device "$device" \
            --batch "$batch" --warmup "$warmup" --steps "$steps" --min-seconds "$min_seconds" \
            2>"$RAW.err" | tail -n 1)
    fi
    if [[ $line == \{* ]]; then
        echo "$line" >> "$RAW"
    else
        local why; why=$(tail -n 1 "$RAW.err" | tr '"\\' "' " | cut -c1-200)
        echo "run.sh: $who $device $task batch $batch failed: $why" >&2
        echo "{\"contender\":\"$who\",\"device\":\"$device\",\"task\":\"$task\",\"batch\":$batch,\"failed\":\"$why\"}" >> "$RAW"
    fi
}

for batch in "${train_batches[@]}"; do
    for device in "${efea_devices[@]}"; do measure efea "$device" train "$batch"; done
    [[ $torch_version != none ]] && measure torch "$torch_device" train "$batch"
done
for batch in "${infer_batches[@]}"; do
    for device in "${efea_devices[@]}"; do measure efea "$device" infer "$batch"; done
    [[ $torch_version != none ]] && measure torch "$torch_device" infer "$batch"
done

"$PY" - "$RAW" "$OUT" "$dry" "$torch_version" "$(cat "$DIST/revision" 2>/dev/null)" <<'PYEOF'
import datetime, json, subprocess, sys
raw, out, dry, torch_version, revision = sys.argv[1:]
rows = [json.loads(l) for l in open(raw) if l.strip()]
def cmd(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        return ""
gpu = cmd("nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader") or "no NVIDIA GPU (nvidia-smi absent)"
cpu = next((l.split(":", 1)[1].strip() for l in cmd("lscpu").splitlines() if l.startswith("Model name")), "?")
lines = [
    f"## {'Dry run (lavapipe, CPU)' if dry == '1' else 'GPU benchmark'}, {datetime.date.today()}, revision {revision or '?'}",
    "",
    f"GPU: {gpu}; CPU: {cpu}; PyTorch {torch_version}; default network (full, width 1.0) at 48x48; "
    "training: SGD step on a random batch, images/s; inference: eval-mode forward, ms per batch.",
    "",
    "| contender | device | task | batch | images/s | ms per batch | peak RSS MiB | note |",
    "|---|---|---|---:|---:|---:|---:|---|",
]
for r in rows:
    note = r.get("failed") or r.get("skipped") or ""
    img = f"{r['img_s']:.1f}" if "img_s" in r else ""
    ms = f"{1000 * r['seconds'] / r['steps']:.2f}" if "seconds" in r else ""
    rss = f"{r['peak_rss_mib']:.0f}" if r.get("peak_rss_mib") else ""
    lines.append(f"| {r['contender']} | {r.get('device', '')} | {r.get('task', '')} | {r.get('batch', '')} | {img} | {ms} | {rss} | {note} |")
text = "\n".join(lines) + "\n"
print(text)
open(out, "w").write(text)
PYEOF
rm -f "$RAW" "$RAW.err"
