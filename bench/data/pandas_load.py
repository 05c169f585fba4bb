"""Loads a FER2013 CSV the way Python users do, for comparison with efea's loader.

`python pandas_load.py FILE typical|fast` prints one JSON object: wall time, peak RSS (ru_maxrss)
and its ratio to the raw pixel bytes. `typical` is the common idiom (pandas.read_csv, then split
each pixel string into a uint8 array and stack); `fast` is the quickest pure numpy/pandas way we
know (one np.fromstring over all rows joined). Both validate nothing beyond the shape.
"""

import json
import resource
import sys
import time

import numpy as np
import pandas as pd


def rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports kB


def main() -> None:
    path, mode = sys.argv[1], sys.argv[2]
    before = rss_bytes()
    start = time.perf_counter()
    frame = pd.read_csv(path)
    if mode == "typical":
        images = np.stack([np.array(p.split(), dtype=np.uint8) for p in frame["pixels"]])
    elif mode == "fast":
        flat = np.fromstring(" ".join(frame["pixels"].tolist()), dtype=np.uint8, sep=" ")
        images = flat.reshape(len(frame), -1)
    else:
        raise SystemExit(f"unknown mode {mode}, expected typical or fast")
    images = images.reshape(-1, 48, 48)
    labels = frame["emotion"].to_numpy(dtype=np.int64)
    usage = frame["Usage"].to_numpy()
    seconds = time.perf_counter() - start
    peak = rss_bytes()
    print(json.dumps({
        "task": f"pandas-{mode}",
        "rows": int(images.shape[0]),
        "labels": int(labels.size),
        "usages": int(usage.size),
        "seconds": round(seconds, 3),
        "rss_before": before,
        "peak_rss": peak,
        "pixel_bytes": int(images.nbytes),
        "peak_over_pixels": round((peak - before) / images.nbytes, 3),
        "pandas": pd.__version__,
        "numpy": np.__version__,
    }))


if __name__ == "__main__":
    main()
