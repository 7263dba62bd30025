"""Kernel-matched resampling of images and labels.

One kernel setting drives the image and its label: the low-resolution label of a
pixel is the class distribution of the high-resolution label pixels under the
same weights that produced that pixel's colour (arXiv 2302.13961, with the
image/label kernel mismatch of the paper's public code fixed).

Every kernel is a separable linear map given by a matrix ``W`` of shape
``(n_out, n_in)`` per axis (``kernel_matrix``). Images are resized with those
matrices (or with the PyTorch op that computes exactly the same weights), and
labels are resized by accumulating each class's share through the same weights
without ever building a full-resolution float one-hot.

Kernels:
    area      exact box filter; fractional overlap weights for non-integer ratios.
    bilinear  antialiased triangle filter whose support grows with the ratio
              (PyTorch ``interpolate(mode="bilinear", antialias=True)`` / PIL).
Label-only comparison modes:
    nearest          the common practice: nearest pixel (centre-aligned).
    onehot-bilinear  one-hot labels resized by plain (non-antialiased) bilinear,
                     as in the paper's public code; image uses its own kernel.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from edgeseg.errors import ConfigError, DataError

KERNELS = ("area", "bilinear")
LABEL_MODES = ("soft", "nearest", "onehot-bilinear")
_MATRIX_KERNELS = ("area", "bilinear", "bilinear-noaa", "nearest")


def _check_kernel(kernel: str, allowed=KERNELS) -> None:
    if kernel not in allowed:
        raise ConfigError(f"unknown kernel '{kernel}'; expected one of: {', '.join(allowed)}")


@lru_cache(maxsize=128)
def _kernel_matrix_cached(n_in: int, n_out: int, kernel: str) -> np.ndarray:
    s = n_in / n_out
    out_idx = np.arange(n_out, dtype=np.float64)[:, None]
    in_idx = np.arange(n_in, dtype=np.float64)[None, :]
    if kernel == "area":
        lo = out_idx * s
        hi = (out_idx + 1) * s
        overlap = np.clip(np.minimum(in_idx + 1, hi) - np.maximum(in_idx, lo), 0.0, None)
        mat = overlap / s
    elif kernel == "bilinear":
        # PyTorch/PIL antialiased bilinear: triangle of half-width max(s, 1) input pixels.
        invscale = 1.0 / s if s >= 1.0 else 1.0
        centre = (out_idx + 0.5) * s
        mat = np.clip(1.0 - np.abs((in_idx + 0.5 - centre) * invscale), 0.0, None)
        mat = mat / mat.sum(axis=1, keepdims=True)
    elif kernel == "bilinear-noaa":
        # F.interpolate(mode="bilinear", align_corners=False, antialias=False)
        src = np.maximum((np.arange(n_out) + 0.5) * s - 0.5, 0.0)
        i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        lam = src - i0
        mat = np.zeros((n_out, n_in))
        rows = np.arange(n_out)
        np.add.at(mat, (rows, i0), 1.0 - lam)
        np.add.at(mat, (rows, i1), lam)
    elif kernel == "nearest":
        src = np.minimum(np.floor((np.arange(n_out) + 0.5) * s).astype(np.int64), n_in - 1)
        mat = np.zeros((n_out, n_in))
        mat[np.arange(n_out), src] = 1.0
    else:  # pragma: no cover - guarded by callers
        raise ConfigError(f"unknown kernel '{kernel}'")
    mat.setflags(write=False)
    return mat


def kernel_matrix(n_in: int, n_out: int, kernel: str) -> np.ndarray:
    """Weights ``(n_out, n_in)`` of a 1-D resize from ``n_in`` to ``n_out`` samples.

    Rows sum to one. The same matrix resizes images and labels.
    """
    _check_kernel(kernel, _MATRIX_KERNELS)
    if n_in < 1 or n_out < 1:
        raise ConfigError(f"resize sizes must be positive, got {n_in} -> {n_out}")
    return _kernel_matrix_cached(int(n_in), int(n_out), kernel)


# --------------------------------------------------------------------------- images


def resize(x: torch.Tensor, size: tuple[int, int], kernel: str = "area") -> torch.Tensor:
    """Resize float tensors ``(..., H, W)`` to ``size=(h, w)`` with ``kernel``."""
    _check_kernel(kernel, _MATRIX_KERNELS)
    h, w = size
    H, W = x.shape[-2:]
    if (H, W) == (h, w):
        return x
    if kernel == "bilinear":
        # Same weights as kernel_matrix(.., "bilinear"); checked in the tests.
        lead = x.shape[:-2]
        y = F.interpolate(x.reshape(-1, 1, H, W), size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        return y.reshape(*lead, h, w)
    if kernel == "area" and H % h == 0 and W % w == 0:
        lead = x.shape[:-2]
        y = F.avg_pool2d(x.reshape(-1, 1, H, W), kernel_size=(H // h, W // w))
        return y.reshape(*lead, h, w)
    wy = torch.from_numpy(np.array(kernel_matrix(H, h, kernel), dtype=np.float32)).to(x.device)
    wx = torch.from_numpy(np.array(kernel_matrix(W, w, kernel), dtype=np.float32)).to(x.device)
    return torch.matmul(torch.matmul(wy, x.to(torch.float32)), wx.T)


def resize_image(image: np.ndarray | torch.Tensor, size: tuple[int, int], kernel: str = "area") -> torch.Tensor:
    """Resize a uint8 ``HxWx3`` image to a float32 ``3xhxw`` tensor in [0, 255]."""
    t = torch.as_tensor(image)
    if t.ndim != 3 or t.shape[-1] != 3:
        raise DataError(f"expected an HxWx3 image, got shape {tuple(t.shape)}")
    t = t.permute(2, 0, 1).to(torch.float32)
    return resize(t, size, kernel)


# --------------------------------------------------------------------------- labels


@lru_cache(maxsize=128)
def _splat_taps(n_in: int, n_out: int, kernel: str):
    """Per input index: its base output cell and its normalised weights to that
    cell and the next one. Valid for ``n_in >= n_out``.

    For ``area`` a pixel straddles at most one cell boundary; for antialiased
    ``bilinear`` a pixel lies between exactly two output centres, and its two
    triangle weights are ``1-g`` and ``g``. Returns ``(cell, w0, w1)`` where
    ``cell`` is shifted by one so that index 0 collects the dropped output -1.
    """
    a = np.arange(n_in, dtype=np.int64)
    if kernel == "area":
        k = (a * n_out) // n_in
        g = np.maximum((a + 1) * n_out - (k + 1) * n_in, 0) / n_out
    else:  # bilinear, antialiased
        t = ((2 * a + 1) * n_out - n_in) / (2.0 * n_in)
        k = np.floor(t).astype(np.int64)
        g = t - k
    # Normaliser of each output: the summed raw weight it receives.
    norm = np.zeros(n_out + 2)
    np.add.at(norm, k + 1, 1.0 - g)
    np.add.at(norm, k + 2, g)
    inv = np.zeros_like(norm)
    inside = slice(1, n_out + 1)
    inv[inside] = 1.0 / norm[inside]
    w0 = (1.0 - g) * inv[k + 1]
    w1 = g * inv[k + 2]
    return (
        torch.from_numpy((k + 1).astype(np.int32)),
        torch.from_numpy(w0.astype(np.float32)),
        torch.from_numpy(w1.astype(np.float32)),
    )


@lru_cache(maxsize=128)
def _gather_taps(n_in: int, n_out: int, kernel: str):
    """Per output index: the input indices and weights of its non-zero taps."""
    mat = kernel_matrix(n_in, n_out, kernel)
    nnz = (mat > 0).sum(axis=1)
    taps = max(int(nnz.max()), 1)
    idx = np.zeros((n_out, taps), dtype=np.int64)
    wts = np.zeros((n_out, taps), dtype=np.float32)
    for o in range(n_out):
        cols = np.nonzero(mat[o])[0]
        idx[o, : len(cols)] = cols
        wts[o, : len(cols)] = mat[o, cols]
    return torch.from_numpy(idx), torch.from_numpy(wts)


def _class_map(lab: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """Map labels to 0..C-1 and void to C (int32); reject anything else."""
    if lab.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.bool):
        raise DataError(f"labels must be an integer array, got dtype {lab.dtype}")
    lo, hi = (int(v) for v in torch.aminmax(lab))
    ignore_is_class_value = 0 <= ignore_index < num_classes
    if lo >= 0 and hi < num_classes and not ignore_is_class_value:
        return lab.to(torch.int32, copy=True)
    if lo >= 0 and ignore_index >= num_classes:
        # Fast path: only void may exceed the class range; clamp sends it to C.
        arr = lab.numpy() if lab.device.type == "cpu" else lab.cpu().numpy()
        if np.count_nonzero(arr >= num_classes) == np.count_nonzero(arr == ignore_index):
            return lab.to(torch.int32, copy=True).clamp_(max=num_classes)
    is_void = lab == ignore_index
    bad = ~is_void & ((lab < 0) | (lab >= num_classes))
    if bool(bad.any()):
        values = torch.unique(lab[bad])[:8].tolist()
        raise DataError(
            f"label values {values} are neither a class (0..{num_classes - 1}) nor the ignore index {ignore_index}"
        )
    return lab.to(torch.int32, copy=True).masked_fill_(is_void, num_classes)


@lru_cache(maxsize=8)
def _constant(n: int, value: float) -> torch.Tensor:
    return torch.full((n,), value, dtype=torch.float32)


@lru_cache(maxsize=8)
def _splat_base(H: int, W: int, h: int, w: int, kernel: str) -> torch.Tensor:
    """Flat index of each input pixel's base cell in the padded ``(h+2, w+2)`` plane."""
    ky = _splat_taps(H, h, kernel)[0]
    kx = _splat_taps(W, w, kernel)[0]
    return ky[:, None] * (w + 2) + kx[None, :]


def _splat(cls: torch.Tensor, size, num_classes: int, kernel: str, pixel_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Class mass ``(C+1, h, w)`` for down-sampling: each input pixel adds its
    (normalised) weight to the two nearest output cells along each axis."""
    H, W = cls.shape
    h, w = size
    _, wy0, wy1 = _splat_taps(H, h, kernel)
    _, wx0, wx1 = _splat_taps(W, w, kernel)
    hp, wp = h + 2, w + 2
    plane = hp * wp
    n_bins = (num_classes + 1) * plane
    if n_bins >= 2**31:
        raise ConfigError(f"label resize to {w}x{h} with {num_classes} classes is too large")
    idx = cls * plane
    idx += _splat_base(H, W, h, w, kernel)
    rows = torch.nonzero(wy1).flatten()
    cols = torch.nonzero(wx1).flatten()
    if len(rows) == 0 and len(cols) == 0 and bool((wy0 == wy0[0]).all()) and bool((wx0 == wx0[0]).all()):
        # Integer area ratio: every pixel falls in one cell with the same weight.
        weights = _constant(H * W, float(wy0[0]) * float(wx0[0]))
    else:
        weights = (wy0[:, None] * wx0[None, :]).view(-1)
    pw = pixel_weight
    if pw is not None:
        weights = weights * pw.reshape(-1)
    # Where most rows (columns) have a secondary tap, as with bilinear, take them all: a zero
    # weight adds nothing, and whole planes avoid gathering an index copy. Secondary taps land
    # one row and/or one column further (inside the padded plane), so their indices are the
    # base index plus a constant.
    all_rows, all_cols = len(rows) > H // 2, len(cols) > W // 2

    def pick(t: torch.Tensor, r: bool, c: bool) -> torch.Tensor:
        if r and not all_rows:
            t = t[rows]
        if c and not all_cols:
            t = t[:, cols]
        return t

    ry = wy1 if all_rows else wy1[rows]
    cx = wx1 if all_cols else wx1[cols]
    parts_idx, parts_w = [idx.view(-1)], [weights]
    if len(rows):
        parts_idx.append((pick(idx, True, False) + wp).reshape(-1))
        parts_w.append((ry[:, None] * wx0[None, :] * (1 if pw is None else pick(pw, True, False))).reshape(-1))
    if len(cols):
        parts_idx.append((pick(idx, False, True) + 1).reshape(-1))
        parts_w.append((wy0[:, None] * cx[None, :] * (1 if pw is None else pick(pw, False, True))).reshape(-1))
    if len(rows) and len(cols):
        parts_idx.append((pick(idx, True, True) + (wp + 1)).reshape(-1))
        parts_w.append((ry[:, None] * cx[None, :] * (1 if pw is None else pick(pw, True, True))).reshape(-1))
    if len(parts_idx) == 1:
        acc = torch.bincount(parts_idx[0], weights=parts_w[0], minlength=n_bins).to(torch.float32)
    else:
        # One index_add_ per tap: concatenating the taps first costs more than the adds
        # (a fresh 4 x HxW allocation per label).
        acc = torch.zeros(n_bins, dtype=torch.float32)
        for part_idx, part_w in zip(parts_idx, parts_w):
            acc.index_add_(0, part_idx, part_w)
    return acc.view(-1, hp, wp)[:, 1 : h + 1, 1 : w + 1]


def _gather(cls: torch.Tensor, size, num_classes: int, kernel: str, pixel_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Class mass ``(C+1, h, w)`` by gathering each output's taps (few taps per output)."""
    H, W = cls.shape
    h, w = size
    iy, wy = _gather_taps(H, h, kernel)
    ix, wx = _gather_taps(W, w, kernel)
    plane = h * w
    base = torch.arange(plane, dtype=torch.int64).view(h, w)
    acc = torch.zeros((num_classes + 1) * plane, dtype=torch.float32)
    for t in range(iy.shape[1]):
        rows = cls.index_select(0, iy[:, t])
        prow = None if pixel_weight is None else pixel_weight.index_select(0, iy[:, t])
        for u in range(ix.shape[1]):
            sampled = rows.index_select(1, ix[:, u]).to(torch.int64)
            weight = wy[:, t, None] * wx[None, :, u]
            if prow is not None:
                weight = weight * prow.index_select(1, ix[:, u])
            acc.index_add_(0, (sampled * plane + base).reshape(-1), weight.reshape(-1))
    return acc.view(num_classes + 1, h, w)


def nearest_labels(label: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest (centre-aligned) sampling of an ``HxW`` label map to ``size=(h, w)``, values unchanged."""
    H, W = label.shape
    iy, _ = _gather_taps(H, int(size[0]), "nearest")
    ix, _ = _gather_taps(W, int(size[1]), "nearest")
    return label.index_select(0, iy[:, 0]).index_select(1, ix[:, 0])


def downsample_labels(
    label,
    size: tuple[int, int],
    num_classes: int,
    ignore_index: int = 255,
    mode: str = "soft",
    kernel: str = "area",
    weight=None,
):
    """Resize an integer label map ``HxW`` to class mass ``(C, h, w)`` and valid mass ``(h, w)``.

    ``mode="soft"`` uses ``kernel`` (the image's kernel): each output holds the class
    distribution of the input pixels under that kernel's weights; void pixels are
    kept apart, so ``mass.sum(0) == valid`` and ``valid = 1 - void fraction``.
    ``nearest`` and ``onehot-bilinear`` are the comparison modes (``kernel`` unused).

    ``label`` is a numpy array or torch tensor; the result has the same type.
    ``weight`` (``HxW`` in [0, 1]) scales each pixel's contribution: soft labels given as
    (class, probability) maps are the sum of one call per map.
    """
    if mode not in LABEL_MODES:
        raise ConfigError(f"unknown label mode '{mode}'; expected one of: {', '.join(LABEL_MODES)}")
    _check_kernel(kernel)
    is_numpy = isinstance(label, np.ndarray)
    lab = torch.as_tensor(label)
    if lab.ndim != 2:
        raise DataError(f"expected an HxW label map, got shape {tuple(lab.shape)}")
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise ConfigError(f"label resize target must be positive, got {w}x{h}")
    cls = _class_map(lab, num_classes, ignore_index)
    H, W = cls.shape
    pw = None
    if weight is not None:
        pw = torch.as_tensor(weight, dtype=torch.float32)
        if pw.shape != cls.shape:
            raise DataError(f"label weights have shape {tuple(pw.shape)}; the label map is {tuple(cls.shape)}")
        if mode == "nearest":
            raise ConfigError("per-pixel label weights need a soft label mode, not nearest")

    if mode == "nearest":
        sampled = nearest_labels(cls, (h, w)).to(torch.int64)
        full = torch.zeros(num_classes + 1, h, w, dtype=torch.float32)
        full.scatter_(0, sampled[None], 1.0)
    elif mode == "onehot-bilinear":
        full = _gather(cls, (h, w), num_classes, "bilinear-noaa", pw)
    elif H >= h and W >= w:
        full = _splat(cls, (h, w), num_classes, kernel, pw)
    else:
        full = _gather(cls, (h, w), num_classes, kernel, pw)

    mass = full[:num_classes].contiguous()
    valid = mass.sum(0)
    if is_numpy:
        return mass.numpy(), valid.numpy()
    return mass, valid
