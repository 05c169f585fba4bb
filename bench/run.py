"""Side-by-side benchmark of efea (Burn `flex`) against the PyTorch reference and ONNX Runtime;
`bench/run.sh` builds everything and calls this. Issue 7 defines what is measured:

- training images/s, batch 64, `full` and `plain` presets at 48x48 and 96x96, efea vs PyTorch
  (2 threads);
- inference at 48x48 of the default network: batch-1 latency and batch-64 throughput, efea vs
  PyTorch vs ONNX Runtime on the reference exported to ONNX;
- peak resident memory of each (every measurement is its own process).

Contenders alternate within each round (their order rotates from round to round) so that a
change of machine load hits all of them alike; a figure is the median over rounds. The table is
printed, appended with the machine's description to bench/RESULTS.md, and the default
network's figures go to bench/results.json in the schema of issue 7.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
EFEA = ROOT / "target" / "release" / "efea-bench"
# efea-bench built with Burn's libtorch backend (run.sh --tch), in its own target directory so
# that the flex contender stays the plain build.
EFEA_TCH = ROOT / "target" / "tch" / "release" / "efea-bench"
PYTHON = BENCH / ".venv" / "bin" / "python"
TORCH = BENCH / "bench_torch.py"
# Inside the git-ignored venv: exported models are build products of the Python side.
ONNX_DIR = BENCH / ".venv" / "onnx"
RAW = BENCH / ".venv" / "last-run.json"


def settings(quick: bool) -> dict:
    """Rounds and per-measurement budgets. `--quick` keeps the whole run under 15 minutes."""
    if quick:
        return dict(rounds=2, train_steps=2, train_seconds=6.0, infer_seconds=3.0, presets=["full", "plain"],
                    infer_presets=["full"])
    return dict(rounds=3, train_steps=3, train_seconds=20.0, infer_seconds=10.0, presets=["full", "plain"],
                infer_presets=["full", "plain"])


def run_json(command: list[str], timeout: float) -> dict:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    line = [l for l in done.stdout.splitlines() if l.startswith("{")][-1]
    result = json.loads(line)
    result["wall_s"] = time.perf_counter() - started
    return result


def contender_command(contender: str, case: dict, s: dict) -> list[str]:
    task, preset, size, batch = case["task"], case["preset"], case["size"], case["batch"]
    if task == "train":
        budget = ["--warmup", "1", "--steps", str(s["train_steps"]), "--min-seconds", str(s["train_seconds"])]
    else:
        steps = "10" if batch == 1 else "2"
        budget = ["--warmup", "3" if batch == 1 else "1", "--steps", steps, "--min-seconds", str(s["infer_seconds"])]
    common = ["--preset", preset, "--size", str(size), "--batch", str(batch)] + budget
    if contender == "efea":
        # Inference as `efea predict` runs it on the CPU: the compiled network.
        return [str(EFEA), task] + common + (["--engine", "compiled"] if task == "infer" else [])
    if contender == "efea-tch":
        return [str(EFEA_TCH), task, "--device", "tch"] + common
    if contender == "torch":
        return [str(PYTHON), str(TORCH), task, "--runtime", "torch"] + common
    onnx = ONNX_DIR / f"{preset}-{size}-b{batch}.onnx"
    return [str(PYTHON), str(TORCH), "infer", "--runtime", "ort", "--onnx", str(onnx)] + common


def export_onnx(cases: list[dict]) -> None:
    ONNX_DIR.mkdir(exist_ok=True)
    for case in cases:
        if case["task"] != "infer":
            continue
        path = ONNX_DIR / f"{case['preset']}-{case['size']}-b{case['batch']}.onnx"
        run_json([str(PYTHON), str(TORCH), "export", "--preset", case["preset"], "--size", str(case["size"]),
                  "--batch", str(case["batch"]), "--onnx", str(path)], timeout=600)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "?"
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    versions = subprocess.run([str(PYTHON), "-c", "import torch, onnxruntime; print(torch.__version__, onnxruntime.__version__)"],
                              capture_output=True, text=True).stdout.split()
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return (f"{cpu}, {os.cpu_count()} cores, {memory}, {platform.system()} {platform.release()}; "
            f"{rustc}; Burn 0.22.1 flex; PyTorch {versions[0] if versions else '?'}, "
            f"ONNX Runtime {versions[1] if len(versions) > 1 else '?'} (2 threads each)")


def git_revision() -> str:
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return done.stdout.strip() + ("+changes" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and shorter runs (< 15 minutes)")
    parser.add_argument("--only", choices=["train", "infer"], help="run one half only (for development)")
    parser.add_argument("--tch", action="store_true",
                        help="add efea on Burn's libtorch backend (CPU) to the training rows (run.sh --tch builds it)")
    args = parser.parse_args()
    s = settings(args.quick)

    cases = []
    if args.only != "infer":
        for size in (48, 96):
            for preset in s["presets"]:
                contenders = ["efea", "torch"] + (["efea-tch"] if args.tch else [])
                cases.append(dict(task="train", preset=preset, size=size, batch=64, contenders=contenders))
    if args.only != "train":
        for preset in s["infer_presets"]:
            for batch in (1, 64):
                cases.append(dict(task="infer", preset=preset, size=48, batch=batch,
                                  contenders=["efea", "torch", "ort"]))

    started = time.perf_counter()
    load_before = load_average()
    export_onnx(cases)
    results: dict[tuple, list[dict]] = {}
    for round_index in range(s["rounds"]):
        for case in cases:
            contenders = case["contenders"]
            shift = round_index % len(contenders)
            for contender in contenders[shift:] + contenders[:shift]:
                result = run_json(contender_command(contender, case, s), timeout=900)
                key = (case["task"], case["preset"], case["size"], case["batch"], contender)
                results.setdefault(key, []).append(result)
                # Kept as it goes, so that a failure later on loses no measurement.
                RAW.write_text(json.dumps([{"key": list(k), "runs": v} for k, v in results.items()]))
                print(f"[{time.perf_counter() - started:6.0f}s] round {round_index + 1} {key}: "
                      f"{result['img_s']:.1f} img/s" + (f", {result['ms']:.1f} ms" if "ms" in result else "")
                      + f", peak {result['peak_rss_mib']:.0f} MiB", file=sys.stderr, flush=True)
    gemm = None
    if args.only is None:
        gemm = run_json([str(EFEA), "gemm"], timeout=900)["rows"]
    load_after = load_average()

    def median(key, field):
        values = [r[field] for r in results.get(key, []) if field in r]
        return statistics.median(values) if values else None

    def peak(key):
        values = [r["peak_rss_mib"] for r in results.get(key, []) if r.get("peak_rss_mib")]
        return max(values) if values else None

    rows = []
    for case in cases:
        base = (case["task"], case["preset"], case["size"], case["batch"])
        figures = {c: (median(base + (c,), "img_s"), median(base + (c,), "ms"), peak(base + (c,)))
                   for c in case["contenders"]}
        rows.append((case, figures))

    def fmt(value, digits=1):
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [
        "| measurement | efea | PyTorch | ONNX Runtime | efea / PyTorch | efea / ORT | peak MiB efea / torch / ORT |",
        "|---|---|---|---|---|---|---|",
    ]
    for case, f in rows:
        if case["task"] == "train":
            name = f"train {case['preset']} {case['size']}x{case['size']} b{case['batch']} (img/s)"
            e, t = f["efea"][0], f["torch"][0]
            lines.append(f"| {name} | {fmt(e)} | {fmt(t)} | - | {fmt(e / t, 2)}x | - | "
                         f"{fmt(f['efea'][2], 0)} / {fmt(f['torch'][2], 0)} / - |")
            if "efea-tch" in f:
                # The same network on Burn's libtorch backend: PyTorch's own CPU kernels under
                # Burn's autodiff, the obvious comparison to PyTorch itself.
                e = f["efea-tch"][0]
                lines.append(f"| {name}, efea on `tch` (libtorch CPU) | {fmt(e)} | {fmt(t)} | - | {fmt(e / t, 2)}x | - | "
                             f"{fmt(f['efea-tch'][2], 0)} / {fmt(f['torch'][2], 0)} / - |")
        elif case["batch"] == 1:
            name = f"infer {case['preset']} 48x48 b1 (ms, lower is better)"
            e, t, o = f["efea"][1], f["torch"][1], f["ort"][1]
            # Ratios are speed ratios: above 1 means efea is faster.
            lines.append(f"| {name} | {fmt(e, 2)} | {fmt(t, 2)} | {fmt(o, 2)} | {fmt(t / e, 2)}x | {fmt(o / e, 2)}x | "
                         f"{fmt(f['efea'][2], 0)} / {fmt(f['torch'][2], 0)} / {fmt(f['ort'][2], 0)} |")
        else:
            name = f"infer {case['preset']} 48x48 b{case['batch']} (img/s)"
            e, t, o = f["efea"][0], f["torch"][0], f["ort"][0]
            lines.append(f"| {name} | {fmt(e)} | {fmt(t)} | {fmt(o)} | {fmt(e / t, 2)}x | {fmt(e / o, 2)}x | "
                         f"{fmt(f['efea'][2], 0)} / {fmt(f['torch'][2], 0)} / {fmt(f['ort'][2], 0)} |")
    table = "\n".join(lines)
    if gemm:
        table += (
            "\n\nForward GFLOP/s of the network's 1x1 convolutions (batch 64, 48x48 network) against a "
            "plain matmul of the same `[C_out, C_in] x [C_in, N*H*W]` shape on `flex`:\n\n"
            "| C_in -> C_out @ HxW | Burn conv2d | efea pointwise kernel | plain matmul | kernel / matmul |\n"
            "|---|---|---|---|---|\n"
            + "\n".join(
                f"| {r['c_in']} -> {r['c_out']} @ {r['hw']}x{r['hw']} | {r['burn_conv2d_gflops']:.1f} | "
                f"{r['pointwise_gflops']:.1f} | {r['matmul_gflops']:.1f} | {r['pointwise_fraction']:.2f} |"
                for r in gemm
            )
        )
    elapsed = time.perf_counter() - started
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    report = (
        f"\n## Run {stamp} ({'--quick' if args.quick else 'full'}, revision {git_revision()})\n\n"
        f"Machine: {machine()}.\n"
        f"Load average (1/5/15 min) before: {load_before}; after: {load_after}. "
        f"{s['rounds']} alternating rounds, medians; ratios above 1 mean efea is faster. "
        f"Took {elapsed / 60:.1f} min.\n\n{table}\n"
    )
    print(report)
    with open(BENCH / "RESULTS.md", "a") as f:
        f.write(report)

    if args.only is None:
        def get(task, preset, size, batch, contender, field):
            return median((task, preset, size, batch, contender), field)

        summary = {
            "train_48": {"efea_img_s": get("train", "full", 48, 64, "efea", "img_s"),
                         "torch_img_s": get("train", "full", 48, 64, "torch", "img_s")},
            "train_96": {"efea_img_s": get("train", "full", 96, 64, "efea", "img_s"),
                         "torch_img_s": get("train", "full", 96, 64, "torch", "img_s")},
            "infer_b1": {"efea_ms": get("infer", "full", 48, 1, "efea", "ms"),
                         "torch_ms": get("infer", "full", 48, 1, "torch", "ms"),
                         "ort_ms": get("infer", "full", 48, 1, "ort", "ms")},
            "infer_b64": {"efea_img_s": get("infer", "full", 48, 64, "efea", "img_s"),
                          "torch_img_s": get("infer", "full", 48, 64, "torch", "img_s"),
                          "ort_img_s": get("infer", "full", 48, 64, "ort", "img_s")},
        }
        (BENCH / "results.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
