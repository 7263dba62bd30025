"""EfficientNet-Lite0, Lite1 and Lite2 encoders: no squeeze-excitation, ReLU6, BatchNorm eps 1e-3.

Module names follow the lukemelas/EfficientNet-PyTorch state dict (``_conv_stem``,
``_bn0``, ``_blocks.N._expand_conv`` ...), so ImageNet weights load unchanged.
TensorFlow "same" padding is an explicit zero ``F.pad`` whose amounts are
computed from the static input shape: for a fixed input size it exports as a
constant ONNX ``Pad``, and for stride 1 it is the usual symmetric padding.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TF's 0.99 decay

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage. The Lite models
# keep the stem (32 channels) and the first and last stages' repeats fixed; Lite1 deepens the
# others, Lite2 also widens them (the ImageNet state dicts of the weight packages have these shapes).
VARIANTS = {
    "lite0": ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112),
              (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)),
    "lite1": ((1, 3, 1, 1, 32, 16), (3, 3, 2, 6, 16, 24), (3, 5, 2, 6, 24, 40), (4, 3, 2, 6, 40, 80), (4, 5, 1, 6, 80, 112),
              (5, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)),
    "lite2": ((1, 3, 1, 1, 32, 16), (3, 3, 2, 6, 16, 24), (3, 5, 2, 6, 24, 48), (4, 3, 2, 6, 48, 88), (4, 5, 1, 6, 88, 120),
              (5, 5, 2, 6, 120, 208), (1, 3, 1, 6, 208, 352)),
}
LITE0_STAGES = VARIANTS["lite0"]


def _same_pad(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    effective = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "same" padding (asymmetric for stride 2 on even sizes)."""

    def __init__(self, in_ch, out_ch, kernel_size, stride=1, groups=1, bias=False):
        super().__init__(in_ch, out_ch, kernel_size, stride=stride, padding=0, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        top, bottom = _same_pad(x.shape[-2], k, s)
        left, right = _same_pad(x.shape[-1], k, s)
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; identity skip when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int, drop_connect: float = 0.0):
        super().__init__()
        mid = in_ch * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(in_ch, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, out_ch, 1)
        self._bn2 = _bn(out_ch)
        self.skip = stride == 1 and in_ch == out_ch
        self.drop_connect = drop_connect

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        if self.skip:
            if self.training and self.drop_connect > 0:
                keep = 1.0 - self.drop_connect
                mask = torch.rand(y.shape[0], 1, 1, 1, device=y.device, dtype=y.dtype) < keep
                y = y * mask / keep
            y = y + x
        return y


class EfficientNetLite(nn.Module):
    """Returns features at strides 2, 4, 8, 16, 32 (Lite0 and Lite1: 16, 24, 40, 112, 320 channels;
    Lite2: 16, 24, 48, 120, 352)."""

    reductions = (2, 4, 8, 16, 32)
    # ImageNet classifier weights in the lukemelas state dict that a segmentation encoder does not use.
    classifier_prefixes = ("_conv_head.", "_bn1.", "_fc.")

    def __init__(self, drop_connect_rate: float = 0.2, variant: str = "lite0"):
        super().__init__()
        stages = VARIANTS[variant]
        self.variant = variant
        self.out_channels = tuple(stages[i][5] for i in (0, 1, 2, 4, 6))
        self._conv_stem = SameConv2d(3, 32, 3, stride=2)
        self._bn0 = _bn(32)
        blocks = []
        total = sum(s[0] for s in stages)
        self.taps = []
        for repeats, kernel, stride, expand, cin, cout in stages:
            for r in range(repeats):
                rate = drop_connect_rate * len(blocks) / total
                blocks.append(MBConvBlock(cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1, expand, rate))
            self.taps.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        # outputs after stages 1, 2, 3, 5, 7 -> strides 2, 4, 8, 16, 32
        self.feature_blocks = (self.taps[0], self.taps[1], self.taps[2], self.taps[4], self.taps[6])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        feats = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self.feature_blocks:
                feats.append(x)
        return feats


class EfficientNetLite0(EfficientNetLite):
    def __init__(self, drop_connect_rate: float = 0.2):
        super().__init__(drop_connect_rate, "lite0")
