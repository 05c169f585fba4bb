"""The PyTorch and ONNX Runtime side of `bench/run.sh`: the reference network of MODEL.md
(`reference/efea_msm.py`) trained and run by PyTorch, and exported to ONNX and run by ONNX
Runtime. One measurement per process, printed as one JSON object, exactly as `efea-bench`
does it (same step, same batch, same timing rule), so that the two sides compare one to one.

    python bench/bench_torch.py train --preset full --size 48 --batch 64 --warmup 1 --steps 5
    python bench/bench_torch.py export --preset full --size 48 --batch 1 --onnx /tmp/full-b1.onnx
    python bench/bench_torch.py infer --runtime torch --preset full --size 48 --batch 1
    python bench/bench_torch.py infer --runtime ort --onnx /tmp/full-b1.onnx --size 48 --batch 1
    python bench/bench_torch.py train --device cuda --batch 256   # bench/gpu/run.sh
"""

from __future__ import annotations

import argparse
import json
import warnings
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "reference"))

# PyTorch is imported only by the tasks that use it, so that ONNX Runtime's peak memory is its
# own (the ONNX file is exported by a separate `export` process).
PRESETS = ("plain", "cdsm", "msca", "full")

# As efea-bench: SGD, momentum 0.9, dampening 0.
LEARNING_RATE = 0.01
MOMENTUM = 0.9


def peak_rss_mib() -> float | None:
    """Peak resident memory of this process (Linux `VmHWM`), as efea-bench reads it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def timed(warmup: int, steps: int, min_seconds: float, step) -> tuple[int, float]:
    """`warmup` untimed calls, then at least `steps` calls and at least `min_seconds`."""
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    done = 0
    while done < max(steps, 1) or time.perf_counter() - start < min_seconds:
        step()
        done += 1
    return done, time.perf_counter() - start


def model_for(args):
    import torch
    from efea_msm import EfeaConfig, EfeaMsm

    torch.manual_seed(0)
    return EfeaMsm(EfeaConfig.preset(args.preset, input_size=args.size)).to(args.device)


def synchronize(args) -> None:
    """Waits for the device's queued work: a CUDA step is timed when it has finished, as
    efea-bench times its steps by reading a value back."""
    if args.device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def train(args) -> dict:
    import torch
    import torch.nn.functional as F

    model = model_for(args).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    x = torch.randn(args.batch, 1, args.size, args.size, device=args.device)
    labels = torch.arange(args.batch, device=args.device) % model.config.num_classes

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), labels)
        loss.backward()
        optimizer.step()
        synchronize(args)

    done, seconds = timed(args.warmup, args.steps, args.min_seconds, step)
    return {
        "contender": "torch",
        "task": "train",
        "device": args.device,
        "preset": args.preset,
        "size": args.size,
        "batch": args.batch,
        "steps": done,
        "seconds": seconds,
        "img_s": done * args.batch / seconds,
        "peak_rss_mib": peak_rss_mib(),
    }


def export(args) -> dict:
    """The eval-mode reference as ONNX for one input shape (TorchScript exporter: it needs no
    extra packages). The batch is static: the legacy exporter cannot express MSCA's adaptive
    pooling to a traced size, and a static graph is ONNX Runtime's best case anyway."""
    import torch

    model = model_for(args).eval()
    x = torch.randn(args.batch, 1, args.size, args.size)
    warnings.filterwarnings("ignore")
    torch.onnx.export(
        model,
        (x,),
        args.onnx,
        input_names=["input"],
        output_names=["logits"],
        opset_version=17,
        dynamo=False,
    )
    return {"task": "export", "onnx": args.onnx, "batch": args.batch, "size": args.size}


def infer(args) -> dict:
    if args.runtime == "torch":
        import torch

        torch.set_num_threads(args.threads)
        model = model_for(args).eval()
        x = torch.randn(args.batch, 1, args.size, args.size, device=args.device)

        def step():
            with torch.inference_mode():
                model(x)
            synchronize(args)

    else:
        import numpy as np
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(args.onnx, options, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((args.batch, 1, args.size, args.size))
        feed = {"input": x.astype(np.float32)}

        def step():
            session.run(None, feed)

    done, seconds = timed(args.warmup, args.steps, args.min_seconds, step)
    return {
        "contender": args.runtime,
        "task": "infer",
        "device": args.device if args.runtime == "torch" else "cpu",
        "preset": args.preset,
        "size": args.size,
        "batch": args.batch,
        "steps": done,
        "seconds": seconds,
        "ms": 1000.0 * seconds / done,
        "img_s": done * args.batch / seconds,
        "peak_rss_mib": peak_rss_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=["train", "infer", "export"])
    parser.add_argument("--runtime", choices=["torch", "ort"], default="torch")
    parser.add_argument("--preset", default="full", choices=PRESETS)
    parser.add_argument("--onnx", help="the ONNX file (export writes it, infer --runtime ort reads it)")
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (PyTorch's names)")
    args = parser.parse_args()
    if args.task != "infer" or args.runtime == "torch":
        import torch

        torch.set_num_threads(args.threads)
    result = {"train": train, "infer": infer, "export": export}[args.task](args)
    result["threads"] = args.threads
    print(json.dumps(result))


if __name__ == "__main__":
    main()
