"""Convert facenet-pytorch's MTCNN (P-Net, R-Net, O-Net) for the Rust crate `efea-face`, and
write the fixtures its parity tests read.

Writes, from the installed `facenet-pytorch` package (no download):
- `crates/efea-face/assets/mtcnn_{pnet,rnet,onet}.safetensors`: float32, in Burn's layout
  under the Burn modules' parameter paths, so `SafetensorsStore` loads them with no adapter
  and no remapping. Two differences from the PyTorch state dicts, both made here:
  `preluN.weight` is stored as `preluN.alpha` (the field of `burn::nn::PRelu`), and every
  `nn.Linear` weight is transposed from PyTorch's `[out, in]` to Burn's `[in, out]`.
- `crates/efea-face/assets/MTCNN.LICENSE`: facenet-pytorch's MIT licence and the provenance.
- `tests/fixtures/mtcnn/{pnet,rnet,onet}.io.safetensors`: committed inputs and
  facenet-pytorch's outputs per net (float32, as facenet-pytorch computes them).
- `tests/fixtures/mtcnn/detections.json`: `MTCNN(keep_all=True).detect(img, landmarks=True)`
  with default settings on the committed photos.
- `tests/fixtures/photos/astronaut.png` (`skimage.data.astronaut()`, saved with PIL defaults).

Deterministic. Run from anywhere (about a minute on two cores):
    reference/.venv/bin/python reference/mtcnn_convert.py            # everything
    reference/.venv/bin/python reference/mtcnn_convert.py --time     # also time detection

facenet-pytorch 2.6.0 pins torch<2.3, numpy<2 and Pillow<10.3; it is installed with
`--no-deps` beside the reference's newer torch/numpy/Pillow (see requirements-mtcnn.txt).
The MTCNN code it runs here (`detect_face`, the three nets) works unchanged with them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from importlib import metadata
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from torch.nn.functional import interpolate

import facenet_pytorch
from facenet_pytorch import MTCNN, ONet, PNet, RNet

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "crates" / "efea-face" / "assets"
FIXTURES = ROOT / "tests" / "fixtures" / "mtcnn"
PHOTOS = ROOT / "tests" / "fixtures" / "photos"
PACKAGE_DATA = Path(facenet_pytorch.__file__).resolve().parent / "data"

NETS = {"pnet": PNet, "rnet": RNet, "onet": ONet}

# Windows of the photos, as extra detection cases (crops, so Rust and Python see identical
# pixels): the 640x480 window of the group photo used for timing, horizontally centred at
# the top where the faces are; and the astronaut with her face cut by the top-left corner
# (boxes beyond the border, clamped by pad()).
CROPS = {
    "solvay_1927.png@crop640x480": ("solvay_1927.png", (513, 0, 640, 480)),  # x0, y0, width, height
    "astronaut.png@border": ("astronaut.png", (206, 87, 306, 425)),
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def burn_state_dict(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """PyTorch's names and layouts -> the Burn modules' paths and layouts."""
    out = {}
    for key, value in state.items():
        value = value.detach().to(torch.float32)
        module, param = key.rsplit(".", 1)
        if module.startswith("prelu"):
            # burn::nn::PRelu calls its per-channel slopes `alpha`.
            param = "alpha"
        elif module.startswith("dense") and param == "weight":
            # burn::nn::Linear stores [in, out]; nn.Linear stores [out, in].
            value = value.t()
        out[f"{module}.{param}"] = value.contiguous()
    return out


def convert_weights() -> Dict[str, str]:
    ASSETS.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for name in NETS:
        source = PACKAGE_DATA / f"{name}.pt"
        hashes[name] = sha256(source)
        state = torch.load(source, map_location="cpu", weights_only=True)
        tensors = burn_state_dict(state)
        save_file(
            tensors,
            str(ASSETS / f"mtcnn_{name}.safetensors"),
            # One key: safetensors writes its metadata map in no fixed order.
            metadata={
                "source": f"facenet-pytorch {facenet_pytorch_version()} facenet_pytorch/data/{name}.pt "
                f"(sha256 {hashes[name]}), in Burn's layout: PRelu weight as alpha, Linear weight as [in, out]",
            },
        )
        print(f"{name}: {len(tensors)} tensors, {sum(t.numel() for t in tensors.values())} values")
    return hashes


def facenet_pytorch_version() -> str:
    return metadata.version("facenet-pytorch")


def write_license(hashes: Dict[str, str]) -> None:
    dist = metadata.distribution("facenet-pytorch")
    licence = next(
        Path(dist.locate_file(f)).read_text()
        for f in dist.files
        if f.name.upper().startswith("LICENSE")
    )
    lines = [
        "The MTCNN weights in this directory (mtcnn_pnet/rnet/onet.safetensors) are the",
        "state dicts facenet-pytorch ships, converted to Burn's layout by",
        "reference/mtcnn_convert.py (names and transposes only; the values are unchanged).",
        "",
        f"Package:  facenet-pytorch {facenet_pytorch_version()} (PyPI; https://github.com/timesler/facenet-pytorch)",
    ]
    for name, digest in hashes.items():
        lines.append(f"sha256 of facenet_pytorch/data/{name}.pt: {digest}")
    lines += [
        "",
        "Origin: facenet-pytorch's README says its parameters were ported from David",
        "Sandberg's TensorFlow facenet (https://github.com/davidsandberg/facenet, MIT,",
        "Copyright (c) 2016 David Sandberg), whose src/align/det1.npy, det2.npy, det3.npy and",
        "detect_face.py are a TensorFlow implementation of the MTCNN of",
        "https://github.com/kpzhang93/MTCNN_face_detection_alignment: K. Zhang, Z. Zhang,",
        "Z. Li and Y. Qiao, Joint Face Detection and Alignment Using Multitask Cascaded",
        "Convolutional Networks, IEEE Signal Processing Letters, 2016.",
        "",
        "facenet-pytorch's licence (from its dist-info LICENSE.md):",
        "",
        licence.rstrip(),
        "",
    ]
    (ASSETS / "MTCNN.LICENSE").write_text("\n".join(lines))


def normalise(x: torch.Tensor) -> torch.Tensor:
    """facenet-pytorch's input normalisation (detect_face.py)."""
    return (x - 127.5) * 0.0078125


def image_tensor(img: np.ndarray) -> torch.Tensor:
    """HWC uint8 -> 1x3xHxW float32, as detect_face does (a channels-last view)."""
    return torch.as_tensor(img.copy()).unsqueeze(0).permute(0, 3, 1, 2).float()


def crops(img: torch.Tensor, boxes: List[List[int]], size: int) -> torch.Tensor:
    """`imgs[:, :, y1:y2, x1:x2]` area-resized to size x size, as detect_face's stages 2/3."""
    out = [interpolate(img[:, :, y1:y2, x1:x2], size=(size, size), mode="area") for x1, y1, x2, y2 in boxes]
    return torch.cat(out, dim=0)


def net_fixtures(photo: np.ndarray, faces: List[List[float]]) -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(2016)
    img = image_tensor(photo)
    h, w = photo.shape[:2]
    face_boxes = [[max(int(v), 0) for v in b] for b in faces[:6]]
    # Windows that hold no face: the photo's top corners and its floor.
    rng = np.random.default_rng(1927)
    background = []
    for _ in range(3):
        side = int(rng.integers(30, 120))
        x1 = int(rng.integers(0, w - side))
        y1 = int(rng.integers(0, 150))
        background.append([x1, y1, x1 + side, y1 + side])
    # An oblong window, as pad() produces at the border.
    background.append([0, h - 90, 41, h])

    # P-Net: a 40x57 window of the pyramid level where the second face (the first is a
    # doubtful 0.8) is ~14 px wide, so the face probability map holds both faces and
    # background; and uniform noise.
    fx1, fy1, fx2, fy2 = faces[1][:4]
    scale = 14.0 / (fx2 - fx1)
    level = interpolate(img, size=(int(h * scale + 1), int(w * scale + 1)), mode="area")
    cy, cx = int((fy1 + fy2) / 2 * scale), int((fx1 + fx2) / 2 * scale)
    y0, x0 = max(cy - 20, 0), max(cx - 28, 0)
    real = level[:, :, y0 : y0 + 40, x0 : x0 + 57]
    assert real.shape[2:] == (40, 57), real.shape
    noise = torch.rand(1, 3, 40, 57, generator=gen) * 255.0
    pnet_in = normalise(torch.cat([real, noise.floor()], dim=0)).contiguous()

    rnet_in = normalise(
        torch.cat([crops(img, face_boxes + background, 24), (torch.rand(1, 3, 24, 24, generator=gen) * 255).floor()])
    ).contiguous()
    onet_in = normalise(
        torch.cat([crops(img, face_boxes + background, 48), (torch.rand(1, 3, 48, 48, generator=gen) * 255).floor()])
    ).contiguous()

    with torch.no_grad():
        pnet, rnet, onet = PNet().eval(), RNet().eval(), ONet().eval()
        reg, prob = pnet(pnet_in)
        save_file({"input": pnet_in, "reg": reg.contiguous(), "prob": prob.contiguous()}, str(FIXTURES / "pnet.io.safetensors"))
        reg, prob = rnet(rnet_in)
        save_file({"input": rnet_in, "reg": reg.contiguous(), "prob": prob.contiguous()}, str(FIXTURES / "rnet.io.safetensors"))
        reg, landmarks, prob = onet(onet_in)
        save_file(
            {"input": onet_in, "reg": reg.contiguous(), "landmarks": landmarks.contiguous(), "prob": prob.contiguous()},
            str(FIXTURES / "onet.io.safetensors"),
        )
    print(f"net fixtures: pnet {tuple(pnet_in.shape)}, rnet {tuple(rnet_in.shape)}, onet {tuple(onet_in.shape)}")


def load_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def photos() -> Dict[str, np.ndarray]:
    astronaut = PHOTOS / "astronaut.png"
    if not astronaut.exists():
        import skimage.data

        Image.fromarray(skimage.data.astronaut()).save(astronaut)
    images = {
        "solvay_1927.png": load_rgb(PHOTOS / "solvay_1927.png"),
        "astronaut.png": load_rgb(astronaut),
    }
    for name, (photo, (x0, y0, cw, ch)) in CROPS.items():
        images[name] = np.ascontiguousarray(images[photo][y0 : y0 + ch, x0 : x0 + cw])
    return images


def detect(mtcnn: MTCNN, img: np.ndarray):
    return mtcnn.detect(Image.fromarray(img), landmarks=True)


def detections(mtcnn: MTCNN, images: Dict[str, np.ndarray]) -> Dict[str, List[List[float]]]:
    cases = []
    for name, img in images.items():
        boxes, probs, points = detect(mtcnn, img)
        faces = []
        if boxes is not None:
            for box, prob, pts in zip(boxes, probs, points):
                faces.append(
                    {
                        "box": [float(v) for v in box],
                        "prob": float(prob),
                        "landmarks": [[float(x), float(y)] for x, y in pts],
                    }
                )
        case = {"image": name, "width": int(img.shape[1]), "height": int(img.shape[0]), "faces": faces}
        if name in CROPS:
            case["crop"] = dict(zip(["x", "y", "width", "height"], CROPS[name][1]))
        cases.append(case)
        print(f"{name}: {len(faces)} faces")
    doc = {
        "generator": "reference/mtcnn_convert.py",
        "facenet_pytorch": facenet_pytorch_version(),
        "torch": torch.__version__,
        "call": "MTCNN(keep_all=True).detect(PIL RGB image, landmarks=True); defaults min_face_size=20, thresholds=[0.6, 0.7, 0.7], factor=0.709",
        "order": "as detect returns them: largest box area first (select_largest=True)",
        "box": "x1, y1, x2, y2 in pixels",
        "landmarks": "left eye, right eye, nose, mouth left, mouth right (image left/right), x, y",
        "cases": cases,
    }
    (FIXTURES / "detections.json").write_text(json.dumps(doc, indent=1) + "\n")
    return {c["image"]: [f["box"] for f in c["faces"]] for c in cases}


def timings(mtcnn: MTCNN, images: Dict[str, np.ndarray], runs: int = 7) -> None:
    torch.set_num_threads(2)
    for name, img in images.items():
        if name.endswith("@border"):
            continue
        pil = Image.fromarray(img)
        mtcnn.detect(pil, landmarks=True)  # warm-up
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            mtcnn.detect(pil, landmarks=True)
            times.append(time.perf_counter() - start)
        print(
            f"time {name}: median {statistics.median(times) * 1000:.1f} ms "
            f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}, {runs} runs, 2 threads)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--time", action="store_true", help="also time facenet-pytorch's detection")
    args = parser.parse_args()

    torch.manual_seed(0)
    hashes = convert_weights()
    write_license(hashes)
    mtcnn = MTCNN(keep_all=True, device=torch.device("cpu"))
    images = photos()
    boxes = detections(mtcnn, images)
    net_fixtures(images["solvay_1927.png"], boxes["solvay_1927.png"])
    if args.time:
        timings(mtcnn, images)


if __name__ == "__main__":
    main()
