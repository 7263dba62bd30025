"""Statistics of a data set's labels (class pixel counts, class centroids), computed once
and cached under the cache folder, keyed by what the labels are (``SegDataset.fingerprint``),
so an edited label file invalidates them."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Callable

import numpy as np

from edgeseg.data.base import SegDataset
from edgeseg.progress import Progress

logger = logging.getLogger(__name__)

COUNTS_FORMAT = 1  # bump when what class_pixel_counts counts changes: older cache files are then not reused


def cached_label_stats(ds: SegDataset, kind: str, params: list, compute: Callable[[], dict[str, np.ndarray]],
                       valid: Callable[[dict[str, np.ndarray]], bool] = lambda arrays: True) -> dict[str, np.ndarray]:
    """``compute()`` (named arrays) for ``ds``, from the cache when the labels are unchanged. A cache
    file that cannot be read or fails ``valid`` (damaged, written by something else) is said and
    made again, never trusted."""
    import zipfile

    from edgeseg.errors import ConfigError, NotAFileError
    from edgeseg.fileio import atomic_path, cache_folder

    key = hashlib.sha256(json.dumps([ds.fingerprint(), *params]).encode()).hexdigest()[:20]
    try:
        path = cache_folder(kind) / f"{ds.info.name}-{ds.split}-{key}.npz"
    except ConfigError as exc:  # a cache only saves time: said, and the statistics computed without it
        logger.warning(f"{exc}; computing the {kind} without caching them")
        return compute()
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            if valid(arrays):
                logger.info(f"{kind} from cache {path}")
                return arrays
            why = "its contents do not fit this data set"
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            why = f"unreadable ({type(exc).__name__})"
        logger.warning(f"{path}: {kind} cache {why}; computing it again")
    arrays = compute()
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
    except (OSError, NotAFileError) as exc:  # a full disk, a link put there: the statistics are here all the same
        logger.warning(f"{path}: cannot write the {kind} cache ({getattr(exc, 'strerror', None) or exc}); going on without it")
        return arrays
    logger.info(f"{kind} cached at {path}")
    return arrays


def class_pixel_counts(ds: SegDataset, progress: bool = True) -> np.ndarray:
    """Labelled pixels of each class over the whole data set at native resolution (void left out)."""
    C = ds.info.num_classes

    def compute():
        counts = np.zeros(C, dtype=np.int64)
        bar = Progress(len(ds), "class frequencies", "img", enabled=progress)
        for i in range(len(ds)):
            lab = ds[i].label
            counts += np.bincount(lab[lab < C].ravel(), minlength=C)[:C]
            bar.update()
        bar.close()
        return {"counts": counts}

    def valid(arrays) -> bool:
        counts = arrays.get("counts")
        return counts is not None and counts.shape == (C,) and counts.dtype.kind in "iu" and bool((counts >= 0).all())

    return cached_label_stats(ds, "class_counts", [C, COUNTS_FORMAT], compute, valid)["counts"]
