"""Hierarchical multi-scale attention (Tao, Sapra, Catanzaro, NVIDIA 2020).

An attention head on the decoder features predicts, at each lower scale, how much
to trust that scale's prediction. Training uses two scales {0.5, 1.0}:

    joint = up(a_0.5 * p_0.5) + (1 - up(a_0.5)) * p_1.0
    loss  = loss(joint) + 0.05 * (loss(up(p_0.5)) + loss(p_1.0))

Inference cascades over any list of scales from high to low, as in the paper's
code; every resize has a static size, so the graph exports to ONNX for a fixed input.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeseg.models.base import SegModel
from edgeseg.models.parts import conv_bn_relu

AUX_WEIGHT = 0.05


class AttentionHead(nn.Module):
    """conv-BN-ReLU twice, 1x1 conv, sigmoid: one attention value per pixel."""

    def __init__(self, in_channels: int, width: int = 64):
        super().__init__()
        self.body = nn.Sequential(conv_bn_relu(in_channels, width, 3), conv_bn_relu(width, width, 3))
        self.out = nn.Conv2d(width, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.out(self.body(x)))


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


SCALE_RANGE = (0.0625, 8.0)  # every scale of every option that takes scales (training, inference, export)


def parse_scales(value, flag: str = "scales") -> tuple[float, ...]:
    """Scales (``0.5,1.0,2.0`` or a list) checked in the one place every option that takes them
    uses: finite numbers within SCALE_RANGE, including 1.0 (the target scale); sorted high to low."""
    import math

    from edgeseg.errors import ConfigError

    items = [v for v in value.split(",") if v.strip()] if isinstance(value, str) else \
        [value] if isinstance(value, (int, float)) else value  # (--model-opt infer_scales=1 reads as one number)
    try:
        scales = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        raise ConfigError(f"{flag}: expected numbers like 0.5,1.0; got {value!r}") from None
    low, high = SCALE_RANGE
    bad = [s for s in scales if not (math.isfinite(s) and low <= s <= high)]
    if not scales or bad:
        raise ConfigError(f"{flag}: expected scales from {low:g} to {high:g} like 0.5,1.0; got {bad[0] if bad else 'none'}")
    if 1.0 not in scales:
        raise ConfigError(f"{flag}: must include 1.0 (the target scale); got {','.join(f'{s:g}' for s in scales)}")
    return tuple(sorted(set(scales), reverse=True))


class MultiScaleAttentionModel(SegModel):
    def __init__(self, config, encoder, decoder, head, attention: nn.Module, train_scales: Sequence[float], infer_scales: Sequence[float]):
        super().__init__(config, encoder, decoder, head)
        self.attention = attention
        self.train_scales = parse_scales(train_scales, "--model-opt train_scales")
        self.infer_scales = parse_scales(infer_scales, "--model-opt infer_scales")

    def single_scale(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and attention at the input size of ``x``."""
        feats = self.features(x)
        logits = self.to_input_size(self.head(feats), x)
        attn = _resize(self.attention(feats), x.shape[-2:])
        return logits, attn

    def cascade(self, x: torch.Tensor, scales: Sequence[float]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Combine scales from high to low; returns the prediction and each scale's own
        logits at the input size (for the auxiliary losses)."""
        H, W = x.shape[-2:]
        pred = None
        per_scale = []
        for s in sorted(scales, reverse=True):
            size = (max(1, int(round(H * s))), max(1, int(round(W * s))))
            logits, attn = self.single_scale(_resize(x, size))
            per_scale.append(_resize(logits, (H, W)))
            if pred is None:
                pred = logits
            elif s >= 1.0:
                pred = attn * logits + (1 - attn) * _resize(pred, logits.shape[-2:])
            else:
                pred = _resize(attn * logits, pred.shape[-2:]) + (1 - _resize(attn, pred.shape[-2:])) * pred
        return _resize(pred, (H, W)), per_scale

    def forward(self, x: torch.Tensor):
        if self.training:
            joint, per_scale = self.cascade(x, self.train_scales)
            return {"logits": joint, "aux": per_scale, "aux_weight": AUX_WEIGHT}
        return self.cascade(x, self.infer_scales)[0]
