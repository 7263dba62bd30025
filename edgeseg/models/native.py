"""Class scores above the network's input resolution.

Two optional stages after the head of a :class:`~edgeseg.models.base.SegModel`:

``UpscaleHead`` (``--upscale K``)
    The head's coarse logits (stride 8) are brought to K times the input
    resolution by bilinear up-sampling plus a learned residual. The residual is
    predicted from the encoder's stride-4 and stride-2 features and expanded by
    pixel shuffle (ONNX ``DepthToSpace``), so the exported graph holds only
    Conv, Resize, Concat and DepthToSpace. The last convolution starts at zero:
    an untrained up-sampler is exactly bilinear up-sampling.
    ``--model-opt upscale_input=N`` adds a stride-1 stage: a 3x3 convolution of the
    network's input image to N channels, mixed with the stride-2 state, so the
    residual also sees what lies between the stride-2 samples (a structure one
    input pixel wide).

``GuidedRefine`` (``--refine guided``)
    A fast guided filter (Wu et al., CVPR 2018) with a learned guide: per class,
    scores are fitted locally as ``a * g + b`` against a guide map ``g`` computed
    from the native frame by two 1x1 convolutions; ``a`` and ``b`` are solved at
    the scores' resolution with box filters and applied at native resolution,
    where thin structures that the network cannot resolve still show in the
    guide. Its cost at native resolution is two 1x1 convolutions, the
    up-sampling of ``a`` and ``b`` and a few element-wise operations per pixel;
    ``--model-opt guide_channels=1`` shares one guide map between the classes
    (cheaper), ``guide_kernel=3`` gives the guide a 3x3 depthwise stage and
    ``guide_width=0`` makes it one 1x1 convolution of the colour (cheaper still).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeseg.data.resample import resize

UPSCALES = (1, 2, 4)
REFINES = ("none", "guided")


def _conv_bn_relu(cin: int, cout: int, k: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _up(x: torch.Tensor, size) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class UpscaleHead(nn.Module):
    """Coarse logits + encoder features at strides 4 and 2 (+ the input image at stride 1 when
    ``input_channels`` > 0) -> logits at ``upscale`` x the input size."""

    def __init__(self, num_classes: int, in_channels: Sequence[int], reductions: Sequence[int], upscale: int, width: int = 16,
                 input_channels: int = 0):
        super().__init__()
        reductions = list(reductions)
        if 2 not in reductions or 4 not in reductions:
            from edgeseg.errors import ConfigError

            raise ConfigError(f"--upscale needs an encoder with stride-2 and stride-4 features; this one has strides {reductions}")
        self.i2, self.i4 = reductions.index(2), reductions.index(4)
        self.upscale = int(upscale)
        self.proj4 = _conv_bn_relu(in_channels[self.i4], width)
        self.mix4 = nn.Sequential(_conv_bn_relu(width + num_classes, width, 3))
        self.proj2 = _conv_bn_relu(in_channels[self.i2], width)
        self.mix2 = nn.Sequential(_conv_bn_relu(2 * width + num_classes, width, 3))
        self.input_channels = int(input_channels)
        if self.input_channels:
            self.proj1 = _conv_bn_relu(3, self.input_channels, 3)
            self.mix1 = _conv_bn_relu(width + self.input_channels, width)
        r = self.upscale if self.input_channels else 2 * self.upscale  # stride 1 (or 2) -> 1/upscale
        self.expand = nn.Conv2d(width, num_classes * r * r, 1)
        nn.init.zeros_(self.expand.weight)
        nn.init.zeros_(self.expand.bias)
        self.shuffle = nn.PixelShuffle(r)

    def forward(self, logits: torch.Tensor, feats: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        f4, f2 = feats[self.i4], feats[self.i2]
        h = self.mix4(torch.cat([_up(logits, f4.shape[-2:]), self.proj4(f4)], 1))
        h = self.mix2(torch.cat([_up(h, f2.shape[-2:]), _up(logits, f2.shape[-2:]), self.proj2(f2)], 1))
        if self.input_channels:
            h = self.mix1(torch.cat([_up(h, x.shape[-2:]), self.proj1(x)], 1))
        residual = self.shuffle(self.expand(h))
        H, W = x.shape[-2] * self.upscale, x.shape[-1] * self.upscale
        residual = residual[..., :H, :W]  # odd input sizes: stride-2 maps round up
        return _up(logits, (H, W)) + _up(residual, (H, W))


def box_filter(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window, counting only pixels inside the image (ONNX AveragePool)."""
    k = 2 * radius + 1
    return F.avg_pool2d(x, k, stride=1, padding=radius, count_include_pad=False)


class GuidedRefine(nn.Module):
    """Per-class fast guided filter: scores at any resolution -> scores at the guide's resolution.

    ``guide_channels``: 0 (default) gives every class its own guide map; 1 shares one guide map
    between the classes (each class still fits its own ``a`` and ``b``), which removes a
    C-channel convolution at native resolution and two of the C-channel box filters.
    ``guide_kernel``: 1 (default) computes the guide per pixel from the colour; 3 adds a 3x3
    depthwise convolution, so the guide can respond to structures a few native pixels wide (a
    pole, a sign's edge) rather than to colour alone.
    ``width``: the hidden guide channels (8); 0 makes the guide a learned linear mix of the colour
    (one 1x1 convolution, He et al.'s guided filter with a learned grey), the cheapest guide at
    native resolution.
    """

    def __init__(self, num_classes: int, kernel: str = "area", radius: int = 1, eps: float = 1e-2, width: int = 8,
                 guide_channels: int = 0, guide_kernel: int = 1):
        super().__init__()
        self.kernel = kernel
        self.radius = int(radius)
        self.eps = float(eps)
        self.guide_channels = int(guide_channels) or num_classes
        if width == 0 and guide_kernel > 1:
            raise ValueError("a linear guide (width 0) has no hidden stage for guide_kernel > 1")
        layers = [nn.Conv2d(3, width, 1, bias=False), nn.BatchNorm2d(width), nn.LeakyReLU(0.2, inplace=True)] if width else []
        if guide_kernel > 1:
            layers += [nn.Conv2d(width, width, guide_kernel, padding=guide_kernel // 2, groups=width, bias=False),
                       nn.BatchNorm2d(width), nn.LeakyReLU(0.2, inplace=True)]
        self.guide = nn.Sequential(*layers, nn.Conv2d(width or 3, self.guide_channels, 1))

    def forward(self, scores: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """``frame``: the normalised native image ``(N, 3, H, W)``; returns ``(N, C, H, W)``."""
        hidden = self.guide[:-1](frame)
        g_hi = self.guide[-1](hidden)
        h, w = scores.shape[-2:]
        if g_hi.shape[1] > hidden.shape[1]:
            # The resize kernels are linear with rows summing to one, so resizing the narrower
            # hidden map and applying the last 1x1 convolution gives the same low-resolution guide.
            g_lo = self.guide[-1](resize(hidden, (h, w), self.kernel))
        else:
            g_lo = resize(g_hi, (h, w), self.kernel)
        p = scores
        r = self.radius
        mean_g, mean_p = box_filter(g_lo, r), box_filter(p, r)
        cov = box_filter(g_lo * p, r) - mean_g * mean_p
        var = box_filter(g_lo * g_lo, r) - mean_g * mean_g
        a = cov / (var + self.eps)
        b = mean_p - a * mean_g
        size = g_hi.shape[-2:]
        return _up(box_filter(a, r), size) * g_hi + _up(box_filter(b, r), size)
