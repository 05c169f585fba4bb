"""Checks of the PyTorch reference (MODEL.md) and of the fixtures it wrote.

    reference/.venv/bin/python -m pytest reference/test_reference.py
    reference/.venv/bin/python reference/test_reference.py      # without pytest
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from efea_msm import (  # noqa: E402
    AFF,
    CDSM,
    MSCA,
    EfeaConfig,
    EfeaMsm,
    InvertedResidual,
    SubspaceAttention,
    TripletAttention,
    bias_before_bn,
    count_params_and_macs,
    default_cdsm_blocks,
)

ROOT = Path(__file__).resolve().parent.parent
PARITY_DIR = ROOT / "tests" / "fixtures" / "parity"
IMPORT_DIR = ROOT / "tests" / "fixtures" / "import"


def test_module_shapes():
    x = torch.randn(2, 24, 12, 10)
    assert TripletAttention()(x).shape == x.shape
    assert SubspaceAttention(24, 4)(x).shape == x.shape
    assert len(SubspaceAttention(18, 4).groups) == 3
    assert len(SubspaceAttention(7, 4).groups) == 1
    assert CDSM(24, 4)(x).shape == x.shape
    assert InvertedResidual(24, 24, 1, 6, cdsm_groups=4)(x).shape == x.shape
    assert InvertedResidual(24, 32, 2, 6)(x).shape == (2, 32, 6, 5)
    assert InvertedResidual(24, 16, 1, 1)(x).shape == (2, 16, 12, 10)
    y = torch.randn(2, 16, 5, 6)
    assert AFF(16, 4)(y, y).shape == y.shape
    taps = [torch.randn(2, 32, 12, 12), torch.randn(2, 96, 6, 6), torch.randn(2, 320, 3, 3)]
    assert MSCA([32, 96, 320])(taps).shape == (2, 128)


def test_network_shapes_and_presets():
    for preset in EfeaConfig.PRESETS:
        model = EfeaMsm(EfeaConfig.preset(preset)).eval()
        x = torch.randn(2, 1, 48, 48)
        last, taps = model.forward_features(x)
        assert last.shape == (2, 1280, 3, 3)
        assert [t.shape for t in taps] == [(2, 32, 12, 12), (2, 96, 6, 6), (2, 320, 3, 3)]
        logits = model.forward_head(last, taps)
        assert logits.shape == (2, 7)
        assert torch.isfinite(logits).all()
        has_cdsm = [i for i, b in enumerate(model.features) if getattr(b, "cdsm", None) is not None]
        assert has_cdsm == ([] if preset in ("plain", "msca") else default_cdsm_blocks())
        assert (model.msca is not None) == (preset in ("msca", "full"))
    assert default_cdsm_blocks() == [3, 6, 10, 13, 16, 17]
    # 96 x 96 gets a stride 2 stem, so the maps have the same size as at 48.
    model = EfeaMsm(EfeaConfig(input_size=96)).eval()
    assert model.forward_features(torch.randn(1, 1, 96, 96))[0].shape == (1, 1280, 3, 3)


def test_gradient_reaches_every_parameter():
    model = EfeaMsm(EfeaConfig.preset("full", width_mult=0.35)).train()
    loss = F.cross_entropy(model(torch.randn(2, 1, 48, 48)), torch.tensor([0, 3]))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    # A conv bias that feeds a train-mode BN is cancelled by the batch mean, and the subspace
    # softmax is blind to pw_bn.bias except where the ReLU before it clips: both may get a zero
    # gradient. Every other parameter must get a non-zero one.
    dead = [
        n for n, p in model.named_parameters()
        if p.grad.abs().sum() == 0 and not bias_before_bn(n) and not n.endswith("pw_bn.bias")
    ]
    assert not dead, dead


def test_param_count_matches_counts_json():
    counts = json.loads((PARITY_DIR / "counts.json").read_text())
    for size in ("48", "96"):
        for preset in EfeaConfig.PRESETS:
            model = EfeaMsm(EfeaConfig.preset(preset, input_size=int(size)))
            assert count_params_and_macs(model, int(size), 1) == counts[size][preset]
    full = EfeaMsm(EfeaConfig())
    assert sum(p.numel() for p in full.parameters()) == counts["48"]["full"]["params"]


def test_torchvision_backbone_names_and_values():
    tv = torchvision.models.mobilenet_v2(weights=None, width_mult=1.0).eval()
    ours = EfeaMsm(EfeaConfig(in_channels=3, input_size=224)).eval()
    tv_sd, our_sd = tv.state_dict(), ours.state_dict()
    backbone = {k: v for k, v in tv_sd.items() if k.startswith("features.")}
    assert len(backbone) > 300
    for k, v in backbone.items():
        assert k in our_sd, k
        assert our_sd[k].shape == v.shape, k
    # With CDSM off, the loaded backbone computes exactly torchvision's features.
    plain = EfeaMsm(EfeaConfig.preset("plain", in_channels=3, input_size=224)).eval()
    missing, unexpected = plain.load_state_dict(backbone, strict=False)
    assert not unexpected and set(missing) == {"classifier.weight", "classifier.bias"}
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(plain.forward_features(x)[0], tv.features(x))


def _rebuild(case: str):
    """Module and runner for a fixture case, built exactly as make_fixtures.py builds it."""
    one = lambda m, io: m(io["input"])  # noqa: E731
    if case == "inverted_residual":
        return InvertedResidual(24, 24, 1, 6, cdsm_groups=4), one
    if case == "inverted_residual_s2":
        return InvertedResidual(16, 24, 2, 6), one
    if case == "triplet_attention":
        return TripletAttention(), one
    if case == "subspace_attention":
        return SubspaceAttention(24, 4), one
    if case == "subspace_attention_c18":
        return SubspaceAttention(18, 4), one
    if case == "aff":
        return AFF(16, 4), lambda m, io: m(io["input_x"], io["input_y"])
    if case == "net_w035":
        return EfeaMsm(EfeaConfig.preset("full", width_mult=0.35, dropout=0.0)), one
    if case == "net_plain_w035":
        return EfeaMsm(EfeaConfig.preset("plain", width_mult=0.35, dropout=0.0)), one
    if case == "net_full":
        return EfeaMsm(EfeaConfig.preset("full", dropout=0.0)), one
    raise KeyError(case)


BLOCK_CASES = [
    "inverted_residual", "inverted_residual_s2", "triplet_attention", "subspace_attention",
    "subspace_attention_c18", "aff",
]
CASES = BLOCK_CASES + ["net_w035", "net_plain_w035", "net_full"]


def test_fixtures_reload_and_reproduce():
    """The weights files alone reproduce eval_out, train_out, loss, gradients, running stats.

    make_fixtures.py computes in float64, so this does too and the match is to float32
    rounding."""
    for case in CASES:
        module, run = _rebuild(case)
        weights = load_file(str(PARITY_DIR / f"{case}.weights.safetensors"))
        io = load_file(str(PARITY_DIR / f"{case}.io.safetensors"))
        assert set(weights) == set(module.state_dict()), case
        module.load_state_dict({k: v.to(module.state_dict()[k].dtype) for k, v in weights.items()})
        module.double()
        wide = {k: v.double() if v.is_floating_point() else v for k, v in io.items()}
        close = dict(atol=1e-6, rtol=1e-5)
        module.eval()
        with torch.no_grad():
            torch.testing.assert_close(run(module, wide).float(), io["eval_out"], **close)
        module.train()
        out = run(module, wide)
        torch.testing.assert_close(out.float(), io["train_out"], **close)
        if "target" in io:
            loss = F.cross_entropy(out, io["target"])
        else:
            loss = (out * wide["probe"]).mean()
        torch.testing.assert_close(loss.reshape(1).float(), io["loss"], **close)
        loss.backward()
        params = dict(module.named_parameters())
        modules = dict(module.named_modules())
        grads = [k for k in io if k.startswith("grad.")]
        assert grads, case
        for k in grads:
            grad = params[k[len("grad."):]].grad.float()
            torch.testing.assert_close(grad, io[k], atol=1e-7, rtol=1e-5)
            if not bias_before_bn(k[len("grad."):]):
                assert io[k].abs().max() > 1e-9, f"{case}: {k} is zero, it tests nothing"
        running = [k for k in io if k.startswith("running.")]
        bns = [n for n, m in modules.items() if isinstance(m, torch.nn.BatchNorm2d)]
        if case in BLOCK_CASES:
            assert len(running) == 2 * len(bns), case
        else:
            assert len(running) >= 12, case
        for k in running:
            name, stat = k[len("running."):].rsplit(".", 1)
            torch.testing.assert_close(getattr(modules[name], stat).float(), io[k], **close)
        assert torch.isfinite(io["eval_out"]).all() and torch.isfinite(io["train_out"]).all()
        # Eval and train mode must really differ, or the fixture tests nothing.
        assert (io["eval_out"] - io["train_out"]).abs().max() > 1e-3, case


def test_network_fixtures_keep_activations_off_the_kinks():
    """In the network cases' train-mode forward, no input of a ReLU or ReLU6 lies within
    1e-4 of a kink, so every backend's float32 round-off passes or stops the same gradients
    (make_fixtures.keep_off_kinks; on wgpu one such input moved the stem's gradient by 8 %)."""
    from make_fixtures import kinked_bns

    for case in ["net_w035", "net_plain_w035", "net_full"]:
        module, run = _rebuild(case)
        weights = load_file(str(PARITY_DIR / f"{case}.weights.safetensors"))
        io = load_file(str(PARITY_DIR / f"{case}.io.safetensors"))
        module.load_state_dict({k: v.to(module.state_dict()[k].dtype) for k, v in weights.items()})
        module.double().train()
        kinks = kinked_bns(module)
        assert len(kinks) > 30, case
        nearest = {}
        modules = dict(module.named_modules())
        for name, points in kinks.items():
            modules[name].register_forward_hook(
                lambda _m, _i, out, name=name, points=points: nearest.__setitem__(
                    name, min(float((out - k).abs().min()) for k in points)
                )
            )
        with torch.no_grad():
            run(module, {"input": io["input"].double()})
        assert set(nearest) == set(kinks), case
        worst = min(nearest, key=nearest.get)
        assert nearest[worst] > 1e-4, f"{case}: {worst} has an input {nearest[worst]:.1e} from a kink"


def test_import_fixture():
    sd = torch.load(IMPORT_DIR / "torchvision_mobilenet_v2_w035.pth", weights_only=True)
    summary = json.loads((IMPORT_DIR / "torchvision_mobilenet_v2_w035.json").read_text())
    assert summary["num_keys"] == len(sd)
    for k, info in summary["tensors"].items():
        assert list(sd[k].shape) == info["shape"]
        assert abs(float(sd[k].double().sum()) - info["sum"]) < 1e-9
    stem = sd["features.0.0.weight"].sum(dim=1, keepdim=True)
    assert summary["stem_weight_sum_over_in_channels"]["values"] == [float(v) for v in stem.flatten()]
    # A torchvision w0.35 backbone loads into the grayscale reference once the stem is summed.
    model = EfeaMsm(EfeaConfig.preset("plain", width_mult=0.35))
    backbone = {k: v for k, v in sd.items() if k.startswith("features.")}
    backbone["features.0.0.weight"] = stem
    missing, unexpected = model.load_state_dict(backbone, strict=False)
    assert not unexpected and set(missing) == {"classifier.weight", "classifier.bias"}


if __name__ == "__main__":
    for name, fn in list(globals().items()):
        if name.startswith("test_") and callable(fn):
            fn()
            print("ok", name)
