"""The closed-form W of the DUpsampling head, fitted on training labels and cached.

W holds the top C' eigenvectors of the Gram matrix of flattened r x r blocks of
training labels at the training resolution (soft or one-hot); blocks touching void
are skipped. The trainer sets it on a fresh ``DUpsampleHead`` before training.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)


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


def fitted_w(ds, res, r: int, channels: int, label_mode: str, kernel: str, limit: int | None = None, progress: bool = True) -> torch.Tensor:
    """W for this data set and resolution, from the cache when it was fitted before (a cache file
    that is damaged or of another shape is said and fitted again, never trusted)."""
    import numpy as np

    from edgeseg.data.label_stats import cached_label_stats

    C = ds.info.num_classes
    n_labels = len(ds) if limit is None else min(limit, len(ds))

    def compute() -> dict:
        gram, n_blocks = gram_from_dataset(ds, res, r, label_mode, kernel, limit, progress)
        if n_blocks == 0:
            from edgeseg.errors import DataError

            raise DataError(f"DUpsampling: no {r}x{r} label block of {ds.info.name}/{ds.split} at {res[0]}x{res[1]} is free of void")
        logger.info(f"DUpsampling W fitted on {n_blocks} blocks of {n_labels} labels")
        return {"W": fit_w(gram, channels).numpy(), "n_blocks": np.array(n_blocks)}

    def valid(arrays) -> bool:
        W = arrays.get("W")
        return W is not None and W.dtype == np.float32 and W.shape == (C * r * r, min(channels, C * r * r)) and bool(np.isfinite(W).all())

    arrays = cached_label_stats(ds, "dupsample", [list(res), r, channels, label_mode, kernel, ds.fingerprint(limit)], compute, valid)
    return torch.from_numpy(np.ascontiguousarray(arrays["W"]))
