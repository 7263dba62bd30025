"""Encoder -> decoder -> head, with ``forward`` written once."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; stored in checkpoints and ONNX metadata."""

    name: str
    num_classes: int
    mean: tuple[float, float, float] = (127.0, 127.0, 127.0)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)
    options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(
            name=str(d["name"]),
            num_classes=int(d["num_classes"]),
            mean=tuple(float(v) for v in d.get("mean", (127.0,) * 3)),
            std=tuple(float(v) for v in d.get("std", (128.0,) * 3)),
            options=dict(d.get("options", {})),
        )


class SegModel(nn.Module):
    """Normalised NCHW float input -> logits ``(N, C, H, W)`` at the input resolution.

    Architectures only wire parts together. Every part uses static shapes for a
    fixed input size and no control flow on tensor values, so the graph exports
    to ONNX and TensorRT as is.
    """

    exportable = True
    divisible_by = 1  # any input size works (TF "same" padding adapts to odd sizes)

    def __init__(self, config: ModelConfig, encoder: nn.Module, decoder: nn.Module, head: nn.Module):
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.decoder = decoder
        self.head = head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder features (before the head), used by heads that need them (attention, contrastive)."""
        return self.decoder(self.encoder(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_input_size(self.head(self.features(x)), x)

    def to_input_size(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if logits.shape[-2:] == x.shape[-2:]:
            return logits
        if getattr(self.head, "output_stride", None) == 1:
            # the head reconstructs whole blocks at full resolution: crop the overhang
            return logits[..., : x.shape[-2], : x.shape[-1]]
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
