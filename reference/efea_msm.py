"""PyTorch reference of the EFEA-MSM network defined in `docs/MODEL.md` of this repository.

A MobileNetV2 backbone (torchvision's layout and parameter names) with a cross-dimensional
space modulator (CDSM = triplet attention then ULSAM subspace attention) inside selected
inverted residual blocks, and a multi-scale channel aggregator (MSCA = lateral 1x1 convs and
two attentional feature fusion gates) whose pooled output is concatenated with the backbone's
pooled vector before the linear classifier.

Every section reference below ("MODEL.md: ...") names the heading of MODEL.md that the code
implements. Parameter names are part of the contract with the Rust port (`crates/efea-model`)
and with torchvision's `mobilenet_v2` state dict: do not rename attributes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

# MODEL.md "Backbone": stages 1..7 as (expansion t, out channels c, blocks n, first stride s).
# fmt: off
STAGES: Tuple[Tuple[int, int, int, int], ...] = (
    # t,   c,  n, s
    (1,  16, 1, 1),   # stage 1 -> features.1
    (6,  24, 2, 2),   # stage 2 -> features.2..3
    (6,  32, 3, 2),   # stage 3 -> features.4..6    (P3 tap)
    (6,  64, 4, 2),   # stage 4 -> features.7..10
    (6,  96, 3, 1),   # stage 5 -> features.11..13  (P5 tap)
    (6, 160, 3, 2),   # stage 6 -> features.14..16
    (6, 320, 1, 1),   # stage 7 -> features.17      (P7 tap)
)
# fmt: on
STEM_CHANNELS = 32
LAST_CHANNELS = 1280
ROUND_NEAREST = 8
# Stages whose output MSCA taps (MODEL.md "MSCA": P3, P5, P7).
MSCA_TAP_STAGES = (3, 5, 7)


def make_divisible(value: float, divisor: int = ROUND_NEAREST) -> int:
    """Round to the nearest multiple of `divisor`, never more than 10 % down.

    MODEL.md "Backbone": identical to torchvision's `_make_divisible`, so channel counts (and
    therefore torchvision weights) match one to one for every width multiplier.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def stage_last_block_indices() -> List[int]:
    """Global `features` index (1..17) of the last block of each stage 1..7."""
    indices, index = [], 0
    for _, _, n, _ in STAGES:
        index += n
        indices.append(index)
    return indices


def default_cdsm_blocks() -> List[int]:
    """MODEL.md "CDSM": the last block of stages 2..7, as `features` indices: [3, 6, 10, 13, 16, 17]."""
    return stage_last_block_indices()[1:]


def largest_divisor_at_most(channels: int, limit: int) -> int:
    """MODEL.md "CDSM" (U): if C % g != 0, use the largest divisor of C not above g."""
    return max(d for d in range(1, min(limit, channels) + 1) if channels % d == 0)


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass
class EfeaConfig:
    """Every hyper-parameter of MODEL.md, with its defaults ("full" preset).

    `stem_stride=None` means auto: 1 when `input_size < 96`, else 2 (MODEL.md "Backbone").
    `cdsm_blocks=None` means the default (last block of stages 2..7); otherwise global block
    indices 1..17 of `features`; `[]` turns CDSM off (MODEL.md "CDSM").
    """

    in_channels: int = 1
    num_classes: int = 7
    input_size: int = 48
    width_mult: float = 1.0
    stem_stride: Optional[int] = None
    cdsm_blocks: Optional[List[int]] = None
    cdsm_groups: int = 4
    msca: bool = True
    msca_channels: int = 128
    msca_reduction: int = 4
    dropout: float = 0.2

    PRESETS = ("plain", "cdsm", "msca", "full")

    @classmethod
    def preset(cls, name: str, **overrides) -> "EfeaConfig":
        """MODEL.md "Ablations": plain (MobileNetV2), cdsm only, msca only, full (default)."""
        if name == "plain":
            base = dict(cdsm_blocks=[], msca=False)
        elif name == "cdsm":
            base = dict(msca=False)
        elif name == "msca":
            base = dict(cdsm_blocks=[])
        elif name == "full":
            base = dict()
        else:
            raise ValueError(f"unknown preset {name!r}, expected one of {cls.PRESETS}")
        base.update(overrides)
        return cls(**base)

    def resolved_stem_stride(self) -> int:
        if self.stem_stride is not None:
            return self.stem_stride
        return 1 if self.input_size < 96 else 2

    def resolved_cdsm_blocks(self) -> List[int]:
        blocks = default_cdsm_blocks() if self.cdsm_blocks is None else list(self.cdsm_blocks)
        total = stage_last_block_indices()[-1]
        for b in blocks:
            if not 1 <= b <= total:
                raise ValueError(f"cdsm block index {b} outside 1..{total}")
        return blocks

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------
# CDSM: triplet attention (T) then subspace attention (U)
# --------------------------------------------------------------------------------------------


class AttentionGate(nn.Module):
    """MODEL.md "CDSM" (T): `G(y) = y * sigmoid(BN(conv7x7_{2->1}(ZPool(y))))`.

    ZPool concatenates [max over dim 1, mean over dim 1] in that order.
    """

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1)

    @staticmethod
    def zpool(y: torch.Tensor) -> torch.Tensor:
        return torch.cat([y.amax(dim=1, keepdim=True), y.mean(dim=1, keepdim=True)], dim=1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """# Shapes: [N, A, B, C] -> [N, A, B, C]"""
        return y * torch.sigmoid(self.bn(self.conv(self.zpool(y))))


class TripletAttention(nn.Module):
    """MODEL.md "CDSM" (T): `T(x) = (b1 + b2 + b3) / 3` over three rotated views of x.

    - `cw`: gate on x.permute(0,2,1,3) (pools over H, channels x width interact),
    - `hc`: gate on x.permute(0,3,2,1) (pools over W, height x channels interact),
    - `hw`: gate on x itself (pools over C, the spatial gate).
    """

    def __init__(self):
        super().__init__()
        self.cw = AttentionGate()
        self.hc = AttentionGate()
        self.hw = AttentionGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """# Shapes: [N, C, H, W] -> [N, C, H, W]"""
        b1 = self.cw(x.permute(0, 2, 1, 3)).permute(0, 2, 1, 3)
        b2 = self.hc(x.permute(0, 3, 2, 1)).permute(0, 3, 2, 1)
        b3 = self.hw(x)
        return (b1 + b2 + b3) / 3.0


class SubspaceGroup(nn.Module):
    """MODEL.md "CDSM" (U), one subspace y_k with c_g channels.

    `a = maxpool3x3(ReLU(BN(dw(y))))`, `m = softmax_HW(ReLU(BN(pw(a))))`, returns `y * m + y`.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.dw = nn.Conv2d(channels, channels, 1, groups=channels, bias=True)
        self.dw_bn = nn.BatchNorm2d(channels)
        self.pw = nn.Conv2d(channels, 1, 1, bias=True)
        self.pw_bn = nn.BatchNorm2d(1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """# Shapes: [N, c_g, H, W] -> [N, c_g, H, W]"""
        a = F.relu(self.dw_bn(self.dw(y)))
        a = F.max_pool2d(a, kernel_size=3, stride=1, padding=1)
        m = F.relu(self.pw_bn(self.pw(a)))
        # Softmax over all H*W positions of each sample.
        m = torch.softmax(m.flatten(1), dim=1).view_as(m)
        return y * m + y


class SubspaceAttention(nn.Module):
    """MODEL.md "CDSM" (U): ULSAM with g = largest divisor of C not above `groups`."""

    def __init__(self, channels: int, groups: int = 4):
        super().__init__()
        num_groups = largest_divisor_at_most(channels, groups)
        self.group_channels = channels // num_groups
        self.groups = nn.ModuleList(SubspaceGroup(self.group_channels) for _ in range(num_groups))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """# Shapes: [N, C, H, W] -> [N, C, H, W]"""
        chunks = torch.split(x, self.group_channels, dim=1)
        return torch.cat([group(y) for group, y in zip(self.groups, chunks)], dim=1)


class CDSM(nn.Module):
    """MODEL.md "CDSM": `CDSM(x) = U(T(x))`, shape preserving."""

    def __init__(self, channels: int, groups: int = 4):
        super().__init__()
        self.triplet = TripletAttention()
        self.subspace = SubspaceAttention(channels, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """# Shapes: [N, C, H, W] -> [N, C, H, W]"""
        return self.subspace(self.triplet(x))


# --------------------------------------------------------------------------------------------
# Backbone
# --------------------------------------------------------------------------------------------


def conv_bn_relu6(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """Conv (no bias) + BN + ReLU6; keys `0` (conv) and `1` (BN), as torchvision's
    `Conv2dNormActivation`."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=(kernel_size - 1) // 2,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU6(inplace=False),
    )


class InvertedResidual(nn.Module):
    """MODEL.md "Backbone", inverted residual block, torchvision's layout and names.

    `conv` = [1x1 expand + BN + ReLU6 (only t != 1)] -> 3x3 depthwise + BN + ReLU6 -> 1x1
    project -> BN; then `cdsm` (when `cdsm_groups` is given); then `+ x` when stride 1 and
    in == out. Hidden width `round(in * t)`, as torchvision.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        expand_ratio: int,
        cdsm_groups: Optional[int] = None,
    ):
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: List[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_relu6(in_channels, hidden, 1))
        layers += [
            conv_bn_relu6(hidden, hidden, 3, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.cdsm = CDSM(out_channels, cdsm_groups) if cdsm_groups is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """# Shapes: [N, C_in, H, W] -> [N, C_out, H / stride, W / stride] (ceil)"""
        out = self.conv(x)
        if self.cdsm is not None:
            out = self.cdsm(out)
        return x + out if self.use_residual else out


# --------------------------------------------------------------------------------------------
# MSCA: multi-scale channel aggregator
# --------------------------------------------------------------------------------------------


class Lateral(nn.Module):
    """MODEL.md "MSCA" step 1: conv1x1 to D (no bias) + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """# Shapes: [N, C, H, W] -> [N, D, H, W]"""
        return F.relu(self.bn(self.conv(x)))


class AttentionBranch(nn.Module):
    """MODEL.md "MSCA" step 3, one MS-CAM branch: `BN(conv_{D/r->D}(ReLU(BN(conv_{D->D/r}(z)))))`.

    The 1x1 convs have bias. Used per position (`local_att`) and on GAP(z) (`global_att`).
    """

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        inner = channels // reduction
        self.conv1 = nn.Conv2d(channels, inner, 1, bias=True)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, channels, 1, bias=True)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """# Shapes: [N, D, H, W] -> [N, D, H, W]"""
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(z)))))


class AFF(nn.Module):
    """MODEL.md "MSCA" step 3, attentional feature fusion of x and y:

    `z = x + y`, `w = sigmoid(local_att(z) + global_att(GAP(z)))`, `2*x*w + 2*y*(1-w)`.
    """

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.local_att = AttentionBranch(channels, reduction)
        self.global_att = AttentionBranch(channels, reduction)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """# Shapes: x, y [N, D, H, W] -> [N, D, H, W]"""
        z = x + y
        local = self.local_att(z)
        glob = self.global_att(F.adaptive_avg_pool2d(z, 1))
        w = torch.sigmoid(local + glob)
        return 2.0 * x * w + 2.0 * y * (1.0 - w)


class MSCA(nn.Module):
    """MODEL.md "MSCA": laterals on (P3, P5, P7), resize to P7's size by adaptive average
    pooling, `F = AFF_2(AFF_1(P7, P5), P3)`, returns `GAP(F)`.

    `lateral.0/1/2` take P3/P5/P7; `fuse.0` is AFF_1, `fuse.1` is AFF_2.
    """

    def __init__(self, tap_channels: Sequence[int], channels: int = 128, reduction: int = 4):
        super().__init__()
        self.lateral = nn.ModuleList(Lateral(c, channels) for c in tap_channels)
        self.fuse = nn.ModuleList(AFF(channels, reduction) for _ in range(2))

    def forward_map(self, taps: Sequence[torch.Tensor]) -> torch.Tensor:
        """# Shapes: P3 [N, c3, H3, W3], P5 [..], P7 [N, c7, H7, W7] -> F [N, D, H7, W7]"""
        p3, p5, p7 = (lateral(t) for lateral, t in zip(self.lateral, taps))
        size = p7.shape[-2:]
        p3 = F.adaptive_avg_pool2d(p3, size)
        p5 = F.adaptive_avg_pool2d(p5, size)
        fused = self.fuse[0](p7, p5)
        return self.fuse[1](fused, p3)

    def forward(self, taps: Sequence[torch.Tensor]) -> torch.Tensor:
        """# Shapes: taps (P3, P5, P7) -> f_ms [N, D]"""
        return F.adaptive_avg_pool2d(self.forward_map(taps), 1).flatten(1)


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


def init_weights(module: nn.Module) -> None:
    """MODEL.md "Initialisation" (torchvision MobileNetV2): conv Kaiming normal fan_out, bias 0;
    BN weight 1, bias 0; Linear N(0, 0.01), bias 0. Applied to every submodule, attention
    included."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


class EfeaMsm(nn.Module):
    """MODEL.md in full: `features` (torchvision MobileNetV2 names, CDSM inside listed blocks),
    optional `msca`, then `dropout` and `classifier` = Linear(1280 + D -> K) (1280 -> K without
    MSCA)."""

    def __init__(self, config: EfeaConfig = EfeaConfig()):
        super().__init__()
        self.config = config
        alpha = config.width_mult
        cdsm_blocks = set(config.resolved_cdsm_blocks())

        in_ch = make_divisible(STEM_CHANNELS * alpha)
        self.last_channels = make_divisible(LAST_CHANNELS * max(1.0, alpha))
        layers: List[nn.Module] = [
            conv_bn_relu6(config.in_channels, in_ch, 3, stride=config.resolved_stem_stride())
        ]
        tap_channels: List[int] = []
        self.tap_indices: List[int] = []
        for stage, (t, c, n, s) in enumerate(STAGES, start=1):
            out_ch = make_divisible(c * alpha)
            for i in range(n):
                index = len(layers)
                groups = config.cdsm_groups if index in cdsm_blocks else None
                layers.append(InvertedResidual(in_ch, out_ch, s if i == 0 else 1, t, groups))
                in_ch = out_ch
            if stage in MSCA_TAP_STAGES:
                tap_channels.append(out_ch)
                self.tap_indices.append(len(layers) - 1)
        layers.append(conv_bn_relu6(in_ch, self.last_channels, 1))
        self.features = nn.Sequential(*layers)

        self.msca = (
            MSCA(tap_channels, config.msca_channels, config.msca_reduction) if config.msca else None
        )
        head_in = self.last_channels + (config.msca_channels if config.msca else 0)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(head_in, config.num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """# Shapes: [N, C_in, S, S] -> (last conv map [N, 1280, S/16, S/16] at stem stride 1,
        taps [P3, P5, P7] = outputs of features.6, features.13, features.17)."""
        taps: List[torch.Tensor] = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.tap_indices:
                taps.append(x)
        return x, taps

    def forward_head(self, last_map: torch.Tensor, taps: Sequence[torch.Tensor]) -> torch.Tensor:
        """MODEL.md "Head": `concat(GAP(last), f_ms)` -> dropout -> classifier.
        # Shapes: last [N, 1280, h, w], taps -> logits [N, K]"""
        h = F.adaptive_avg_pool2d(last_map, 1).flatten(1)
        if self.msca is not None:
            h = torch.cat([h, self.msca(taps)], dim=1)
        return self.classifier(self.dropout(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """# Shapes: [N, C_in, S, S] -> logits [N, K]"""
        return self.forward_head(*self.forward_features(x))


def bias_before_bn(param_name: str) -> bool:
    """True for the conv biases that feed a BN directly (`SubspaceGroup.dw/pw`,
    `AttentionBranch.conv1/conv2`). In train mode the batch mean cancels them, so their
    gradient is zero in exact arithmetic and only rounding noise in float32; in eval mode they
    do shift the output."""
    return param_name.endswith((".dw.bias", ".pw.bias", "conv1.bias", "conv2.bias")) or (
        param_name in ("dw.bias", "pw.bias", "conv1.bias", "conv2.bias")
    )


# --------------------------------------------------------------------------------------------
# Counting
# --------------------------------------------------------------------------------------------


def count_params_and_macs(model: nn.Module, input_size: int, in_channels: int) -> dict:
    """Parameters (`parameters()`, no BN running stats) and multiply-adds of Conv2d and Linear
    only, for one `in_channels x input_size x input_size` image, measured with forward hooks.

    conv: C_out * H_out * W_out * (C_in / groups) * kh * kw; linear: in * out.
    """
    macs = 0

    def conv_hook(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal macs
        kh, kw = module.kernel_size
        c_out, h_out, w_out = output.shape[1:]
        macs += c_out * h_out * w_out * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, _inputs, _output: torch.Tensor) -> None:
        nonlocal macs
        macs += module.in_features * module.out_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_channels, input_size, input_size))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return {"params": int(params), "macs": int(macs)}
