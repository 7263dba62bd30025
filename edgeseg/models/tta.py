"""Test-time augmentation inside the model, so that an exported graph carries it too.

``flip``: the scores of the image and of its mirror image (mirrored back), averaged. Both run as
one batch of two, which an exported graph does in one pass (ONNX Slice with step -1 flips).
It costs about twice the network's time and needs no retraining.
"""

from __future__ import annotations

import torch
import torch.nn as nn

TTA_MODES = ("none", "flip")


class FlipTTA(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    @property
    def config(self):
        return self.model.config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        both = self.model(torch.cat([x, x.flip(-1)], dim=0))
        return 0.5 * (both[:n] + both[n:].flip(-1))

    def __getattr__(self, name):  # exportable, infer_scales, network_input ... of the wrapped model
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("model"), name)


def with_tta(model: nn.Module, tta: str | None, where: str = "--tta") -> nn.Module:
    from edgeseg.errors import ConfigError

    tta = tta or "none"
    if tta not in TTA_MODES:
        raise ConfigError(f"--tta: expected one of {', '.join(TTA_MODES)}; got '{tta}'")
    return FlipTTA(model) if tta == "flip" else model
