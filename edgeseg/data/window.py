"""A training window straight from the native frame, at tap cost: crop, flip, zoom and the
kernel-matched resize of the image and its label in one pass.

The window may leave the frame (a zoom below 1): outside it the image is ``pad`` and the label
void, exactly as if the padded crop had been materialised first. Every output reads only the
few input pixels its kernel weighs (its *taps*), never a dense (out x in) matrix, and the
native frame is never converted to float as a whole: the image is resized in bands of output
rows (a small matrix product per band) and then of output columns; the soft label of an output
cell whose taps all hold one class is that class, and only the cells on a class boundary gather
their taps. The weights are those of ``resample.kernel_matrix`` (the same formulas), so the
result equals resizing the materialised crop (``transforms.TrainTransform.reference``) within
float32 rounding; tests/test_window.py holds it to that.

Everything here is plain PyTorch on whatever device the frame is on: the loader's workers run
it on the CPU, ``--augment-on device`` on the training device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from edgeseg.errors import DataError

IMAGE_BAND = 16  # output rows (columns) per matrix product: small bands keep the products close to the taps' cost


def taps(n_in: int, n_out: int, kernel: str) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``n_out`` outputs, the first input index it reads and the weights of its ``T``
    consecutive taps (zero where the support ends early): ``(first (n_out,), weights (n_out, T))``.
    The weights are ``kernel_matrix(n_in, n_out, kernel)``'s non-zero entries, by the same formulas."""
    s = n_in / n_out
    o = np.arange(n_out, dtype=np.float64)[:, None]
    if kernel == "area":
        lo, hi = o * s, (o + 1) * s
        first = np.floor(lo[:, 0]).astype(np.int64)
        T = int(math.ceil(s)) + 1
        idx = first[:, None] + np.arange(T)[None, :]
        w = np.clip(np.minimum(idx + 1, hi) - np.maximum(idx, lo), 0.0, None) / s
    elif kernel == "bilinear":
        invscale = 1.0 / s if s >= 1.0 else 1.0
        support = max(s, 1.0)
        centre = (o + 0.5) * s
        first = np.maximum(np.floor(centre[:, 0] - 0.5 - support).astype(np.int64), 0)
        T = int(math.ceil(2 * support)) + 2
        idx = first[:, None] + np.arange(T)[None, :]
        w = np.clip(1.0 - np.abs((idx + 0.5 - centre) * invscale), 0.0, None)
        w = np.where(idx < n_in, w, 0.0)
        w = w / w.sum(axis=1, keepdims=True)
    else:
        raise ValueError(kernel)
    w = np.where(idx < n_in, w, 0.0)
    return first, w


@dataclass
class AxisTaps:
    """One axis of a window mapped onto the frame: for each output, ``T`` frame indices and weights
    (taps outside the frame have weight 0 and a valid index), the in-frame weight of each output,
    and the range of frame indices any tap reads."""

    index: torch.Tensor  # (n_out, T) int64, frame coordinates
    weight: torch.Tensor  # (n_out, T) float32
    inside: torch.Tensor  # (n_out,) float32: summed in-frame weight (1 where the window stays in the frame)
    lo: int
    hi: int
    leaves_frame: bool


def axis_taps(n_frame: int, start: int, length: int, n_out: int, kernel: str, flip: bool = False, device="cpu") -> AxisTaps:
    """The taps of a ``length``-long window from ``start`` (it may leave ``[0, n_frame)``), resized to
    ``n_out`` with ``kernel``; ``flip`` mirrors the window (output 0 reads its far end)."""
    first, w = taps(length, n_out, kernel)
    T = w.shape[1]
    crop = first[:, None] + np.arange(T)[None, :]  # window coordinates
    frame = start + ((length - 1 - crop) if flip else crop)
    valid = (w > 0) & (frame >= 0) & (frame < n_frame) & (crop < length)
    w = np.where(valid, w, 0.0)
    inside = w.sum(axis=1)
    # a tap of weight 0 reads the output's first valid tap: it changes no sum, and no minimum or maximum
    used = frame[valid] if valid.any() else np.zeros(1, np.int64)
    lo, hi = int(used.min()), int(used.max()) + 1
    # an output with no tap in the frame reads the first index read at all (with weight 0)
    anchor = np.where(valid.any(axis=1), frame[np.arange(n_out), valid.argmax(axis=1)], lo)
    frame = np.where(valid, frame, anchor[:, None]).clip(lo, hi - 1)
    return AxisTaps(torch.from_numpy(frame).to(device), torch.from_numpy(w.astype(np.float32)).to(device),
                    torch.from_numpy(inside.astype(np.float32)).to(device), lo, hi, bool(start < 0 or start + length > n_frame))


def _band_matrix(ax: AxisTaps, o0: int, o1: int) -> tuple[torch.Tensor, int, int]:
    """The dense weights of outputs ``o0:o1`` over the frame indices they read: ``(M, a, b)``."""
    idx, w = ax.index[o0:o1], ax.weight[o0:o1]
    used = idx[w > 0]
    if used.numel() == 0:
        return torch.zeros(o1 - o0, 1, device=w.device), 0, 1
    a, b = int(used.min()), int(used.max()) + 1
    M = torch.zeros(o1 - o0, b - a, device=w.device)
    M.scatter_add_(1, (idx - a).clamp(0, b - a - 1), w)  # weight-0 taps (clamped) add nothing
    return M, a, b


_SCALE_BIAS = torch.tensor([1.0, 0.0], dtype=torch.float32).view(torch.uint8)  # a packed row's float32 scale 1 and bias 0


def _rows_by_taps(frame: torch.Tensor, ys: AxisTaps, c0: int, c1: int) -> torch.Tensor:
    """The vertical pass on the CPU: each output row the weighted sum of the frame rows it taps,
    in one fused gather (a quantised embedding bag whose rows are the uint8 frame rows with scale 1
    and bias 0, so nothing is converted to float first). (h, window columns * 3) float32."""
    R = frame[:, c0:c1].reshape(frame.shape[0], -1)
    packed = torch.empty(R.shape[0], R.shape[1] + 8, dtype=torch.uint8)
    packed[:, :-8] = R
    packed[:, -8:] = _SCALE_BIAS
    h, T = ys.index.shape
    offsets = torch.arange(0, h * T, T)
    return torch.ops.quantized.embedding_bag_byte_rowwise_offsets(packed, ys.index.reshape(-1), offsets, False, 0, False,
                                                                  ys.weight.reshape(-1), None, False)


def _rows_by_bands(frame: torch.Tensor, ys: AxisTaps, c0: int, c1: int) -> torch.Tensor:
    """The vertical pass anywhere: bands of output rows, each a small matrix product over the rows it reads."""
    h = ys.index.shape[0]
    rows = torch.empty(h, (c1 - c0) * frame.shape[2], dtype=torch.float32, device=frame.device)
    band = IMAGE_BAND if frame.device.type == "cpu" else h  # a GPU takes the whole (h x rows) product at once
    for o0 in range(0, h, band):
        o1 = min(o0 + band, h)
        M, a, b = _band_matrix(ys, o0, o1)
        rows[o0:o1] = M @ frame[a:b, c0:c1].to(torch.float32).reshape(b - a, -1)
    return rows


def resize_window_image(frame: torch.Tensor, ys: AxisTaps, xs: AxisTaps, pad: float = 127.0, method: str = "auto") -> torch.Tensor:
    """``frame`` (H, W, 3) uint8 (or float) -> the window as (3, h, w) float32 in the frame's value range.

    ``method``: ``taps`` (the CPU's fused gather of uint8 rows), ``bands`` (matrix products over
    bands of rows; any device, the whole product at once on a GPU), or ``auto`` (taps for uint8 on
    the CPU where PyTorch has the kernel, else bands). All give the same result within float32 rounding."""
    h, w = ys.index.shape[0], xs.index.shape[0]
    c0, c1 = xs.lo, xs.hi
    if method == "auto":
        method = "taps" if frame.device.type == "cpu" and frame.dtype == torch.uint8 and _HAS_BYTE_BAG else "bands"
    rows = _rows_by_taps(frame.contiguous(), ys, c0, c1) if method == "taps" else _rows_by_bands(frame, ys, c0, c1)
    # horizontal: the same gather over columns, the rows' layout transposed so that columns are table rows
    table = rows.reshape(h, c1 - c0, -1).permute(1, 0, 2).reshape(c1 - c0, -1)
    T = xs.index.shape[1]
    offsets = torch.arange(0, w * T, T, device=frame.device)
    cols = torch.nn.functional.embedding_bag(xs.index.reshape(-1) - c0, table, offsets, mode="sum",
                                             per_sample_weights=xs.weight.reshape(-1))
    out = cols.reshape(w, h, -1).permute(2, 1, 0).contiguous()
    if ys.leaves_frame or xs.leaves_frame:  # the padded part of the window holds ``pad``
        out += pad * (1.0 - ys.inside[:, None] * xs.inside[None, :])
    return out


def _has_byte_bag() -> bool:
    try:
        probe = torch.zeros(1, 9, dtype=torch.uint8)
        probe[:, 1:] = _SCALE_BIAS
        torch.ops.quantized.embedding_bag_byte_rowwise_offsets(probe, torch.zeros(1, dtype=torch.int64), torch.zeros(1, dtype=torch.int64),
                                                              False, 0, False, torch.ones(1), None, False)
        return True
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


_HAS_BYTE_BAG = _has_byte_bag()


def _values(label: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """The label frame as it is tapped: uint8 frames as they are (void stays ``ignore_index``, mapped
    to the void bin only where gathered); other integer frames mapped once (void -> ``num_classes``)."""
    if label.dtype == torch.uint8 and num_classes <= ignore_index <= 255:
        return label
    from edgeseg.data.resample import _class_map as general

    return general(label.cpu(), num_classes, ignore_index).to(label.device)


def _bins(values: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """Tapped label values -> class bins (void -> ``num_classes``), refusing values that are neither."""
    v = values.long()
    void = v == ignore_index
    bad = ~void & ((v < 0) | (v >= num_classes)) & (v != num_classes)
    if bool(bad.any()):
        found = torch.unique(v[bad])[:8].tolist()
        raise DataError(f"label values {found} are neither a class (0..{num_classes - 1}) nor the ignore index {ignore_index}")
    return torch.where(void, torch.full_like(v, num_classes), v)


def _tap_extremes(cls: torch.Tensor, ys: AxisTaps, xs: AxisTaps) -> tuple[torch.Tensor, torch.Tensor]:
    """The smallest and largest label value over each output cell's taps (weight-0 taps repeat a
    valid one). Rows are gathered whole (a copy each), then the same on the transposed result."""
    cols = cls[:, xs.lo : xs.hi]
    vmin = vmax = cols.index_select(0, ys.index[:, 0])
    for t in range(1, ys.index.shape[1]):
        rows = cols.index_select(0, ys.index[:, t])
        vmin, vmax = torch.minimum(vmin, rows), torch.maximum(vmax, rows)
    tmin, tmax = vmin.t().contiguous(), vmax.t().contiguous()  # (window columns, h)
    x = xs.index - xs.lo
    lo, hi = tmin.index_select(0, x[:, 0]), tmax.index_select(0, x[:, 0])
    for t in range(1, x.shape[1]):
        lo, hi = torch.minimum(lo, tmin.index_select(0, x[:, t])), torch.maximum(hi, tmax.index_select(0, x[:, t]))
    return lo.t(), hi.t()


_LUTS: dict = {}


def _bins(values: torch.Tensor, num_classes: int, ignore_index: int, strict: bool = True) -> torch.Tensor:
    """Tapped label values -> class bins (void -> ``num_classes``) as int64, refusing values that are
    neither (``strict=False``: -1 for them)."""
    key = (num_classes, ignore_index, values.device)
    if key not in _LUTS:
        lut = torch.full((max(256, ignore_index + 1, num_classes + 1),), -1, dtype=torch.int64)
        lut[:num_classes] = torch.arange(num_classes)
        lut[ignore_index] = num_classes
        lut[num_classes] = num_classes  # frames already mapped (void -> num_classes)
        _LUTS[key] = lut.to(values.device)
    lut = _LUTS[key]
    if values.dtype != torch.uint8 and bool(((values < 0) | (values >= lut.numel())).any()):
        raise DataError(f"label values outside 0..{lut.numel() - 1}; expected classes 0..{num_classes - 1} or the ignore index {ignore_index}")
    bins = lut.index_select(0, values.reshape(-1).long()).reshape(values.shape)
    if strict and bool((bins < 0).any()):
        found = torch.unique(values[bins < 0])[:8].tolist()
        raise DataError(f"label values {found} are neither a class (0..{num_classes - 1}) nor the ignore index {ignore_index}")
    return bins


def downsample_window_labels(label: torch.Tensor, ys: AxisTaps, xs: AxisTaps, num_classes: int, ignore_index: int = 255,
                             weight: torch.Tensor | None = None, weight_scale: float = 1.0, sparse: bool = False):
    """``label`` (H, W) integer frame -> the window's class mass ``(C, h, w)`` and valid mass ``(h, w)``
    under the kernel the taps carry (void and the outside of the frame hold no mass). ``weight``
    ((H, W), times ``weight_scale``) scales each pixel's contribution (top-2 soft labels are the sum
    of two calls); only the pixels the taps read are converted.

    With ``sparse`` (no ``weight``) the mass comes as a ``SparseMass`` dict instead: each cell's
    class where all its taps hold one (``cls``, ``num_classes`` for void, ``num_classes + 1`` where
    they do not) with its mass (``weight``), and the (cell, class, mass) entries of the other cells;
    ``dense_mass`` turns it (or a batch of them) into the dense form, on any device."""
    h, w = ys.index.shape[0], xs.index.shape[0]
    cls = _values(label, num_classes, ignore_index)
    if sparse:
        if weight is not None or cls.device.type != "cpu" or cls.dtype != torch.uint8:
            raise ValueError("sparse soft targets are made on the CPU from uint8 label frames without per-pixel weights")
        return _sparse_on_cpu(cls, ys, xs, num_classes, ignore_index)
    if weight is None:
        lo, hi = _tap_extremes(cls, ys, xs)
        uniform = lo == hi
        inside = ys.inside[:, None] * xs.inside[None, :]
        bins = _bins(lo, num_classes, ignore_index)
        cells = torch.nonzero(~uniform.reshape(-1)).flatten()
    else:
        cells = torch.arange(h * w, device=label.device)
    oy, ox = cells // w, cells % w
    iy, wy = ys.index[oy], ys.weight[oy]  # (N, Ty)
    ix, wx = xs.index[ox], xs.weight[ox]  # (N, Tx)
    k = _bins(cls[iy[:, :, None], ix[:, None, :]], num_classes, ignore_index)  # (N, Ty, Tx)
    wt = wy[:, :, None] * wx[:, None, :]
    if weight is not None:
        wt = wt * (weight[iy[:, :, None], ix[:, None, :]].to(torch.float32) * weight_scale)
    full = torch.zeros(num_classes + 1, h, w, dtype=torch.float32, device=label.device)
    if weight is None:
        full.scatter_(0, bins[None], torch.where(uniform, inside, torch.zeros_like(inside))[None])
    full.view(-1).index_add_(0, (k * (h * w) + cells[:, None, None]).reshape(-1), wt.reshape(-1))
    mass = full[:num_classes]
    return mass, mass.sum(0)


def _sparse_on_cpu(cls: torch.Tensor, ys: AxisTaps, xs: AxisTaps, num_classes: int, ignore_index: int) -> dict:
    """The SparseMass of a uint8 frame on the CPU: the same computation in NumPy, whose small integer
    gathers and bincount cost less here than PyTorch's (tests hold the two equal)."""
    w = xs.index.shape[0]
    lo, hi = (v.numpy() for v in _tap_extremes(cls, ys, xs))
    lut = _bins(torch.arange(256, dtype=torch.uint8), num_classes, ignore_index, strict=False).numpy()
    uniform = lo == hi
    bins = lut[lo]
    if (bins[uniform] < 0).any():
        _bins(torch.from_numpy(lo[uniform]), num_classes, ignore_index)  # raises, naming the values
    inside = np.outer(ys.inside.numpy(), xs.inside.numpy())
    cells = np.flatnonzero(~uniform)
    oy, ox = cells // w, cells % w
    frame = cls.numpy()
    flat = (ys.index.numpy()[oy] * frame.shape[1])[:, :, None] + xs.index.numpy()[ox][:, None, :]
    k = lut[frame.reshape(-1)[flat]]
    if (k < 0).any():
        _bins(torch.from_numpy(frame.reshape(-1)[flat][k < 0]), num_classes, ignore_index)
    wt = ys.weight.numpy()[oy][:, :, None] * xs.weight.numpy()[ox][:, None, :]
    acc = np.bincount((np.arange(cells.size)[:, None, None] * (num_classes + 1) + k).ravel(), weights=wt.ravel(),
                      minlength=cells.size * (num_classes + 1))
    keep = np.flatnonzero(acc)
    keep = keep[keep % (num_classes + 1) != num_classes]  # void holds no mass
    return {"sparse_cls": torch.from_numpy(np.where(uniform, bins, num_classes + 1).astype(np.int16)),
            "sparse_weight": torch.from_numpy(np.where(uniform, inside, 0.0).astype(np.float32)),
            "sparse_cells": torch.from_numpy(cells[keep // (num_classes + 1)].astype(np.int32)),
            "sparse_classes": torch.from_numpy((keep % (num_classes + 1)).astype(np.int16)),
            "sparse_mass": torch.from_numpy(acc[keep].astype(np.float32))}


SPARSE_KEYS = ("sparse_cls", "sparse_weight", "sparse_cells", "sparse_classes", "sparse_mass")


def collate_sparse(targets: list[dict]) -> dict:
    """A batch of SparseMass dicts: the cell maps stacked, the entries joined (cells offset by sample)."""
    hw = targets[0]["sparse_cls"].numel()
    return {"sparse_cls": torch.stack([t["sparse_cls"] for t in targets]), "sparse_weight": torch.stack([t["sparse_weight"] for t in targets]),
            "sparse_cells": torch.cat([t["sparse_cells"].to(torch.int64) + b * hw for b, t in enumerate(targets)]),
            "sparse_classes": torch.cat([t["sparse_classes"] for t in targets]), "sparse_mass": torch.cat([t["sparse_mass"] for t in targets])}


def dense_mass(target: dict, num_classes: int) -> dict:
    """``{"mass": (B, C, h, w), "valid": (B, h, w)}`` from a (batched) SparseMass, on its device;
    any other target as it is."""
    if "sparse_cls" not in target:
        return target
    cls = target["sparse_cls"].to(torch.int64)
    squeeze = cls.dim() == 2
    if squeeze:
        target = {**target, **collate_sparse([target])}
        cls = target["sparse_cls"].to(torch.int64)
    B, h, w = cls.shape
    full = torch.zeros(B, num_classes + 2, h, w, dtype=torch.float32, device=cls.device)
    full.scatter_(1, cls[:, None], target["sparse_weight"][:, None])
    cells = target["sparse_cells"].to(torch.int64)
    flat = (cells // (h * w)) * ((num_classes + 2) * h * w) + target["sparse_classes"].to(torch.int64) * (h * w) + cells % (h * w)
    full.view(-1).index_add_(0, flat, target["sparse_mass"])
    mass = full[:, :num_classes]
    out = {"mass": mass, "valid": mass.sum(1)}
    out = {k: v[0] for k, v in out.items()} if squeeze else out
    return {**{k: v for k, v in target.items() if k not in SPARSE_KEYS}, **out}  # other targets (teacher, sr) as they are


def nearest_index(n_frame: int, start: int, length: int, n_out: int, flip: bool = False, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest (centre-aligned) sampling of a window along one axis: for each output, the frame index
    of the pixel at its centre (clamped) and whether that pixel lies inside the frame."""
    src = np.minimum(np.floor((np.arange(n_out) + 0.5) * (length / n_out)).astype(np.int64), length - 1)
    frame = start + ((length - 1 - src) if flip else src)
    inside = (frame >= 0) & (frame < n_frame)
    return torch.from_numpy(frame.clip(0, max(n_frame - 1, 0))).to(device), torch.from_numpy(inside).to(device)


def nearest_window_labels(label: torch.Tensor, rows, cols, ignore_index: int = 255) -> torch.Tensor:
    """The window's labels by nearest sampling (``rows``, ``cols``: ``nearest_index`` of each axis);
    void outside the frame."""
    (iy, in_y), (ix, in_x) = rows, cols
    out = label.index_select(0, iy).index_select(1, ix).to(torch.int64)
    return torch.where(in_y[:, None] & in_x[None, :], out, torch.full_like(out, ignore_index))
