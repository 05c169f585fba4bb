"""Faces of every image in a folder, on a Dask cluster, to one Parquet file of per-face rows.

    python examples/dask_faces.py PHOTOS faces.parquet                  # a LocalCluster of 2 workers
    python examples/dask_faces.py PHOTOS faces.parquet --workers 1
    python examples/dask_faces.py PHOTOS faces.parquet --scheduler tcp://10.0.0.5:8786

On a real cluster the scheduler address is the only change: each worker needs `efea`
installed (`pip install ./crates/efea-py`) and the images at the same path (a shared file
system, or object-store URLs read into bytes by the task instead of paths).
"""

from __future__ import annotations

import argparse
import time

import dask.bag as db
from distributed import Client, LocalCluster

import efea.dask


def faces_to_parquet(folder, out, *, scheduler=None, workers=2, partition_size=8, **options):
    """Runs the recipe. Returns the number of images and faces, the seconds taken (without
    the cluster's start-up, with each worker's first model load) and how many detectors each
    worker holds."""
    paths = efea.dask.image_paths(folder)
    cluster = None
    if scheduler is None:
        # One thread per worker: each detector already uses every core of its process (rayon).
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        scheduler = cluster
    with Client(scheduler) as client:
        client.wait_for_workers(workers if cluster is not None else 1)
        start = time.perf_counter()
        bag = db.from_sequence(paths, partition_size=partition_size)
        rows = bag.map_partitions(efea.dask.face_rows, **options).compute()
        seconds = time.perf_counter() - start
        detectors = client.run(efea.dask.detectors_held)
    if cluster is not None:
        cluster.close()
    efea.dask.write_parquet(rows, out)
    faces = sum(1 for row in rows if row.get("error") is None)
    return {"images": len(paths), "faces": faces, "seconds": seconds, "detectors": detectors}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("out")
    parser.add_argument("--scheduler", help="a running scheduler's address (default: a LocalCluster)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partition-size", type=int, default=8)
    args = parser.parse_args()
    run = faces_to_parquet(args.folder, args.out, scheduler=args.scheduler,
                           workers=args.workers, partition_size=args.partition_size)
    images, faces, seconds = run["images"], run["faces"], run["seconds"]
    print(f"{images} images, {faces} faces in {seconds:.1f} s: {images / seconds:.2f} images/s, "
          f"{faces / seconds:.1f} faces/s -> {args.out}")


if __name__ == "__main__":
    main()
