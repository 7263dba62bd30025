"""Decoders and heads. Decoders take the encoder's feature list and return one map."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn_relu(cin: int, cout: int, k: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


def resize_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear (half-pixel) resize of ``x`` to ``ref``'s static spatial size."""
    if x.shape[-2:] == ref.shape[-2:]:
        return x
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class LRASPP(nn.Module):
    """Lite R-ASPP (MobileNetV3): a gated 1x1 branch on the deepest features, up-sampled
    to stride 8 and concatenated with the stride-8 features. A 1x1 head on the
    concatenation equals the paper's sum of two classifiers."""

    def __init__(self, in_channels: Sequence[int], reductions: Sequence[int], inter: int = 128):
        super().__init__()
        self.low_index = list(reductions).index(8)
        high = in_channels[-1]
        self.cbr = conv_bn_relu(high, inter)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(high, inter, 1, bias=False), nn.Sigmoid())
        self.out_channels = inter + in_channels[self.low_index]
        self.stride = 8

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        high, low = feats[-1], feats[self.low_index]
        x = self.cbr(high) * self.gate(high)
        return torch.cat([resize_to(x, low), low], dim=1)


class LiteFPN(nn.Module):
    """A small FPN on strides 8, 16, 32: 1x1 laterals, top-down sums, one depthwise-separable
    3x3 smoothing at stride 8."""

    def __init__(self, in_channels: Sequence[int], reductions: Sequence[int], width: int = 64):
        super().__init__()
        self.indices = [list(reductions).index(r) for r in (8, 16, 32)]
        self.laterals = nn.ModuleList(conv_bn_relu(in_channels[i], width) for i in self.indices)
        self.smooth = nn.Sequential(conv_bn_relu(width, width, 3, groups=width), conv_bn_relu(width, width))
        self.out_channels = width
        self.stride = 8

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        p8, p16, p32 = (lat(feats[i]) for lat, i in zip(self.laterals, self.indices))
        p16 = p16 + resize_to(p32, p16)
        p8 = p8 + resize_to(p16, p8)
        return self.smooth(p8)


class ClassifierHead(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv = nn.Conv2d(in_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.dropout(x))


class TinyEncoder(nn.Module):
    """Three strided 3x3 convolutions: a model for fast tests, not for accuracy."""

    out_channels = (8, 16, 24)
    reductions = (2, 4, 8)

    def __init__(self):
        super().__init__()
        chans = (3,) + self.out_channels
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True))
            for a, b in zip(chans[:-1], chans[1:])
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class LastFeature(nn.Module):
    """The trivial decoder: the encoder's deepest map."""

    def __init__(self, in_channels: Sequence[int], reductions: Sequence[int]):
        super().__init__()
        self.out_channels = in_channels[-1]
        self.stride = reductions[-1]

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return feats[-1]
