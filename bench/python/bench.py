"""Faces per second of efea.Detector.detect_many against fer's FER(mtcnn=True) on the same
photos, in one process, contenders alternating round by round (medians over rounds).

    python bench/python/bench.py [--rounds N] [--json OUT]

Both get the images decoded in memory (NumPy arrays; fer wants BGR, efea is told
channels="bgr"), so decoding is not measured; each contender's first call (model loading,
warm-up) is not timed. Faces/s counts the faces each found, so a contender that finds fewer
faces is not rewarded for it: the face counts are printed beside the rates.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
PHOTOS = [REPO / "tests/fixtures/photos/solvay_1927.png", REPO / "tests/fixtures/photos/astronaut.png"]

# Peers of the issue that cannot be measured offline: their weights come from the network at
# run time, which this machine (and a user's air-gapped one) does not reach.
NOT_BENCHMARKED = {
    "py-feat": "downloads its detector and emotion models from the Hugging Face Hub at first use",
    "deepface": "downloads each model's weights from GitHub releases at first use",
    "rmn": "downloads its ResMaskingNet weights at first use",
}


def photos():
    """The photos as BGR uint8 arrays (what OpenCV-based fer expects)."""
    return [np.ascontiguousarray(np.asarray(Image.open(p).convert("RGB"))[:, :, ::-1]) for p in PHOTOS]


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    images = photos()

    import efea

    contenders = {}
    detector = efea.Detector()
    contenders["efea detect_many (bundled mini-XCEPTION, MTCNN)"] = lambda: sum(
        len(faces) for faces in detector.detect_many(images, channels="bgr"))
    try:
        import torch
        torch.set_num_threads(os.cpu_count() or 1)
        try:
            from fer import FER
        except ImportError:  # fer 25 no longer exports it from the package
            from fer.fer import FER
        fer = FER(mtcnn=True)  # its default emotion model: the quantized TFLite one
        contenders["fer FER(mtcnn=True).detect_emotions"] = lambda: sum(
            len(fer.detect_emotions(image)) for image in images)
        # The Keras mini-XCEPTION: the weights efea bundles, so the same network on both sides.
        fer_keras = FER(mtcnn=True, use_tflite=False)
        contenders["fer FER(mtcnn=True, use_tflite=False)"] = lambda: sum(
            len(fer_keras.detect_emotions(image)) for image in images)
    except ImportError as error:
        print(f"fer is not installed ({error}); efea alone", file=sys.stderr)

    faces = {name: run() for name, run in contenders.items()}  # warm-up, untimed
    seconds = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = time.perf_counter()
            contenders[name]()
            seconds[name].append(time.perf_counter() - start)
    load = os.getloadavg()
    rows = []
    for name in names:
        median = statistics.median(seconds[name])
        rows.append({"contender": name, "faces": faces[name], "images": len(images),
                     "seconds_per_round": median, "faces_per_s": faces[name] / median,
                     "images_per_s": len(images) / median})
    result = {"cpu": cpu_model(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
              "load_after": load, "rounds": args.rounds, "rows": rows,
              "not_benchmarked": NOT_BENCHMARKED}
    print(f"{result['cpu']}, {result['cores']} cores, {result['date']}; load after {load[0]:.2f}")
    print("| contender | faces found (2 photos) | s per round (median) | faces/s |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['contender']} | {row['faces']} | {row['seconds_per_round']:.3f} | {row['faces_per_s']:.1f} |")
    for peer, why in NOT_BENCHMARKED.items():
        print(f"| {peer} | not benchmarked: {why} | | |")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
