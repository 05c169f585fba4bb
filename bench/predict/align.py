#!/usr/bin/env python3
"""How much eye alignment changes the bundled model's predictions on real faces.

Runs `efea predict --format json` on each photo twice, with `--align` and `--no-align`
(same detector, so the same faces and boxes), and prints per photo: faces, the median and
largest eye-line tilt that alignment removed, the share of faces whose label changes, and the
mean total-variation distance between the two probability vectors (half the L1 distance: 0 =
identical, 1 = disjoint). Standard library only.

    python3 bench/predict/align.py [EFEA_BINARY] [PHOTO ...]
"""

import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def predict(binary, photo, flag):
    out = subprocess.run(
        [binary, "predict", str(photo), "--format", "json", flag],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)[0]["faces"]


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target/release/efea")
    photos = [Path(p) for p in sys.argv[2:]] or [
        ROOT / "tests/fixtures/photos/solvay_1927.png",
        ROOT / "tests/fixtures/photos/astronaut.png",
    ]
    print("| photo | faces | tilt removed, median / max (degrees) | label changed | mean TV distance |")
    print("|---|---:|---:|---:|---:|")
    for photo in photos:
        aligned = predict(binary, photo, "--align")
        upright = predict(binary, photo, "--no-align")
        by_box = {tuple(f["box"].values()): f for f in upright}
        pairs = [(a, by_box[tuple(a["box"].values())]) for a in aligned if tuple(a["box"].values()) in by_box]
        if not pairs:
            print(f"| {photo.name} | 0 | - | - | - |")
            continue
        tilts = [abs(a.get("angle", 0.0)) for a, _ in pairs]
        changed = sum(a["label"] != u["label"] for a, u in pairs)
        tv = [
            0.5 * sum(abs(a["probabilities"][c] - u["probabilities"][c]) for c in a["probabilities"])
            for a, u in pairs
        ]
        print(
            f"| {photo.name} | {len(pairs)} | {statistics.median(tilts):.1f} / {max(tilts):.1f} "
            f"| {changed} of {len(pairs)} | {statistics.mean(tv):.3f} |"
        )


if __name__ == "__main__":
    main()
