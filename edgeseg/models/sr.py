"""A super-resolution auxiliary for training only (DSRL's idea, Wang et al., CVPR 2020): a light
branch reconstructs the window at the native resolution from the features the segmentation
network computes at its low input resolution, so those features must keep what the native
pixels held. It is not part of the model: ``SRTrainNet`` runs the model and the branch together
while training (one module, so DistributedDataParallel averages the branch's gradients too), and
the checkpoint's model, and so every export, is the model without it.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def _cbr(cin: int, cout: int, k: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SRHead(nn.Module):
    """Decoder features (stride 8 or so) and encoder features at strides 4 and 2 -> an RGB image at
    ``factor`` x the network input size, as the model's normalised input would look there."""

    def __init__(self, decoder_channels: int, in_channels: Sequence[int], reductions: Sequence[int], factor: int, width: int = 32):
        super().__init__()
        reductions = list(reductions)
        if 2 not in reductions or 4 not in reductions:
            from edgeseg.errors import ConfigError

            raise ConfigError(f"--sr-aux needs an encoder with stride-2 and stride-4 features; this one has strides {reductions}")
        self.i2, self.i4 = reductions.index(2), reductions.index(4)
        self.factor = int(factor)
        self.dec = _cbr(decoder_channels, width)
        self.p4 = _cbr(in_channels[self.i4], width)
        self.m4 = _cbr(2 * width, width, 3)
        self.p2 = _cbr(in_channels[self.i2], width)
        self.m2 = _cbr(2 * width, width, 3)
        r = 2 * self.factor  # stride 2 -> factor x the input
        self.out = nn.Conv2d(width, 3 * r * r, 3, padding=1)
        self.shuffle = nn.PixelShuffle(r)

    def forward(self, decoded: torch.Tensor, feats: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """``size``: (height, width) of the image to reconstruct."""
        f4, f2 = feats[self.i4], feats[self.i2]
        h = self.m4(torch.cat([F.interpolate(self.dec(decoded), size=f4.shape[-2:], mode="bilinear", align_corners=False), self.p4(f4)], 1))
        h = self.m2(torch.cat([F.interpolate(h, size=f2.shape[-2:], mode="bilinear", align_corners=False), self.p2(f2)], 1))
        img = self.shuffle(self.out(h))
        return img if tuple(img.shape[-2:]) == tuple(size) else F.interpolate(img, size=tuple(size), mode="bilinear", align_corners=False)


class SRTrainNet(nn.Module):
    """The model and its SR branch in one module: ``{"logits": ..., "sr": ...}`` while training; the
    branch reads the encoder's and decoder's outputs through forward hooks (the model is unchanged)."""

    def __init__(self, model: nn.Module, head: SRHead, size: tuple[int, int]):
        super().__init__()
        self.model = model
        self.head = head
        self.size = tuple(size)  # (height, width) of the reconstruction: the native frame
        self._seen: dict = {}
        model.encoder.register_forward_hook(lambda m, i, o: self._seen.__setitem__("feats", o))
        model.decoder.register_forward_hook(lambda m, i, o: self._seen.__setitem__("decoded", o))

    def forward(self, x: torch.Tensor) -> dict:
        logits = self.model(x)
        if not self.training:
            return logits
        return {"logits": logits, "sr": self.head(self._seen["decoded"], self._seen["feats"], self.size)}


def sr_net(model: nn.Module, native: tuple[int, int]) -> SRTrainNet:
    """``model`` with an SR branch reconstructing ``native`` (width, height) frames, or a one-line
    error where the model lacks the features it needs."""
    import math

    from edgeseg.errors import ConfigError
    from edgeseg.models.base import SegModel

    if type(model) is not SegModel:
        raise ConfigError(f"--sr-aux: model '{model.config.name}' has its own output stage; use a model without multi-scale attention (e.g. lite0-fpn, lite0-lraspp, lite0-dupsample, tiny)")
    enc, dec = model.encoder, model.decoder
    w, h = model.config.res
    factor = max(1, math.ceil(max(native[0] / w, native[1] / h)))
    return SRTrainNet(model, SRHead(dec.out_channels, enc.out_channels, enc.reductions, factor), (native[1], native[0]))
