"""DUpsampling decoder (Tian et al., "Decoders Matter for Semantic Segmentation", CVPR 2019).

The head predicts C' channels at output stride r; a fixed linear map W turns each
C'-vector into an r x r block of class scores (a 1x1 convolution to r*r*C channels,
then DepthToSpace / ``pixel_shuffle``). W is fitted in closed form: the top C'
eigenvectors of the Gram matrix of flattened r x r blocks of training labels (soft
or one-hot), blocks touching void skipped. Low-level features are down-sampled to
the coarse resolution and fused there, so the decoder never runs at high resolution.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeseg.models.parts import conv_bn_relu


def block_vectors(mass: torch.Tensor, valid: torch.Tensor, r: int) -> torch.Tensor:
    """``(C, h, w)`` class mass -> ``(n, C*r*r)`` vectors of its fully valid r x r blocks.

    Vector layout matches ``pixel_shuffle``: channel ``c*r*r + i*r + j`` is class c at
    block position (i, j).
    """
    C, h, w = mass.shape
    hb, wb = h // r, w // r
    m = mass[:, : hb * r, : wb * r].reshape(C, hb, r, wb, r).permute(1, 3, 0, 2, 4).reshape(hb * wb, C * r * r)
    v = valid[: hb * r, : wb * r].reshape(hb, r, wb, r).permute(0, 2, 1, 3).reshape(hb * wb, r * r)
    return m[(v > 1 - 1e-6).all(1)]


def fit_w(gram: torch.Tensor, channels: int) -> torch.Tensor:
    """Top ``channels`` eigenvectors of a Gram matrix: ``(D, channels)`` with orthonormal columns."""
    evals, evecs = torch.linalg.eigh(gram.to(torch.float64))
    order = torch.argsort(evals, descending=True)[:channels]
    return evecs[:, order].to(torch.float32).contiguous()


def gram_from_dataset(ds, res: tuple[int, int], r: int, label_mode: str, kernel: str, limit: int | None = None, progress: bool = True) -> tuple[torch.Tensor, int]:
    from edgeseg.data.resample import downsample_labels
    from edgeseg.progress import Progress

    C = ds.info.num_classes
    w, h = res
    gram = torch.zeros(C * r * r, C * r * r, dtype=torch.float64)
    n_blocks = 0
    n = len(ds) if limit is None else min(limit, len(ds))
    bar = Progress(n, "DUpsampling: fitting W", "img", enabled=progress)
    for i in range(n):
        s = ds[i]
        mode = label_mode if label_mode != "nearest" else "nearest"
        mass, valid = downsample_labels(torch.from_numpy(s.label), (h, w), C, ds.info.ignore_index, mode=mode, kernel=kernel)
        vec = block_vectors(mass, valid, r).to(torch.float64)
        gram += vec.T @ vec
        n_blocks += len(vec)
        bar.update()
    bar.close()
    return gram, n_blocks


def fitted_w(ds, res, r: int, channels: int, label_mode: str, kernel: str, limit: int | None = None, progress: bool = True, log=print) -> torch.Tensor:
    """W for this data set and resolution, from the cache when it was fitted before."""
    from edgeseg.fileio import atomic_path, cache_dir

    n_labels = len(ds) if limit is None else min(limit, len(ds))
    key = hashlib.sha256(json.dumps([ds.fingerprint(limit), list(res), r, channels, label_mode, kernel]).encode()).hexdigest()[:20]
    path = cache_dir() / "dupsample" / f"{ds.info.name}-{res[0]}x{res[1]}-r{r}-c{channels}-{key}.pt"
    if path.is_file():
        obj = torch.load(path, map_location="cpu", weights_only=True)
        log(f"DUpsampling W from cache {path}")
        return obj["W"]
    gram, n_blocks = gram_from_dataset(ds, res, r, label_mode, kernel, limit, progress)
    if n_blocks == 0:
        from edgeseg.errors import DataError

        raise DataError(f"DUpsampling: no {r}x{r} label block of {ds.info.name}/{ds.split} at {res[0]}x{res[1]} is free of void")
    W = fit_w(gram, channels)
    with atomic_path(path) as tmp:
        torch.save({"W": W, "n_blocks": n_blocks, "key": key}, tmp)
    log(f"DUpsampling W fitted on {n_blocks} blocks of {n_labels} labels; cached at {path}")
    return W


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


class DUpsampleHead(nn.Module):
    """C' channels at stride r -> class scores at r times the resolution, through W."""

    output_stride = 1  # logits come out at (a multiple of r above) the input resolution

    def __init__(self, in_channels: int, num_classes: int, stride: int = 16, channels: int = 64, finetune_w: bool = False):
        super().__init__()
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

    def fit_to_data(self, ds, res, label_mode: str, kernel: str, progress: bool = True, log=print) -> None:
        """Closed-form W from the training labels at the training resolution (cached)."""
        self.set_w(fitted_w(ds, res, self.r, self.proj.out_channels, label_mode, kernel, progress=progress, log=log))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = self.reconstruct(self.proj(x))
        return F.pixel_shuffle(blocks, self.r) / self.log_temperature.exp()
