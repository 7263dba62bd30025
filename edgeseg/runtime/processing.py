"""Pre- and post-processing, written once for training evaluation, eval, bench,
predict, calibration and parity checks.

Pre-processing resizes a native image to the model's input resolution with the
training kernel and normalises it; post-processing up-samples scores to the
native size (bilinear, half-pixel centres), takes the argmax and colourises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from edgeseg.data.window import axis_taps, resize_window_image
from edgeseg.models.base import DEFAULT_MEAN, DEFAULT_STD


@dataclass(frozen=True)
class Preprocess:
    """Native uint8 HxWx3 images -> model input at ``res`` (width, height).

    ``layout="nchw"`` gives normalised float32 NCHW; ``layout="nhwc-uint8"`` gives
    resized uint8 NHWC for models that normalise inside the graph.
    """

    res: tuple[int, int]
    kernel: str = "area"
    mean: tuple[float, float, float] = DEFAULT_MEAN
    std: tuple[float, float, float] = DEFAULT_STD
    layout: str = "nchw"
    round_uint8: bool = False  # round the resized image to uint8 values, as a uint8-input model sees it
    min_res: tuple[int, int] | None = None  # native-frame models: frames smaller than the network resolution are refused

    @classmethod
    def from_meta(cls, meta) -> "Preprocess":
        """Native images -> the input of the model ``meta`` describes: resized to its network
        resolution, or for a native-frame (guided) model to its frame size, which its graph
        resizes itself."""
        return cls(tuple(meta.input_res), meta.kernel, tuple(meta.mean), tuple(meta.std), meta.input_layout,
                   min_res=tuple(meta.res) if meta.native_res else None)

    def resize(self, images: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
        """Float32 Nx3xhxw in [0, 255] at the model resolution: each uint8 frame resized with the
        training kernel at tap cost (the training path's own resize, data/window.py), never
        converted to float as a whole."""
        w, h = self.res
        out = []
        for img in images:
            if self.min_res is not None and (img.shape[1] < self.min_res[0] or img.shape[0] < self.min_res[1]):
                from edgeseg.errors import DataError

                raise DataError(f"a {img.shape[1]}x{img.shape[0]} frame is smaller than the model's network resolution "
                                f"{self.min_res[0]}x{self.min_res[1]}; this guided model refines up to {w}x{h} frames")
            H, W = img.shape[:2]
            frame = torch.from_numpy(np.ascontiguousarray(img))
            if (H, W) == (h, w):
                out.append(frame.permute(2, 0, 1).to(torch.float32))
            else:
                out.append(resize_window_image(frame, axis_taps(H, 0, H, h, self.kernel), axis_taps(W, 0, W, w, self.kernel)))
        return torch.stack(out)

    def reference_resize(self, images) -> torch.Tensor:
        """The earlier pre-processing (whole frame to float, then the dense resize), kept as the
        reference ``resize`` is tested against."""
        from edgeseg.data.resample import resize

        w, h = self.res
        return torch.stack([resize(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).to(torch.float32), (h, w), self.kernel)
                            for img in images])

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def __call__(self, images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        x = self.resize(images)
        if self.round_uint8:
            x = x.round_().clamp_(0, 255)
        if self.layout == "nhwc-uint8":
            return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
        return self.normalise(x).numpy()


def native_labels(outputs: dict[str, np.ndarray], sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Model outputs (logits or labels) -> one int64 label map per image at its native ``(H, W)``."""
    out = []
    for i, size in enumerate(sizes):
        if "logits" in outputs:
            out.append(scores_to_labels(torch.from_numpy(outputs["logits"][i : i + 1]), size)[0])
        else:
            out.append(upsample_labels(torch.from_numpy(outputs["labels"][i : i + 1].astype(np.int64)), size)[0])
    return out


def upsample_scores(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (half-pixel centres) up-sampling of ``(N, C, h, w)`` scores to ``size=(H, W)``."""
    if tuple(scores.shape[-2:]) == tuple(size):
        return scores
    return F.interpolate(scores.to(torch.float32), size=size, mode="bilinear", align_corners=False)


def scores_to_labels(scores: torch.Tensor | np.ndarray, size: tuple[int, int] | None = None) -> torch.Tensor:
    """``(N, C, h, w)`` logits or class masses -> ``(N, H, W)`` int64 labels at ``size``.

    Images are up-sampled one at a time so that a batch of Cityscapes-sized
    results never holds more than one image's full-resolution score planes.
    """
    scores = torch.as_tensor(scores)
    if size is None or tuple(size) == tuple(scores.shape[-2:]):
        return channel_argmax(scores)
    H, W = size
    out = torch.empty((scores.shape[0], H, W), dtype=torch.int64)
    for n in range(scores.shape[0]):
        out[n] = channel_argmax(upsample_scores(scores[n : n + 1], (H, W)))[0]
    return out


def channel_argmax(scores: torch.Tensor) -> torch.Tensor:
    """Argmax over dim 1 of ``(N, C, H, W)``, first index on ties (as ONNX ArgMax).

    ``max(1).indices`` gives the same indices as ``argmax(1)`` and is several
    times faster on CPU for NCHW layouts (measured 6 ms vs 42-77 ms for 9x512x1024).
    """
    return scores.max(1).indices


def upsample_labels(labels: torch.Tensor | np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Nearest (centre-aligned) up-sampling of ``(N, h, w)`` label maps, for label-only models."""
    labels = torch.as_tensor(labels)
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels.to(torch.int64)
    x = labels[:, None].to(torch.float32)
    return F.interpolate(x, size=size, mode="nearest-exact")[:, 0].to(torch.int64)


def colourise(label: np.ndarray, palette: Sequence[Sequence[int]], ignore_index: int = 255) -> np.ndarray:
    """HxW labels -> HxWx3 uint8 colours; void is black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    lut[ignore_index] = 0
    return lut[np.clip(label, 0, 255).astype(np.uint8)]


def overlay(image: np.ndarray, label: np.ndarray, palette, alpha: float = 0.5) -> np.ndarray:
    colours = colourise(label, palette).astype(np.float32)
    return np.clip(image.astype(np.float32) * (1 - alpha) + colours * alpha, 0, 255).astype(np.uint8)
