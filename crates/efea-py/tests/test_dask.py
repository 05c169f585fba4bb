"""The Dask recipe (examples/dask_faces.py): a bag over an image folder on a LocalCluster of
two worker processes gives, row for row, the Parquet file of a single-process run."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import efea
import efea.dask

from conftest import PACKAGE


def load_example():
    spec = importlib.util.spec_from_file_location("dask_faces", PACKAGE / "examples" / "dask_faces.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def folder(tmp_path_factory, solvay, astronaut):
    """Twelve images in two folders: the photos, crops and mirrors of them, a blank picture
    (no face) and a damaged file."""
    root = tmp_path_factory.mktemp("photos")
    (root / "a").mkdir()
    (root / "b" / "c").mkdir(parents=True)
    shutil.copy(solvay, root / "a" / "solvay.png")
    shutil.copy(astronaut, root / "b" / "astronaut.png")
    group = Image.open(solvay).convert("RGB")
    person = Image.open(astronaut).convert("RGB")
    w, h = group.size
    for i, box in enumerate([(0, 0, w // 2, h), (w // 2, 0, w, h), (0, 0, w, h // 2)]):
        group.crop(box).save(root / "a" / f"part{i}.jpg", quality=92)
    person.transpose(Image.FLIP_LEFT_RIGHT).save(root / "b" / "mirror.jpg")
    person.resize((256, 256)).save(root / "b" / "c" / "small.png")
    person.rotate(8).save(root / "b" / "c" / "tilted.webp")
    group.resize((w // 2, h // 2)).save(root / "a" / "half.bmp")
    Image.fromarray(np.full((90, 120), 128, np.uint8)).save(root / "b" / "blank.png")
    person.convert("L").save(root / "b" / "c" / "gray.png")
    (root / "b" / "damaged.jpg").write_bytes(b"not an image")
    return root


def test_two_workers_write_the_rows_of_a_single_process_run(folder, tmp_path):
    example = load_example()
    out = tmp_path / "faces.parquet"
    run = example.faces_to_parquet(folder, out, workers=2, partition_size=3)
    images, faces = run["images"], run["faces"]
    assert images == 12
    # Four partitions over two workers: each worker made one detector and kept it.
    assert sorted(run["detectors"].values()) == [1, 1], run["detectors"]
    distributed = pd.read_parquet(out)

    paths = efea.dask.image_paths(folder)
    single = efea.dask.to_frame(efea.dask.face_rows(paths))
    assert len(distributed) == len(single) == faces + 1 and faces > 20
    pd.testing.assert_frame_equal(distributed, single, check_dtype=False)

    errors = distributed[distributed["error"].notna()]
    assert list(errors["input"]) == [str(folder / "b" / "damaged.jpg")]
    assert str(folder / "b" / "blank.png") not in set(distributed["input"])


def test_each_worker_process_keeps_one_detector():
    first = efea.dask.detector()
    assert efea.dask.detector() is first
    assert efea.dask.detector(detector="rustface") is not first
