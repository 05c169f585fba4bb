"""efea.load_dataset and efea.synth: NumPy arrays of the loaders' samples, and the loaders'
one-line errors (the CLI's, word for word)."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

import efea

FER_CLASSES = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]


def write_fer2013(path, rows):
    lines = ["emotion,pixels,Usage"]
    for label, pixels, usage in rows:
        lines.append(f"{label},{' '.join(map(str, pixels))},{usage}")
    path.write_text("\n".join(lines) + "\n")


def test_synth_is_arrays_of_gray_faces_that_repeat_with_the_seed():
    data = efea.synth(70, "easy", seed=4)
    assert data.name == "synth" and len(data) == 70
    assert data.images.shape == (70, 48, 48) and data.images.dtype == np.uint8
    assert data.labels.dtype == np.int64 and set(data.labels) == set(range(len(data.classes)))
    assert sorted(data.splits) == ["PrivateTest", "PublicTest", "Training"]
    every = np.sort(np.concatenate(list(data.splits.values())))
    assert (every == np.arange(70)).all()
    assert data.images.std() > 10
    again = efea.synth(70, "easy", seed=4)
    assert (again.images == data.images).all() and (again.labels == data.labels).all()
    assert not (efea.synth(70, "easy", seed=5).images == data.images).all()
    assert efea.synth(14, size=32).images.shape == (14, 32, 32)
    images, labels = data.split("Training")
    assert len(images) == len(labels) == len(data.splits["Training"])


def test_synth_pixels_equal_the_cli_s_folder_layout(efea_cli, tmp_path):
    from PIL import Image

    out = tmp_path / "synth"
    subprocess.run([str(efea_cli), "synth", "--count", "14", "--level", "hard", "--seed", "2",
                    "--format", "folders", "--out", str(out)], check=True, capture_output=True)
    files = sorted(out.rglob("*.png"))
    assert len(files) == 14
    data = efea.synth(14, "hard", seed=2)
    cli_images = {np.asarray(Image.open(f)).tobytes() for f in files}
    assert cli_images == {image.tobytes() for image in data.images}


def test_load_dataset_reads_a_fer2013_csv(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 48, 48), dtype=np.uint8)
    usages = ["Training", "Training", "PublicTest", "PrivateTest", "Training"]
    csv = tmp_path / "fer2013.csv"
    write_fer2013(csv, [(i % 7, images[i].ravel(), usages[i]) for i in range(5)])
    data = efea.load_dataset("fer2013", csv)
    assert data.name == "fer2013" and data.classes == FER_CLASSES
    assert (data.images == images).all()
    assert list(data.labels) == [0, 1, 2, 3, 4]
    assert list(data.splits["Training"]) == [0, 1, 4]
    assert list(data.splits["PublicTest"]) == [2]
    resized = efea.load_dataset("fer", csv, size=32)
    assert resized.images.shape == (5, 32, 32)


def test_a_bad_row_is_a_data_error_with_the_cli_message(efea_cli, tmp_path):
    csv = tmp_path / "fer2013.csv"
    write_fer2013(csv, [(0, [1] * 2304, "Training"), (9, [1] * 2304, "Training"),
                        (1, [2] * 2000, "Training")])
    with pytest.raises(efea.DataError) as error:
        efea.load_dataset("fer2013", csv)
    message = str(error.value)
    assert message.startswith(f"{csv}:3:"), message
    cli = subprocess.run([str(efea_cli), "data", "stats", "--dataset", "fer2013", "--data", str(csv)],
                         capture_output=True, text=True)
    assert cli.returncode == 2
    assert cli.stderr.strip() == f"error: {message}"
    skipped = efea.load_dataset("fer2013", csv, skip_bad=True)
    assert len(skipped) == 1 and skipped.skipped == 2


def test_unknown_kinds_levels_and_missing_paths_are_data_errors(tmp_path):
    with pytest.raises(efea.DataError, match="unknown dataset"):
        efea.load_dataset("mnist", tmp_path)
    with pytest.raises(efea.DataError, match="needs a path"):
        efea.load_dataset("fer2013")
    with pytest.raises(efea.DataError, match="no-such.csv"):
        efea.load_dataset("fer2013", tmp_path / "no-such.csv")
    with pytest.raises(efea.DataError, match="`extreme`: unknown level"):
        efea.synth(10, "extreme")
