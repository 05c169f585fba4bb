"""Scale-out on Dask: per-face rows of many images, one :class:`efea.Detector` per worker.

>>> import dask.bag as db
>>> from distributed import Client, LocalCluster
>>> import efea.dask
>>> client = Client(LocalCluster(n_workers=2, threads_per_worker=1))  # or Client("tcp://scheduler:8786")
>>> paths = efea.dask.image_paths("photos/")
>>> rows = db.from_sequence(paths, partition_size=32).map_partitions(efea.dask.face_rows)
>>> efea.dask.write_parquet(rows.compute(), "faces.parquet")

A worker creates its detector on its first partition and keeps it (a module global of the
worker process), so the model is loaded once per worker, not once per task, and nothing large
travels from the client. Each task sends back only its rows.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import efea

#: The image files a folder search takes, as `efea predict` does.
EXTENSIONS: Tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")

# One detector per process, keyed by its options: created by the first partition a worker runs.
_detectors: Dict[Tuple[Tuple[str, Any], ...], efea.Detector] = {}


def image_paths(folder: "os.PathLike[str] | str") -> List[str]:
    """The images under ``folder`` (recursively), sorted: a stable order for a bag."""
    root = Path(folder)
    return sorted(
        str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS
    )


def detector(**options: Any) -> efea.Detector:
    """This process's detector for ``options`` (those of :class:`efea.Detector`), created on
    first use."""
    key = tuple(sorted(options.items()))
    if key not in _detectors:
        _detectors[key] = efea.Detector(**options)
    return _detectors[key]


def detectors_held() -> int:
    """How many detectors this process holds (``client.run(efea.dask.detectors_held)`` asks
    every worker)."""
    return len(_detectors)


def face_rows(paths: Iterable[str], **options: Any) -> List[Dict[str, Any]]:
    """One dict per face of each image of ``paths`` (the columns of :func:`efea.to_pandas`,
    ``input`` being the path); an image that cannot be read gives one row with ``error`` set,
    so that one bad file among millions does not fail its partition."""
    paths = list(paths)
    results = detector(**options).detect_many(paths, errors="keep")
    frame = efea.to_pandas(results, inputs=paths)
    frame["error"] = None
    rows = frame.to_dict("records")
    for path, result in zip(paths, results):
        if isinstance(result, Exception):
            rows.append({"input": path, "error": str(result)})
    return rows


def to_frame(rows: Sequence[Dict[str, Any]]):
    """The rows as a DataFrame in a canonical order (by input, then face), with the columns
    of :func:`efea.to_pandas` plus ``error``."""
    import pandas as pd

    frame = pd.DataFrame(list(rows))
    if frame.empty:
        return frame
    frame = frame.drop(columns=["frame"], errors="ignore")  # a partition's index, not global
    return frame.sort_values(["input", "face"], na_position="first").reset_index(drop=True)


def write_parquet(rows: Sequence[Dict[str, Any]], path: "os.PathLike[str] | str") -> None:
    """Writes the rows to one Parquet file (needs pyarrow)."""
    to_frame(rows).to_parquet(path, index=False)
