"""Class-uniform sampling (Tao et al., NVIDIA 2020): a fraction of each epoch's crops are
centred on a pixel of a class chosen uniformly at random, so rare classes are seen often.

Class centroids are computed once per data set (the centroid of each class's pixels in
each tile of a grid over every label) and cached.
"""

from __future__ import annotations

import numpy as np

from edgeseg.data.base import SegDataset
from edgeseg.progress import Progress

GRID = 8  # tiles per side
MIN_PIXELS = 8  # a class needs this many pixels in a tile to leave a centroid there


def compute_centroids(ds: SegDataset, progress: bool = True) -> dict[int, np.ndarray]:
    """``{class: (n, 3) int32 array of (sample index, y, x)}`` over the whole data set."""
    C = ds.info.num_classes
    found: dict[int, list] = {c: [] for c in range(C)}
    bar = Progress(len(ds), "class-uniform: centroids", "img", enabled=progress)
    for i in range(len(ds)):
        lab = ds[i].label
        H, W = lab.shape
        ys = np.linspace(0, H, GRID + 1).astype(int)
        xs = np.linspace(0, W, GRID + 1).astype(int)
        for ty in range(GRID):
            for tx in range(GRID):
                tile = lab[ys[ty] : ys[ty + 1], xs[tx] : xs[tx + 1]]
                counts = np.bincount(tile[tile < C].ravel(), minlength=C)
                for c in np.nonzero(counts >= MIN_PIXELS)[0]:
                    yy, xx = np.nonzero(tile == c)
                    found[int(c)].append((i, ys[ty] + int(yy.mean()), xs[tx] + int(xx.mean())))
        bar.update()
    bar.close()
    return {c: np.asarray(v, dtype=np.int32).reshape(-1, 3) for c, v in found.items()}


def cached_centroids(ds: SegDataset, progress: bool = True) -> dict[int, np.ndarray]:
    from edgeseg.data.label_stats import cached_label_stats

    C, n = ds.info.num_classes, len(ds)

    def valid(arrays) -> bool:  # c<class> -> (K, 3) int rows of (sample, y, x) within the data set
        return all(k[:1] == "c" and k[1:].isdigit() and int(k[1:]) < C and v.ndim == 2 and v.shape[1] == 3 and v.dtype.kind in "iu"
                   and (v.size == 0 or (v.min() >= 0 and v[:, 0].max() < n)) for k, v in arrays.items())

    arrays = cached_label_stats(ds, "class_uniform", [GRID, MIN_PIXELS],
                                lambda: {f"c{c}": v for c, v in compute_centroids(ds, progress).items()}, valid)
    return {int(k[1:]): v for k, v in arrays.items()}


def epoch_plan(n: int, fraction: float, centroids: dict[int, np.ndarray] | None, seed: int, epoch: int) -> list[tuple[int, tuple[int, int] | None]]:
    """``n`` items for one epoch: ``(sample index, crop centre or None)``, in random order."""
    rng = np.random.default_rng([seed, epoch, 104729])
    k = int(round(fraction * n)) if centroids else 0
    classes = [c for c, v in (centroids or {}).items() if len(v)]
    items: list[tuple[int, tuple[int, int] | None]] = []
    for _ in range(k if classes else 0):
        c = classes[int(rng.integers(len(classes)))]
        i, y, x = centroids[c][int(rng.integers(len(centroids[c])))]
        items.append((int(i), (int(y), int(x))))
    items += [(int(i), None) for i in rng.permutation(n)[: n - len(items)]]
    order = rng.permutation(len(items))
    return [items[j] for j in order]
