"""Write the parity fixtures of MODEL.md "Parity with PyTorch" under `tests/fixtures/`.

Deterministic (one fixed seed per case). Run from anywhere:
    reference/.venv/bin/python reference/make_fixtures.py

Per case `<case>.weights.safetensors` (the module's `state_dict()`, taken before the train-mode
forward) and `<case>.io.safetensors` (input, eval_out, train_out, target/probe, loss,
grad.<param>, running.<bn>.running_mean/var after one train-mode forward). Results are
computed in float64 from the float32 weights and stored as float32. Also `counts.json`
and the torchvision import fixture under `tests/fixtures/import/`.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from efea_msm import (  # noqa: E402
    AFF,
    EfeaConfig,
    EfeaMsm,
    InvertedResidual,
    SubspaceAttention,
    TripletAttention,
    bias_before_bn,
    count_params_and_macs,
    init_weights,
)

ROOT = Path(__file__).resolve().parent.parent
PARITY_DIR = ROOT / "tests" / "fixtures" / "parity"
IMPORT_DIR = ROOT / "tests" / "fixtures" / "import"
SIZE_LIMIT_BYTES = 12_000_000

# BNs whose running stats are recorded in network cases (stem, inside a block, inside a CDSM,
# MSCA lateral, inside AFFs, last conv).
NET_FULL_BNS = [
    "features.0.1",
    "features.5.conv.1.1",
    "features.3.cdsm.triplet.cw.bn",
    "features.3.cdsm.subspace.groups.1.pw_bn",
    "msca.lateral.0.bn",
    "msca.fuse.0.local_att.bn1",
    "msca.fuse.1.global_att.bn2",
    "features.18.1",
]
NET_PLAIN_BNS = [
    "features.0.1",
    "features.1.conv.0.1",
    "features.5.conv.1.1",
    "features.10.conv.0.1",
    "features.17.conv.3",
    "features.18.1",
]
NET_W035_GRADS = [
    "features.0.0.weight",
    "features.0.1.weight",
    "features.1.conv.0.0.weight",
    "features.3.conv.1.0.weight",
    "features.3.cdsm.triplet.cw.conv.weight",
    "features.3.cdsm.subspace.groups.1.pw.weight",
    "features.17.conv.2.weight",
    "features.18.0.weight",
    "features.18.1.bias",
    "msca.lateral.0.conv.weight",
    "msca.fuse.0.local_att.conv1.weight",
    "msca.fuse.1.global_att.bn2.weight",
    "classifier.weight",
    "classifier.bias",
]
NET_PLAIN_GRADS = [
    "features.0.0.weight",
    "features.0.1.weight",
    "features.5.conv.1.0.weight",
    "features.5.conv.1.1.bias",
    # Last conv by its BN only: features.18.0.weight's gradient (0.57 MB) is in net_w035.
    "features.18.1.weight",
    "features.18.1.bias",
    "classifier.weight",
    "classifier.bias",
]
# net_full keeps only small gradients: its weights alone take most of the size budget.
NET_FULL_GRADS = [
    "features.0.0.weight",
    "features.3.cdsm.triplet.hc.conv.weight",
    "features.18.1.bias",
    "msca.fuse.1.global_att.bn2.weight",
    "classifier.bias",
]


def randomise(module: nn.Module, generator: torch.Generator) -> None:
    """Move BN affine parameters, running stats and conv/linear biases away from their
    init values, so that eval mode and biases are really exercised."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=generator) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=generator) + 0.5)
            elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=generator) * 0.1)


def round_to_half(module: nn.Module) -> None:
    """Make every float weight and running stat exactly representable in float16."""
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            if t.is_floating_point():
                t.copy_(t.half().float())


def kinked_bns(module: nn.Module) -> Dict[str, Sequence[float]]:
    """The BNs whose output goes straight into a ReLU6 (kinks at 0 and 6) or a ReLU (kink at
    0), by name: conv_bn_relu6's `Sequential(conv, BN, ReLU6)`, ULSAM's `dw_bn`/`pw_bn`, MSCA's
    lateral `bn` and each MS-CAM branch's `bn1`."""
    kinks: Dict[str, Sequence[float]] = {}
    for name, m in module.named_modules():
        children = list(m.children())
        if (
            isinstance(m, nn.Sequential)
            and len(children) == 3
            and isinstance(children[1], nn.BatchNorm2d)
            and isinstance(children[2], nn.ReLU6)
        ):
            kinks[f"{name}.1"] = (0.0, 6.0)
    for name, m in module.named_modules():
        if isinstance(m, nn.BatchNorm2d) and name.rsplit(".", 1)[-1] in ("dw_bn", "pw_bn", "bn1"):
            kinks[name] = (0.0,)
        elif isinstance(m, nn.BatchNorm2d) and ".lateral." in name:
            kinks[name] = (0.0,)
    return kinks


def widest_shift(values: torch.Tensor, kinks: Sequence[float], reach: float) -> float:
    """The shift `s` in `[-reach, reach]` that puts every value of `values + s` as far as it
    can be from every kink: the middle of the widest gap between the shifts that land some
    value on some kink."""
    hits = torch.cat([k - values for k in kinks])
    hits = hits[(hits > -reach) & (hits < reach)]
    points = torch.sort(torch.cat([hits, torch.tensor([-reach, reach], dtype=hits.dtype)]))[0]
    gaps = points[1:] - points[:-1]
    i = int(torch.argmax(gaps))
    return float((points[i] + points[i + 1]) / 2)


def keep_off_kinks(model: nn.Module, x: torch.Tensor, dtype: torch.dtype) -> Dict[str, float]:
    """Shift the beta of every BN that feeds a ReLU or ReLU6, channel by channel, so that in
    the train-mode forward of `x` no activation input sits near a kink.

    A ReLU6 input within float32 round-off of 0 or 6 passes its gradient on one backend and
    not on another; a train-mode BN over the few positions of a deep layer then spreads that
    one difference over its channel (one such input of `features.18` moved the stem's gradient
    by 8 % on wgpu). Betas are moved by at most 0.1 (they are drawn as 0.1 * randn) to
    representable values of `dtype`, in forward order within one float64 pass (each hook
    shifts its output by what it added to beta, so later layers see the final values).
    Returns each BN's smallest distance to a kink, measured in a second pass.
    """
    kinks = kinked_bns(model)
    modules = dict(model.named_modules())
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    wide = copy.deepcopy(model).double().train()
    wide_modules = dict(wide.named_modules())
    shifts: Dict[str, torch.Tensor] = {}

    def shift_hook(name: str):
        def hook(bn: nn.Module, _inputs, out: torch.Tensor) -> torch.Tensor:
            beta = modules[name].bias.detach()
            moved = beta.clone()
            for c in range(out.shape[1]):
                s = widest_shift(out[:, c].flatten(), kinks[name], reach=0.1)
                moved[c] = (beta[c].double() + s).to(dtype).to(beta.dtype)
            delta = (moved - beta).double()
            shifts[name] = moved
            return out + delta.view(1, -1, 1, 1)

        return hook

    margins: Dict[str, float] = {}

    def margin_hook(name: str):
        def hook(_bn: nn.Module, _inputs, out: torch.Tensor) -> None:
            margins[name] = min(float((out - k).abs().min()) for k in kinks[name])

        return hook

    with torch.no_grad():
        handles = [wide_modules[n].register_forward_hook(shift_hook(n)) for n in kinks]
        wide(x.double())
        for h in handles:
            h.remove()
        model.load_state_dict(saved)
        for name, beta in shifts.items():
            modules[name].bias.copy_(beta)
        check = copy.deepcopy(model).double().train()
        check_modules = dict(check.named_modules())
        handles = [check_modules[n].register_forward_hook(margin_hook(n)) for n in kinks]
        check(x.double())
        for h in handles:
            h.remove()
    return margins


def bn_names(module: nn.Module) -> List[str]:
    return [n for n, m in module.named_modules() if isinstance(m, nn.BatchNorm2d)]


def save(tensors: Dict[str, torch.Tensor], path: Path, metadata: Dict[str, str]) -> None:
    # One metadata key holding sorted JSON: safetensors writes several keys in hash order,
    # which would make the bytes differ from run to run.
    header = {"fixture": json.dumps(metadata, sort_keys=True)}
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(path), header)


def write_case(
    case: str,
    module: nn.Module,
    inputs: Dict[str, torch.Tensor],
    run: Callable[..., torch.Tensor],
    *,
    target: Optional[torch.Tensor] = None,
    grad_names: Optional[Sequence[str]] = None,
    running_bns: Optional[Sequence[str]] = None,
    seed: int,
    weights_dtype: torch.dtype = torch.float32,
    description: str = "",
) -> None:
    """Compute eval_out, then one train-mode forward/backward, and write both files.

    `run(module, **inputs)` gives the output. With `target` the loss is cross entropy,
    otherwise `(train_out * probe).mean()` with a random probe.
    """
    generator = torch.Generator().manual_seed(seed + 1)
    weights = {
        k: (v.to(weights_dtype) if v.is_floating_point() else v).clone()
        for k, v in module.state_dict().items()
    }

    # The float32 weights and inputs are computed on in float64, so the stored float32 results
    # are the exact answer rounded once, not one particular float32 summation order.
    module.double()
    wide = {k: v.double() for k, v in inputs.items()}

    module.eval()
    with torch.no_grad():
        eval_out = run(module, **wide)

    module.train()
    module.zero_grad(set_to_none=True)
    train_out = run(module, **wide)
    io: Dict[str, torch.Tensor] = dict(inputs)
    if target is not None:
        loss = F.cross_entropy(train_out, target)
        io["target"] = target
    else:
        probe = torch.randn(train_out.shape, generator=generator)
        loss = (train_out * probe.double()).mean()
        io["probe"] = probe
    loss.backward()

    io["eval_out"] = eval_out
    io["train_out"] = train_out
    io["loss"] = loss.reshape(1)
    params = dict(module.named_parameters())
    for name in grad_names if grad_names is not None else params:
        grad = params[name].grad
        assert grad is not None, f"{case}: no gradient for {name}"
        io[f"grad.{name}"] = grad
    modules = dict(module.named_modules())
    for name in running_bns if running_bns is not None else bn_names(module):
        bn = modules[name]
        assert isinstance(bn, nn.BatchNorm2d), f"{case}: {name} is not a BN"
        io[f"running.{name}.running_mean"] = bn.running_mean
        io[f"running.{name}.running_var"] = bn.running_var

    io = {k: (v.float() if v.is_floating_point() else v) for k, v in io.items()}
    metadata = {"case": case, "description": description, "seed": str(seed)}
    # Gradients that are zero in exact arithmetic (stored values are rounding noise): compare
    # them with an absolute tolerance only.
    metadata["grad_zero_in_exact_arithmetic"] = ",".join(
        k for k in io if k.startswith("grad.") and bias_before_bn(k[len("grad."):])
    )
    save(weights, PARITY_DIR / f"{case}.weights.safetensors", metadata)
    save(io, PARITY_DIR / f"{case}.io.safetensors", metadata)


def block_case(
    case: str, build: Callable[[], nn.Module], input_shape, seed: int, description: str
) -> None:
    torch.manual_seed(seed)  # PyTorch's default layer init draws from the global generator.
    module = build()
    init_weights(module)
    generator = torch.Generator().manual_seed(seed)
    randomise(module, generator)
    x = torch.randn(input_shape, generator=generator)
    write_case(
        case, module, {"input": x}, lambda m, input: m(input), seed=seed, description=description
    )


def net_case(
    case: str,
    config: EfeaConfig,
    batch: int,
    seed: int,
    grad_names: Sequence[str],
    running_bns: Sequence[str],
    half: bool = False,
) -> None:
    torch.manual_seed(seed)  # Kaiming / normal init draws from the global generator.
    model = EfeaMsm(config)
    generator = torch.Generator().manual_seed(seed)
    randomise(model, generator)
    if half:
        round_to_half(model)
    shape = (batch, config.in_channels, config.input_size, config.input_size)
    x = torch.randn(shape, generator=generator)
    margins = keep_off_kinks(model, x, torch.float16 if half else torch.float32)
    closest = sorted(margins.items(), key=lambda kv: kv[1])[:3]
    print(f"{case}: nearest activation inputs to a kink: " + ", ".join(
        f"{n} {m:.1e}" for n, m in closest))
    target = torch.randint(0, config.num_classes, (batch,), generator=generator)
    write_case(
        case,
        model,
        {"input": x},
        lambda m, input: m(input),
        target=target,
        grad_names=grad_names,
        running_bns=running_bns,
        seed=seed,
        weights_dtype=torch.float16 if half else torch.float32,
        description="EfeaConfig " + json.dumps(config.to_dict()),
    )


def write_counts() -> dict:
    counts: dict = {}
    for size in (48, 96):
        counts[str(size)] = {}
        for preset in EfeaConfig.PRESETS:
            config = EfeaConfig.preset(preset, input_size=size)
            model = EfeaMsm(config)
            counts[str(size)][preset] = count_params_and_macs(model, size, config.in_channels)
    (PARITY_DIR / "counts.json").write_text(json.dumps(counts, indent=2) + "\n")
    return counts


def write_import_fixture() -> None:
    """A real torchvision state dict in torch's zip format, plus values to check it by."""
    torch.manual_seed(1234)
    tv = torchvision.models.mobilenet_v2(weights=None, width_mult=0.35, num_classes=10)
    sd = tv.state_dict()
    torch.save(sd, IMPORT_DIR / "torchvision_mobilenet_v2_w035.pth")
    keys = ["features.0.0.weight", "features.5.conv.1.0.weight", "features.18.1.running_var"]
    summary = {
        "source": "torchvision.models.mobilenet_v2(weights=None, width_mult=0.35, num_classes=10)"
        f", torch.manual_seed(1234), torchvision {torchvision.__version__}",
        "num_keys": len(sd),
        "tensors": {
            k: {"shape": list(sd[k].shape), "sum": float(sd[k].double().sum())} for k in keys
        },
        "stem_weight_sum_over_in_channels": {
            "shape": list(sd["features.0.0.weight"].sum(dim=1, keepdim=True).shape),
            "values": [float(v) for v in sd["features.0.0.weight"].sum(dim=1, keepdim=True).flatten()],
        },
    }
    (IMPORT_DIR / "torchvision_mobilenet_v2_w035.json").write_text(json.dumps(summary, indent=2) + "\n")


def main() -> None:
    PARITY_DIR.mkdir(parents=True, exist_ok=True)
    IMPORT_DIR.mkdir(parents=True, exist_ok=True)

    block_case(
        "inverted_residual",
        lambda: InvertedResidual(24, 24, stride=1, expand_ratio=6, cdsm_groups=4),
        (2, 24, 12, 10),
        seed=101,
        description="InvertedResidual(24, 24, stride=1, t=6) with CDSM (groups 4)",
    )
    block_case(
        "inverted_residual_s2",
        lambda: InvertedResidual(16, 24, stride=2, expand_ratio=6),
        (2, 16, 12, 10),
        seed=102,
        description="InvertedResidual(16, 24, stride=2, t=6), no CDSM",
    )
    block_case(
        "triplet_attention", lambda: TripletAttention(), (2, 16, 10, 12), seed=103,
        description="TripletAttention",
    )
    block_case(
        "subspace_attention", lambda: SubspaceAttention(24, 4), (2, 24, 10, 12), seed=104,
        description="SubspaceAttention(C=24, groups=4): 4 groups of 6",
    )
    block_case(
        "subspace_attention_c18", lambda: SubspaceAttention(18, 4), (2, 18, 6, 7), seed=105,
        description="SubspaceAttention(C=18, groups=4): 3 groups of 6",
    )

    # AFF takes two inputs.
    seed = 106
    torch.manual_seed(seed)
    aff = AFF(16, 4)
    init_weights(aff)
    generator = torch.Generator().manual_seed(seed)
    randomise(aff, generator)
    x = torch.randn(2, 16, 5, 6, generator=generator)
    y = torch.randn(2, 16, 5, 6, generator=generator)
    write_case(
        "aff", aff, {"input_x": x, "input_y": y}, lambda m, input_x, input_y: m(input_x, input_y),
        seed=seed, description="AFF(D=16, r=4)",
    )

    net_case(
        "net_w035",
        EfeaConfig.preset("full", width_mult=0.35, dropout=0.0),
        batch=4, seed=201, grad_names=NET_W035_GRADS, running_bns=NET_FULL_BNS,
    )
    net_case(
        "net_plain_w035",
        EfeaConfig.preset("plain", width_mult=0.35, dropout=0.0),
        batch=4, seed=202, grad_names=NET_PLAIN_GRADS, running_bns=NET_PLAIN_BNS,
    )
    net_case(
        "net_full",
        EfeaConfig.preset("full", dropout=0.0),
        batch=2, seed=203, grad_names=NET_FULL_GRADS, running_bns=NET_FULL_BNS, half=True,
    )

    counts = write_counts()
    write_import_fixture()

    total = 0
    for directory in (PARITY_DIR, IMPORT_DIR):
        for path in sorted(directory.iterdir()):
            size = path.stat().st_size
            total += size
            print(f"{size:>10}  {path.relative_to(ROOT)}")
    print(f"{total:>10}  total ({total / 2**20:.2f} MiB)")
    print(json.dumps(counts))
    if total > SIZE_LIMIT_BYTES:
        raise SystemExit(f"fixtures take {total} bytes, over the {SIZE_LIMIT_BYTES} budget")


if __name__ == "__main__":
    main()
