"""Encoder -> decoder -> head, with ``forward`` written once."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

# Input normalisation (x - mean) / std of every edgeseg model unless its config says otherwise.
DEFAULT_MEAN = (127.0, 127.0, 127.0)
DEFAULT_STD = (128.0, 128.0, 128.0)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; stored in checkpoints and exported models (inside ModelMeta)."""

    name: str
    num_classes: int
    mean: tuple[float, float, float] = DEFAULT_MEAN
    std: tuple[float, float, float] = DEFAULT_STD
    options: dict = field(default_factory=dict)
    # Output above the input resolution (edgeseg.models.native): scores at ``upscale`` x the
    # input size; with ``refine="guided"`` the model takes the native frame (``native_res``,
    # width x height), resizes it to ``res`` with ``kernel`` inside the graph and returns
    # scores at the native size.
    upscale: int = 1
    refine: str = "none"
    res: tuple[int, int] | None = None
    native_res: tuple[int, int] | None = None
    kernel: str = "area"

    @property
    def input_res(self) -> tuple[int, int] | None:
        """The (width, height) the model takes: the native frame for guided models, else ``res``."""
        return tuple(self.native_res) if self.refine != "none" and self.native_res else (tuple(self.res) if self.res else None)

    @property
    def output_res(self) -> tuple[int, int] | None:
        """The (width, height) of the scores the model returns, where it is fixed by the config."""
        if self.refine != "none" and self.native_res:
            return tuple(self.native_res)
        return (self.res[0] * self.upscale, self.res[1] * self.upscale) if self.res else None


class SegModel(nn.Module):
    """Normalised NCHW float input -> logits ``(N, C, H, W)`` at the input resolution.

    Architectures only wire parts together. Every part uses static shapes for a
    fixed input size and no control flow on tensor values, so the graph exports
    to ONNX and TensorRT as is.
    """

    exportable = True

    def __init__(self, config: ModelConfig, encoder: nn.Module, decoder: nn.Module, head: nn.Module):
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.decoder = decoder
        self.head = head
        self.upsampler: nn.Module | None = None  # UpscaleHead, set by attach_native_stages
        self.refiner: nn.Module | None = None  # GuidedRefine

    def network_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the encoder sees: ``x``, or for a guided model (which takes the native frame) ``x``
        resized in the graph to the network resolution with the training kernel."""
        if self.refiner is None:
            return x
        from edgeseg.data.resample import resize

        w, h = self.config.res
        return resize(x, (h, w), self.config.kernel)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder features (before the head), used by heads that need them (attention, contrastive)."""
        return self.decoder(self.encoder(self.network_input(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.refiner is None and self.upsampler is None:
            return self.to_input_size(self.head(self.features(x)), x)
        frame = x
        x = self.network_input(frame)  # guided models take the normalised native frame
        feats = self.encoder(x)
        logits = self.head(self.decoder(feats))
        logits = self.upsampler(logits, feats, x) if self.upsampler is not None else self.to_input_size(logits, x)
        return self.refiner(logits, frame) if self.refiner is not None else logits

    def to_input_size(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if logits.shape[-2:] == x.shape[-2:]:
            return logits
        if getattr(self.head, "output_stride", None) == 1:
            # the head reconstructs whole blocks at full resolution: crop the overhang
            return logits[..., : x.shape[-2], : x.shape[-1]]
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
