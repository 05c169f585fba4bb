"""Throughput of the Dask recipe (crates/efea-py/examples/dask_faces.py) for 1 and 2 workers
on a LocalCluster, over a folder of photos made from the committed fixtures.

    python bench/python/bench_dask.py [--images 48]

The folder holds the group photo and the astronaut, halves, mirrors and rescalings of them
(a few to 30 faces each). Each configuration runs twice and the faster run is kept; the time
excludes the cluster's start-up and includes each worker's model load.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[2]
PHOTOS = REPO / "tests" / "fixtures" / "photos"


def make_photos(folder: Path, count: int) -> None:
    group = Image.open(PHOTOS / "solvay_1927.png").convert("RGB")
    person = Image.open(PHOTOS / "astronaut.png").convert("RGB")
    w, h = group.size
    variants = [
        group, person, group.transpose(Image.FLIP_LEFT_RIGHT), person.transpose(Image.FLIP_LEFT_RIGHT),
        group.crop((0, 0, w // 2, h)), group.crop((w // 2, 0, w, h)),
        person.resize((320, 320)), group.resize((w * 3 // 4, h * 3 // 4)),
    ]
    for i in range(count):
        variants[i % len(variants)].save(folder / f"photo{i:04d}.jpg", quality=90)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=48)
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location(
        "dask_faces", REPO / "crates" / "efea-py" / "examples" / "dask_faces.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        make_photos(folder, args.images)
        print(f"{time.strftime('%Y-%m-%d %H:%M')}, load {os.getloadavg()[0]:.2f}")
        print("| workers | threads per detector | images | faces | seconds | images/s | faces/s |")
        print("|---:|---|---:|---:|---:|---:|---:|")
        configs = [(1, None), (2, None), (2, "1")]
        for workers, rayon in configs:
            if rayon is None:
                os.environ.pop("RAYON_NUM_THREADS", None)
            else:
                os.environ["RAYON_NUM_THREADS"] = rayon  # inherited by the worker processes
            best = None
            for _ in range(2):
                run = example.faces_to_parquet(folder, Path(tmp) / "faces.parquet", workers=workers)
                best = run if best is None or run["seconds"] < best["seconds"] else best
            threads = f"{rayon} (RAYON_NUM_THREADS)" if rayon else f"all ({os.cpu_count()})"
            print(f"| {workers} | {threads} | {best['images']} | {best['faces']} | {best['seconds']:.1f} "
                  f"| {best['images'] / best['seconds']:.2f} | {best['faces'] / best['seconds']:.1f} |")
        print(f"load after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
