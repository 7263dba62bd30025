"""Pre- and post-processing, written once for training evaluation, eval, bench,
predict, calibration and parity checks.

Pre-processing resizes a native image to the model's input resolution with the
training kernel and normalises it; post-processing up-samples scores to the
native size (bilinear, half-pixel centres), takes the argmax and colourises.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from edgeseg.data.window import axis_taps, resize_window_image
from edgeseg.errors import DataError
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


def native_labels(outputs: dict[str, np.ndarray], sizes: list[tuple[int, int]], where: str | None = "the model") -> list[torch.Tensor]:
    """Model outputs (logits or labels) -> one label map per image at its native ``(H, W)`` (uint8 up to 256 classes)."""
    if "logits" in outputs and where is not None:  # (parity counts non-finite scores itself: where=None)
        check_finite(outputs["logits"], where)
    out = []
    for i, size in enumerate(sizes):
        if "logits" in outputs:
            out.append(scores_to_labels(torch.from_numpy(outputs["logits"][i : i + 1]), size)[0])
        else:
            labels = outputs["labels"][i : i + 1]
            if labels.shape[1] > size[0] or labels.shape[2] > size[1]:
                _note_label_size(labels.shape[1:], size)
            out.append(upsample_labels(torch.from_numpy(labels.astype(np.int64)), size)[0])
    return out


def check_finite(logits: np.ndarray, where: str = "the model") -> None:
    """Refuse scores that hold NaN or infinities: a broken model (its weights, or an engine built
    wrong) would otherwise give labels without a word, and a parity check of NaN against NaN agrees."""
    if not bool(np.isfinite(logits).all()):
        from edgeseg.errors import ModelFileError

        bad = int((~np.isfinite(logits)).sum())
        raise ModelFileError(f"{where}: its scores hold {bad} NaN or infinite values of {logits.size}; the model is broken "
                             "(retrain, use an earlier checkpoint, or re-export)")


_LABEL_SIZES: set = set()


def _note_label_size(graph: tuple[int, int], frame: tuple[int, int]) -> None:
    """Say once per process that a label graph's output is reduced (nearest) to a smaller frame."""
    if not _LABEL_SIZES:
        _LABEL_SIZES.add((tuple(graph), tuple(frame)))
        import logging

        logging.getLogger(__name__).warning(
            f"the model's label output is {graph[1]}x{graph[0]}, the frame {frame[1]}x{frame[0]}: labels reduced to the frame "
            "(nearest; said once); export with --output-size at the camera's size, or --output logits")


def upsample_scores(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (half-pixel centres) up-sampling of ``(N, C, h, w)`` scores to ``size=(H, W)``."""
    if tuple(scores.shape[-2:]) == tuple(size):
        return scores
    return F.interpolate(scores.to(torch.float32), size=size, mode="bilinear", align_corners=False)


MIXED_SHARE = 0.25  # above this share of cells needing the full interpolation, doing it everywhere costs less
NEAR = 2.0**-18  # two scores closer than this share of their magnitude are tied to float32 precision: which one wins
# depends on the order of the float32 operations, which differs between PyTorch's own kernels and CPUs


def scores_to_labels(scores: torch.Tensor | np.ndarray, size: tuple[int, int] | None = None) -> torch.Tensor:
    """``(N, C, h, w)`` logits or class masses -> ``(N, H, W)`` labels at ``size`` (uint8 up to 256
    classes, else int64): the arg-max of the scores up-sampled bilinearly (half-pixel centres), as
    ``scores_to_labels_reference`` gives it (all planes interpolated, then the arg-max), with the
    interpolation computed only where it can change the label.

    A bilinear sample is a convex combination of the four low-resolution score vectors around it;
    where those four share their arg-max, so does the combination. So the labels are the
    low-resolution arg-max, spread, except on the pixels of 2x2 blocks whose labels disagree; those
    get the C-vector interpolation with PyTorch's own source indices and weights, and its arg-max.
    The two agree on every pixel except where the two best interpolated scores tie to float32
    precision (within ``NEAR`` of their magnitude), where the order of the float32 operations
    decides (tests/test_postprocess.py; on CamVid val, benchmarks/labels_equal.py).
    """
    scores = torch.as_tensor(scores)
    N, C, h, w = scores.shape
    small = torch.uint8 if C <= 256 else torch.int64
    if size is None or tuple(size) == (h, w):
        return channel_argmax(scores).to(small)
    H, W = size
    if H < h or W < w:  # down-sampling skips cells: nothing to spare
        return scores_to_labels_reference(scores, size).to(small)
    ys, xs = _axis(h, H), _axis(w, W)
    out = np.empty((N, H, W), dtype=np.uint8 if C <= 256 else np.int64)
    for n in range(N):
        labels = _native_image(scores[n].to(torch.float32), ys, xs)
        out[n] = scores_to_labels_reference(scores[n : n + 1], size)[0].numpy() if labels is None else labels
    return torch.from_numpy(out)


def _native_image(s: torch.Tensor, ys: "_Axis", xs: "_Axis") -> np.ndarray | None:
    """One image's (C, h, w) scores -> its (H, W) labels, or None where the full interpolation costs less."""
    C, h, w = s.shape
    low = s.max(0).indices.to(torch.uint8 if C <= 256 else torch.int64).numpy()
    # the 2x2 block at each cell (the last row and column repeated, as the interpolation clamps)
    lp = np.pad(low, ((0, 1), (0, 1)), mode="edge")
    a = lp[:-1, :-1]
    mixed = (a != lp[1:, :-1]) | (a != lp[:-1, 1:]) | (a != lp[1:, 1:])
    out = np.take(np.take(low, xs.i0, axis=1), ys.i0, axis=0)  # columns spread, then whole rows
    cells = torch.from_numpy(np.argwhere(mixed))
    if cells.numel() == 0:
        return out
    if cells.shape[0] > MIXED_SHARE * h * w:  # scores that change everywhere (noise): the full interpolation costs less
        return None
    pixels, labels = _mixed_cells(s.reshape(C, h * w), cells, ys, xs, w)
    out.reshape(-1)[pixels.numpy()] = labels.numpy()
    return out


class _Axis:
    """One axis of the bilinear up-sampling from ``n_in`` to ``n_out`` samples, as PyTorch computes it:
    each output's first source index ``i0`` (NumPy) and weight ``lam`` of the next one, and for each
    source index the run of outputs that start there (``start``, ``count``).

    ``i0`` follows PyTorch's source position (scale x (i + 0.5) - 0.5 rounded once to float32); the
    weights are read from PyTorch itself (interpolating a 0/1 pattern gives 0 x w0 + 1 x w1 = w1
    exactly), so they are its own bits."""

    def __init__(self, n_in: int, n_out: int):
        scale = float(np.float32(n_in / n_out))
        src = np.maximum(((np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32), 0)
        i0 = np.minimum(src.astype(np.int64), n_in - 1)
        lam = np.clip(src - i0, 0, 1).astype(np.float32)  # kept only where a probe cannot tell (the clamped last index)
        pattern = (torch.arange(n_in) % 2).to(torch.float32)
        i1 = np.minimum(i0 + 1, n_in - 1)
        for probe in (pattern, 1 - pattern):
            up = F.interpolate(probe.view(1, 1, 1, n_in), size=(1, n_out), mode="bilinear", align_corners=False).view(-1).numpy()
            p = probe.numpy()
            where = (p[i0] == 0) & (p[i1] == 1)
            lam[where] = up[where]
        self.i0, self.lam, self.n_in, self.n_out = i0, torch.from_numpy(lam), n_in, n_out
        count = np.bincount(i0, minlength=n_in)
        self.count, self.start = torch.from_numpy(count), torch.from_numpy(np.cumsum(count) - count)
        self.span = int(count.max())

    def pixels(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For cells at ``idx`` (K,): their output pixels padded to the longest run (span, K), which of
        those are real, and each pixel's weight of the next index."""
        offset = torch.arange(self.span)[:, None]
        real = offset < self.count[idx]
        pix = (self.start[idx] + offset).clamp(max=self.n_out - 1)
        return pix, real, self.lam[pix]


_AXES: dict = {}


def _axis(n_in: int, n_out: int) -> _Axis:
    key = (n_in, n_out)
    if key not in _AXES:
        if len(_AXES) > 64:
            _AXES.clear()
        _AXES[key] = _Axis(n_in, n_out)
    return _AXES[key]


def _mixed_cells(flat: torch.Tensor, cells: torch.Tensor, ys: _Axis, xs: _Axis, w: int):
    """The interpolated arg-max on every output pixel of ``cells`` ((K, 2) low-resolution indices of
    2x2 blocks), from ``flat`` (C, h*w) scores: the four corner vectors taken once per cell, each
    cell's pixels as a (rows x columns) patch, the cells last so that every operation runs along K.
    Returns flat pixel indices and labels."""
    C = flat.shape[0]
    ci, cj = cells[:, 0], cells[:, 1]
    ci1, cj1 = torch.clamp(ci + 1, max=ys.n_in - 1), torch.clamp(cj + 1, max=w - 1)
    corner = flat.index_select(1, torch.cat([ci * w + cj, ci * w + cj1, ci1 * w + cj, ci1 * w + cj1])).view(C, 4, 1, -1)
    rows, row_real, wy1 = ys.pixels(ci)  # (ny, K)
    cols, col_real, wx1 = xs.pixels(cj)  # (nx, K)
    wx0, wy0 = 1.0 - wx1, 1.0 - wy1
    top = (corner[:, 0] * wx0 + corner[:, 1] * wx1)[:, None]  # (C, 1, nx, K)
    bottom = (corner[:, 2] * wx0 + corner[:, 3] * wx1)[:, None]
    labels = (top * wy0[:, None] + bottom * wy1[:, None]).max(0).indices  # (ny, nx, K)
    pixels = rows[:, None] * xs.n_out + cols[None]
    if bool(row_real.all()) and bool(col_real.all()):  # every cell as wide and high (an integer ratio)
        return pixels.reshape(-1), labels.reshape(-1)
    real = row_real[:, None] & col_real[None]
    return pixels[real], labels[real]


def scores_to_labels_reference(scores: torch.Tensor | np.ndarray, size: tuple[int, int] | None = None) -> torch.Tensor:
    """The earlier post-processing, kept as ``scores_to_labels``' reference: all C score planes
    up-sampled to ``size``, then the arg-max."""
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


def aspect_differs(size: tuple[int, int], res: tuple[int, int]) -> bool:
    """Whether a (width, height) frame has another aspect ratio than the model input ``res`` (beyond 1 %)."""
    return abs((size[0] / size[1]) / (res[0] / res[1]) - 1) > 0.01


class AspectCheck:
    """Images (and video frames) whose aspect ratio differs from the model input are resized anyway
    (with one warning), or refused under --strict."""

    def __init__(self, res, strict: bool):
        self.res = res
        self.strict = strict
        self.warned = False

    def __call__(self, shape, where) -> None:
        h, w = shape[:2]
        if not aspect_differs((w, h), self.res):
            return
        msg = f"{where}: {w}x{h} image has another aspect ratio than the model input {self.res[0]}x{self.res[1]}"
        if self.strict:
            raise DataError(msg + " (--strict)")
        if not self.warned:
            logging.getLogger(__name__).warning(f"{msg}; resizing it anyway (later such images are not reported)")
            self.warned = True
