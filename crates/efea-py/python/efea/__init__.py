"""efea: facial expression recognition (EFEA-MSM on Burn) from Python.

Faces and their expressions in images, datasets as NumPy arrays, training and evaluation,
Grad-CAM maps: the same library the ``efea`` command line runs, through a thin native module
(``efea._efea``). Inference and training release the GIL, and Ctrl-C interrupts them.

>>> import efea
>>> detector = efea.Detector()                      # the bundled FER2013 model, MTCNN faces
>>> faces = detector.detect("group.jpg")            # a path, bytes, a PIL image or an array
>>> faces[0].label, faces[0].probabilities["happy"]
>>> frame = efea.to_pandas(detector.detect_many(paths), inputs=paths)  # one row per face

Errors are exceptions of :class:`EfeaError`'s family with the one-line messages of the CLI.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _efea
from ._efea import (
    ConfigError,
    DataError,
    EfeaError,
    ImageError,
    ModelError,
    TrainingError,
)

__version__: str = _efea.__version__

__all__ = [
    "ConfigError",
    "DataError",
    "Dataset",
    "Detector",
    "EfeaError",
    "Face",
    "Faces",
    "ImageError",
    "ModelError",
    "TrainingError",
    "evaluate",
    "load_dataset",
    "synth",
    "to_pandas",
    "train",
]

#: The five landmarks of MTCNN, in the order of ``Face.landmarks`` and of the ``x_i``/``y_i``
#: columns of :func:`to_pandas`.
LANDMARKS: Tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

Image = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, np.ndarray, Any]


@dataclass(frozen=True)
class Face:
    """One face and what the network thinks of it (``efea predict --format json``'s entry).

    ``box`` and ``crop`` are ``(x, y, width, height)`` in pixels of the image; ``crop`` is the
    square the network saw. ``landmarks`` maps :data:`LANDMARKS` to ``(x, y)`` when the
    detector gives them (MTCNN), else is ``None``. ``probabilities`` maps every class, in the
    model's order, to its probability; ``label`` is the most probable one.
    """

    box: Tuple[int, int, int, int]
    crop: Tuple[int, int, int, int]
    label: str
    probabilities: Dict[str, float]
    score: Optional[float] = None
    landmarks: Optional[Dict[str, Tuple[float, float]]] = None
    angle: Optional[float] = None

    @property
    def confidence(self) -> float:
        """The probability of :attr:`label`."""
        return self.probabilities[self.label]

    def to_dict(self) -> Dict[str, Any]:
        """The face as the CLI's JSON writes it (key for key, value for value)."""
        out: Dict[str, Any] = {"box": _rect_dict(self.box), "crop": _rect_dict(self.crop)}
        if self.angle is not None:
            out["angle"] = self.angle
        if self.score is not None:
            out["score"] = self.score
        if self.landmarks is not None:
            out["landmarks"] = {k: list(v) for k, v in self.landmarks.items()}
        out["label"] = self.label
        out["probabilities"] = dict(self.probabilities)
        return out

    @classmethod
    def _from_json(cls, d: Dict[str, Any]) -> "Face":
        landmarks = d.get("landmarks")
        return cls(
            box=_rect(d["box"]),
            crop=_rect(d["crop"]),
            label=d["label"],
            probabilities=dict(d["probabilities"]),
            score=d.get("score"),
            landmarks=None if landmarks is None else {k: tuple(v) for k, v in landmarks.items()},
            angle=d.get("angle"),
        )


def _rect(d: Dict[str, int]) -> Tuple[int, int, int, int]:
    return (d["x"], d["y"], d["width"], d["height"])


def _rect_dict(r: Tuple[int, int, int, int]) -> Dict[str, int]:
    return {"x": r[0], "y": r[1], "width": r[2], "height": r[3]}


class Faces(List[Face]):
    """The faces of one image (highest detector score first), with the image's size."""

    width: int
    height: int

    def __init__(self, faces: Iterable[Face] = (), width: int = 0, height: int = 0):
        super().__init__(faces)
        self.width = width
        self.height = height

    def to_pandas(self, input: Optional[str] = None):
        """One row per face; see :func:`to_pandas`."""
        return to_pandas([self], inputs=None if input is None else [input])

    @classmethod
    def _from_json(cls, text: str) -> "Faces":
        d = json.loads(text)
        return cls((Face._from_json(f) for f in d["faces"]), d["width"], d["height"])


def _pixels(image: np.ndarray, channels: str) -> Tuple[bytes, int, int, int]:
    """An array as ``(uint8 bytes, height, width, channels)`` for the native module."""
    if image.dtype == np.uint8:
        pixels = image
    elif image.dtype in (np.float32, np.float64, np.float16):
        # Floats are intensities in [0, 1] (as matplotlib and scikit-image have them).
        if image.size and not np.isfinite(image).all():
            raise ValueError("a float image has NaN or infinite values")
        pixels = np.clip(np.rint(image.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    else:
        raise TypeError(
            f"image dtype {image.dtype}: expected uint8 (0-255) or float (0-1)"
        )
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim == 2:
        depth = 1
    elif pixels.ndim == 3 and pixels.shape[2] == 3:
        depth = 3
        order = channels.lower()
        if order == "bgr":
            pixels = pixels[:, :, ::-1]
        elif order != "rgb":
            raise ValueError(f"channels={channels!r}: expected 'rgb' or 'bgr'")
    else:
        raise ValueError(
            f"image shape {image.shape}: expected (height, width) or (height, width, 3)"
        )
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ValueError(f"image shape {image.shape} has no pixels")
    height, width = pixels.shape[:2]
    return (np.ascontiguousarray(pixels).tobytes(), height, width, depth)


def _native_input(image: Image, channels: str) -> Any:
    """A path as ``str``, encoded bytes as ``bytes``, pixels as a tuple."""
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, np.ndarray):
        return _pixels(image, channels)
    if hasattr(image, "mode") and hasattr(image, "convert"):  # a PIL image, without importing PIL
        rgb = image.convert("L" if image.mode in ("1", "L", "I;16", "I", "F") else "RGB")
        return _pixels(np.asarray(rgb), "rgb")
    raise TypeError(
        f"an image is a path, bytes, a PIL image or a NumPy array, not {type(image).__name__}"
    )


class Detector:
    """Finds faces in images and classifies their expressions.

    ``model``: a run directory (``config.json`` + ``best.bpk``) or a checkpoint written by
    ``efea train``; ``None``: the bundled FER2013 model (fer's mini-XCEPTION). ``detector``:
    ``"mtcnn"`` (boxes and five landmarks) or ``"rustface"`` (boxes only); ``None``: the one
    the model was trained with. ``device``: ``"cpu"``. The keyword options are those of
    ``efea predict``: ``margin`` and ``align`` override the model's framing, ``min_face`` is
    the smallest face searched (pixels), ``batch_size`` the faces per forward pass,
    ``max_pixels`` refuses larger images from their header, ``no_detect`` classifies each
    image whole (already a face crop), ``cam_layer`` is Grad-CAM's target (1-18).

    One detector serves many threads; create one per process (per Dask worker).
    """

    def __init__(
        self,
        model: Union[str, "os.PathLike[str]", None] = None,
        detector: Optional[str] = None,
        device: str = "cpu",
        *,
        margin: Optional[float] = None,
        align: Optional[bool] = None,
        min_face: int = 20,
        batch_size: int = 32,
        max_pixels: int = 100_000_000,
        no_detect: bool = False,
        cam_layer: int = 18,
    ) -> None:
        self._native = _efea.Detector(
            None if model is None else os.fspath(model),
            detector,
            device,
            margin=margin,
            align=align,
            min_face=min_face,
            batch_size=batch_size,
            max_pixels=max_pixels,
            no_detect=no_detect,
            cam_layer=cam_layer,
        )

    @property
    def classes(self) -> List[str]:
        """The model's classes, in the order of its outputs."""
        return self._native.classes

    def info(self) -> Dict[str, Any]:
        """The model: name, architecture, classes, input size, face framing, training report."""
        return json.loads(self._native.info_json())

    def detect(self, image: Image, *, channels: str = "rgb") -> Faces:
        """The faces of one image.

        ``image``: a path, the bytes of an image file, a PIL image, or a NumPy array of shape
        ``(H, W)`` (gray) or ``(H, W, 3)`` (``channels="rgb"``, or ``"bgr"`` for OpenCV's
        order), ``uint8`` (0-255) or float (0-1). Raises :class:`ImageError` for a file that
        is missing, empty, damaged or not an image; ``TypeError``/``ValueError`` for an array
        of another dtype or shape.
        """
        return self.detect_many([image], channels=channels)[0]

    def detect_many(
        self,
        images: Sequence[Image],
        batch_size: Optional[int] = None,
        *,
        channels: str = "rgb",
        errors: str = "raise",
    ) -> List[Any]:
        """The faces of each image, in order; the faces of all images share the batches.

        Images are decoded and searched in parallel, 16 at a time, without the GIL; Ctrl-C
        stops between rounds. ``batch_size`` (faces per forward pass) overrides the
        detector's for this call. ``errors="raise"`` raises the first bad image's error;
        ``errors="keep"`` puts the exception in that image's place and goes on.
        """
        if errors not in ("raise", "keep"):
            raise ValueError(f"errors={errors!r}: expected 'raise' or 'keep'")
        inputs = [_native_input(image, channels) for image in images]
        out: List[Any] = []
        for ok, value in self._native.detect_many(inputs, batch_size):
            if ok:
                out.append(Faces._from_json(value))
            elif errors == "raise":
                raise value
            else:
                out.append(value)
        return out

    def grad_cam(self, image: Image, *, channels: str = "rgb") -> List[Tuple[Face, np.ndarray]]:
        """Each face of ``image`` with its Grad-CAM map for the predicted class: a ``float32``
        array ``(h, w)`` at the target layer's resolution (6x6 for the last layer of a 48-pixel
        input), in ``[0, 1]``, covering the face's ``crop``."""
        text, maps = self._native.grad_cam(_native_input(image, channels))
        faces = Faces._from_json(text)
        return [
            (face, np.frombuffer(values, dtype="<f4").reshape(height, width).copy())
            for face, (_class, height, width, values) in zip(faces, maps)
        ]



def to_pandas(results: Sequence[Any], inputs: Optional[Sequence[str]] = None):
    """One row per face of ``results`` (what :meth:`Detector.detect_many` returned), with
    py-feat's column names where it has them: ``input`` (the image's name from ``inputs``,
    else its index), ``frame`` (the image's index), ``face`` (1-based within the image),
    ``FaceRectX``, ``FaceRectY``, ``FaceRectWidth``, ``FaceRectHeight``, ``FaceScore``,
    ``x_0..x_4`` and ``y_0..y_4`` (the landmarks of :data:`LANDMARKS`), ``label``, then one
    column per class with its probability. An image without faces has no row; an error kept
    by ``errors="keep"`` has none either. Needs pandas (``pip install pandas``).
    """
    try:
        import pandas as pd
    except ImportError as e:  # pandas is optional
        raise ImportError("efea.to_pandas needs pandas: pip install pandas") from e
    rows: List[Dict[str, Any]] = []
    classes: List[str] = []
    for index, faces in enumerate(results):
        if not isinstance(faces, Faces):
            continue
        name = inputs[index] if inputs is not None else index
        for number, face in enumerate(faces, start=1):
            row: Dict[str, Any] = {
                "input": name,
                "frame": index,
                "face": number,
                "FaceRectX": face.box[0],
                "FaceRectY": face.box[1],
                "FaceRectWidth": face.box[2],
                "FaceRectHeight": face.box[3],
                "FaceScore": face.score,
            }
            for i, point in enumerate(LANDMARKS):
                xy = None if face.landmarks is None else face.landmarks.get(point)
                row[f"x_{i}"] = None if xy is None else xy[0]
                row[f"y_{i}"] = None if xy is None else xy[1]
            row["label"] = face.label
            for cls, p in face.probabilities.items():
                if cls not in classes:
                    classes.append(cls)
                row[cls] = p
            rows.append(row)
    columns = (
        ["input", "frame", "face", "FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight"]
        + ["FaceScore"]
        + [f"{axis}_{i}" for i in range(len(LANDMARKS)) for axis in ("x", "y")]
        + ["label"]
        + classes
    )
    frame = pd.DataFrame(rows, columns=columns)
    float_columns = ["FaceScore"] + [f"{a}_{i}" for i in range(len(LANDMARKS)) for a in "xy"]
    return frame.astype({c: "float64" for c in float_columns + classes})


@dataclass
class Dataset:
    """A dataset as NumPy arrays: ``images`` ``(n, size, size)`` ``uint8`` gray faces,
    ``labels`` ``(n,)`` ``int64`` indices into ``classes``, ``splits`` mapping each split name
    (FER2013: ``Training``, ``PublicTest``, ``PrivateTest``) to ``int64`` sample indices."""

    name: str
    classes: List[str]
    images: np.ndarray
    labels: np.ndarray
    splits: Dict[str, np.ndarray]
    subjects: List[Optional[str]] = field(default_factory=list)
    labelled: bool = True
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.labels)

    def split(self, name: str) -> Tuple[np.ndarray, np.ndarray]:
        """``(images, labels)`` of one split."""
        indices = self.splits[name]
        return self.images[indices], self.labels[indices]


def _dataset(d: Dict[str, Any]) -> Dataset:
    count, size = d["count"], d["size"]
    images = np.frombuffer(d["pixels"], dtype=np.uint8).reshape(count, size, size).copy()
    return Dataset(
        name=d["name"],
        classes=list(d["classes"]),
        images=images,
        labels=np.asarray(d["labels"], dtype=np.int64),
        splits={k: np.asarray(v, dtype=np.int64) for k, v in d["splits"].items()},
        subjects=list(d["subjects"]),
        labelled=d["labelled"],
        skipped=d["skipped"],
    )


def load_dataset(
    kind: str,
    path: Union[str, "os.PathLike[str]", None] = None,
    *,
    size: int = 48,
    skip_bad: bool = False,
) -> Dataset:
    """Loads a dataset as ``efea train --dataset KIND --data PATH`` reads it: ``fer2013``
    (``fer2013.csv`` or its folder layout), ``ferplus``, ``ckplus``, ``ck48``, ``folder`` or
    ``synth`` (``path``: an optional ``count=...,level=...`` spec). Faces are square gray
    images of ``size`` pixels. A bad row or image raises :class:`DataError` naming the file and
    line, unless ``skip_bad`` (then counted in ``Dataset.skipped``)."""
    d = _efea.load_dataset(kind, None if path is None else os.fspath(path), size=size, skip_bad=skip_bad)
    return _dataset(d)


def synth(count: int = 3000, level: str = "medium", seed: int = 0, *, size: int = 48,
          subjects: Optional[int] = None) -> Dataset:
    """The built-in synthetic expression set (``efea synth``): ``count`` faces of ``level``
    ``easy``, ``medium`` or ``hard``, drawn from ``seed``; the same arguments give the same
    pixels. Splits ``Training``/``PublicTest``/``PrivateTest`` never share a subject."""
    return _dataset(_efea.synth(count, level, seed, size=size, subjects=subjects))


def train(
    dataset: Optional[str] = None,
    data: Union[str, "os.PathLike[str]", None] = None,
    *,
    progress: Optional[Callable[[Dict[str, Any], bool], None]] = None,
    **options: Any,
) -> Dict[str, Any]:
    """Trains a network as ``efea train`` does; no arguments: the demo on the synthetic set.

    Keyword options are ``efea train``'s flags with ``_`` for ``-`` (``config``, ``out``,
    ``resume``, ``select_on``, ``holdout``, ``max_train_samples``, ``device``, ``preset``,
    ``width``, ``input``, ``epochs``, ``batch_size``, ``lr``, ``optimizer``, ``schedule``,
    ``seed``, ``no_augment``, ``no_tencrop``, ...; see the stub for all). ``progress(metrics,
    best)`` is called after every epoch. Returns ``{"run_dir", "epochs_done",
    "stopped_early", "history", "report"}``, ``report`` being the run's ``report.json``.
    Ctrl-C stops the run after the current batch and raises ``KeyboardInterrupt``; the run
    resumes from its last epoch with ``train(resume=run_dir)``.
    """
    callback = None
    if progress is not None:
        def callback(text: str, best: bool) -> None:
            progress(json.loads(text), best)
    for key in ("config", "out", "resume", "init"):
        if options.get(key) is not None:
            options[key] = os.fspath(options[key])
    return json.loads(
        _efea.train(dataset, None if data is None else os.fspath(data), progress=callback, **options)
    )


def evaluate(
    model: Union[str, "os.PathLike[str]"],
    dataset: Optional[str] = None,
    data: Union[str, "os.PathLike[str]", None] = None,
    *,
    splits: Optional[Sequence[str]] = None,
    tta: Optional[str] = None,
    class_map: Optional[str] = None,
    out: Union[str, "os.PathLike[str]", None] = None,
    batch_size: int = 128,
    device: str = "cpu",
) -> Dict[str, Any]:
    """Scores a run on any split of any dataset as ``efea eval`` does and writes the report
    (``report.json``, ``report.md``, confusion matrices) to ``out`` (default
    ``<run>/eval-<dataset>``). ``tta="tencrop"`` adds ten-crop test-time augmentation;
    ``class_map`` is ``--class-map``'s ``network=dataset,...``. Returns ``{"out", "config",
    "left_out", "report"}``."""
    return json.loads(
        _efea.evaluate(
            os.fspath(model),
            dataset,
            None if data is None else os.fspath(data),
            splits=None if splits is None else list(splits),
            tta=tta,
            class_map=class_map,
            out=None if out is None else os.fspath(out),
            batch_size=batch_size,
            device=device,
        )
    )
