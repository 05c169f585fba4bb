#!/usr/bin/env python3
"""Times facenet-pytorch's MTCNN as `efea-face`'s `detect_timing` example times efea's: per
image one warm-up, then the median of several runs of `MTCNN(keep_all=True).detect(img,
landmarks=True)` with its default settings, on 2 threads. One Markdown row per image:
`| image | facenet-pytorch mtcnn | faces | median ms | min | max |`.

    reference/.venv/bin/python bench/predict/facenet_timing.py [--runs N] IMAGE ...

Needs the reference venv with facenet-pytorch (reference/requirements-mtcnn.txt).
"""

import argparse
import statistics
import time
from pathlib import Path

import torch
from facenet_pytorch import MTCNN
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("images", nargs="+", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    mtcnn = MTCNN(keep_all=True, device=torch.device("cpu"))
    for path in args.images:
        image = Image.open(path).convert("RGB")
        boxes, _, _ = mtcnn.detect(image, landmarks=True)  # warm-up
        faces = 0 if boxes is None else len(boxes)
        times = []
        for _ in range(max(args.runs, 1)):
            start = time.perf_counter()
            mtcnn.detect(image, landmarks=True)
            times.append((time.perf_counter() - start) * 1000)
        print(
            f"| {path.name} | facenet-pytorch mtcnn | {faces} | {statistics.median(times):.1f} "
            f"| {min(times):.1f} | {max(times):.1f} |"
        )


if __name__ == "__main__":
    main()
