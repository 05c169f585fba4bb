"""Type stubs of the efea package (see __init__.py for the documentation of each call)."""

import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Literal, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str
LANDMARKS: Tuple[str, ...]

PathLike = Union[str, "os.PathLike[str]"]
#: A path, the bytes of an image file, a PIL image, or a (H, W) / (H, W, 3) uint8 or float array.
Image = Union[PathLike, bytes, bytearray, memoryview, npt.NDArray[Any], Any]

class EfeaError(Exception): ...
class DataError(EfeaError): ...
class ModelError(EfeaError): ...
class ImageError(EfeaError): ...
class ConfigError(EfeaError): ...
class TrainingError(EfeaError): ...

@dataclass(frozen=True)
class Face:
    box: Tuple[int, int, int, int]
    crop: Tuple[int, int, int, int]
    label: str
    probabilities: Dict[str, float]
    score: Optional[float] = ...
    landmarks: Optional[Dict[str, Tuple[float, float]]] = ...
    angle: Optional[float] = ...
    @property
    def confidence(self) -> float: ...
    def to_dict(self) -> Dict[str, Any]: ...

class Faces(List[Face]):
    width: int
    height: int
    def __init__(self, faces: Sequence[Face] = ..., width: int = ..., height: int = ...) -> None: ...
    def to_pandas(self, input: Optional[str] = ...) -> Any: ...

class Detector:
    def __init__(
        self,
        model: Optional[PathLike] = ...,
        detector: Optional[Literal["mtcnn", "rustface"]] = ...,
        device: Literal["cpu"] = ...,
        *,
        margin: Optional[float] = ...,
        align: Optional[bool] = ...,
        min_face: int = ...,
        batch_size: int = ...,
        max_pixels: int = ...,
        no_detect: bool = ...,
        cam_layer: int = ...,
    ) -> None: ...
    @property
    def classes(self) -> List[str]: ...
    def info(self) -> Dict[str, Any]: ...
    def detect(self, image: Image, *, channels: Literal["rgb", "bgr"] = ...) -> Faces: ...
    def detect_many(
        self,
        images: Sequence[Image],
        batch_size: Optional[int] = ...,
        *,
        channels: Literal["rgb", "bgr"] = ...,
        errors: Literal["raise", "keep"] = ...,
    ) -> List[Union[Faces, EfeaError]]: ...
    def grad_cam(
        self, image: Image, *, channels: Literal["rgb", "bgr"] = ...
    ) -> List[Tuple[Face, npt.NDArray[np.float32]]]: ...

def to_pandas(results: Sequence[Union[Faces, EfeaError]], inputs: Optional[Sequence[str]] = ...) -> Any: ...

@dataclass
class Dataset:
    name: str
    classes: List[str]
    images: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.int64]
    splits: Dict[str, npt.NDArray[np.int64]]
    subjects: List[Optional[str]] = ...
    labelled: bool = ...
    skipped: int = ...
    def __len__(self) -> int: ...
    def split(self, name: str) -> Tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]: ...

def load_dataset(
    kind: Literal["fer2013", "ferplus", "ckplus", "ck48", "folder", "synth"],
    path: Optional[PathLike] = ...,
    *,
    size: int = ...,
    skip_bad: bool = ...,
) -> Dataset: ...
def synth(
    count: int = ...,
    level: Literal["easy", "medium", "hard"] = ...,
    seed: int = ...,
    *,
    size: int = ...,
    subjects: Optional[int] = ...,
) -> Dataset: ...
def train(
    dataset: Optional[str] = ...,
    data: Optional[PathLike] = ...,
    *,
    progress: Optional[Callable[[Dict[str, Any], bool], None]] = ...,
    config: Optional[PathLike] = ...,
    out: Optional[PathLike] = ...,
    resume: Optional[PathLike] = ...,
    select_on: Optional[str] = ...,
    holdout: Optional[float] = ...,
    max_train_samples: Optional[int] = ...,
    device: Literal["cpu"] = ...,
    preset: Optional[Literal["plain", "cdsm", "msca", "full"]] = ...,
    width: Optional[float] = ...,
    input: Optional[int] = ...,
    dropout: Optional[float] = ...,
    init: Optional[PathLike] = ...,
    epochs: Optional[int] = ...,
    batch_size: Optional[int] = ...,
    lr: Optional[float] = ...,
    optimizer: Optional[Literal["sgd", "adamw"]] = ...,
    momentum: Optional[float] = ...,
    weight_decay: Optional[float] = ...,
    schedule: Optional[Literal["step", "cosine", "plateau", "constant"]] = ...,
    step_size: Optional[int] = ...,
    gamma: Optional[float] = ...,
    warmup_epochs: Optional[int] = ...,
    min_lr: Optional[float] = ...,
    patience: Optional[int] = ...,
    factor: Optional[float] = ...,
    label_smoothing: Optional[float] = ...,
    mixup: Optional[float] = ...,
    cutmix: Optional[float] = ...,
    mix_prob: Optional[float] = ...,
    clip_grad_norm: Optional[float] = ...,
    early_stopping: Optional[int] = ...,
    no_augment: bool = ...,
    no_tencrop: bool = ...,
    balanced_batches: Optional[bool] = ...,
    seed: Optional[int] = ...,
    detector: Optional[Literal["mtcnn", "rustface"]] = ...,
    margin: Optional[float] = ...,
    align: Optional[bool] = ...,
    ferplus_labels: Optional[Literal["majority", "soft"]] = ...,
) -> Dict[str, Any]: ...
def evaluate(
    model: PathLike,
    dataset: Optional[str] = ...,
    data: Optional[PathLike] = ...,
    *,
    splits: Optional[Sequence[str]] = ...,
    tta: Optional[Literal["tencrop"]] = ...,
    class_map: Optional[str] = ...,
    out: Optional[PathLike] = ...,
    batch_size: int = ...,
    device: Literal["cpu"] = ...,
) -> Dict[str, Any]: ...
