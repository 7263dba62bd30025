"""DUpsampling decoder (Tian et al., "Decoders Matter for Semantic Segmentation", CVPR 2019).

The head predicts C' channels at output stride r; a fixed linear map W turns each
C'-vector into an r x r block of class scores (a 1x1 convolution to r*r*C channels,
then DepthToSpace / ``pixel_shuffle``). W is fitted in closed form: the top C'
eigenvectors of the Gram matrix of flattened r x r blocks of training labels (soft
or one-hot), blocks touching void skipped; the trainer fits it (edgeseg.trainer.dupsample_w). Low-level features are down-sampled to
the coarse resolution and fused there, so the decoder never runs at high resolution.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeseg.models.parts import conv_bn_relu


class DUpsampleFusion(nn.Module):
    """Every feature map from stride 4 on is brought to stride r and fused there: finer maps
    by average pooling, coarser ones by bilinear up-sampling of their few pixels."""

    def __init__(self, in_channels: Sequence[int], reductions: Sequence[int], stride: int = 16, width: int = 128):
        super().__init__()
        self.indices = [i for i, red in enumerate(reductions) if red >= 4]
        if stride not in reductions:
            raise ValueError(f"DUpsampling stride {stride} must be one of the encoder's reductions {list(reductions)}")
        self.target = list(reductions).index(stride)
        self.reductions = [reductions[i] for i in self.indices]
        self.stride = stride
        total = sum(in_channels[i] for i in self.indices)
        self.fuse = nn.Sequential(conv_bn_relu(total, width), conv_bn_relu(width, width, 3))
        self.out_channels = width

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[self.target].shape[-2:]
        parts = []
        for i, red in zip(self.indices, self.reductions):
            f = feats[i]
            if red < self.stride:
                # ceil_mode matches the ceil(size / stride) of TF "same" padding on odd sizes
                f = F.avg_pool2d(f, self.stride // red, ceil_mode=True)
            elif red > self.stride:
                f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
            parts.append(f)
        return self.fuse(torch.cat(parts, dim=1))


def channels_problem(channels: int, stride: int, num_classes: int) -> str | None:
    """Why C' cannot be fitted, or None: W's columns are principal components of the r x r blocks of
    C class scores, so there are at most r*r*C of them."""
    most = num_classes * stride * stride
    if channels > most:
        return (f"{channels} channels, but a {stride}x{stride} block of {num_classes} class scores holds {most} values, "
                f"so DUpsampling compresses it into at most {most}")
    return None


class DUpsampleHead(nn.Module):
    """C' channels at stride r -> class scores at r times the resolution, through W."""

    output_stride = 1  # logits come out at (a multiple of r above) the input resolution

    def __init__(self, in_channels: int, num_classes: int, stride: int = 16, channels: int = 64, finetune_w: bool = False):
        super().__init__()
        if problem := channels_problem(channels, stride, num_classes):
            from edgeseg.errors import ConfigError

            raise ConfigError(f"--model-opt channels={channels}: {problem}")
        self.r = stride
        self.num_classes = num_classes
        self.proj = nn.Conv2d(in_channels, channels, 1)
        # W: 1x1 convolution C' -> C*r*r whose weight columns are the fitted eigenvectors.
        self.reconstruct = nn.Conv2d(channels, num_classes * stride * stride, 1, bias=False)
        nn.init.orthogonal_(self.reconstruct.weight)
        self.reconstruct.weight.requires_grad_(finetune_w)
        self.log_temperature = nn.Parameter(torch.zeros(()))  # softmax temperature, learnt

    def set_w(self, W: torch.Tensor) -> None:
        D, Cp = W.shape
        if D != self.num_classes * self.r * self.r or Cp != self.proj.out_channels:
            raise ValueError(f"W has shape {tuple(W.shape)}; expected ({self.num_classes * self.r * self.r}, {self.proj.out_channels})")
        with torch.no_grad():
            self.reconstruct.weight.copy_(W.view(D, Cp, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = self.reconstruct(self.proj(x))
        return F.pixel_shuffle(blocks, self.r) / self.log_temperature.exp()
