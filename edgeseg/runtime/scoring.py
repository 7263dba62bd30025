"""Scoring a runner on a data set at native resolution: the one eval path, used by
training validation, calibration, ``edgeseg eval`` and the export checks.

The model runs at its input resolution; its scores are up-sampled bilinearly to
each image's native size and arg-maxed there, and compared with the original
labels (void ignored).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from edgeseg.data.base import SegDataset
from edgeseg.errors import ConfigError
from edgeseg.metrics import BoundaryIoU, ConfusionMatrix
from edgeseg.progress import Progress
from edgeseg.runtime.base import BaseRunner
from edgeseg.runtime.processing import Preprocess, native_labels


def iterate_batches(ds: SegDataset, batch: int, indices=None):
    indices = list(range(len(ds))) if indices is None else list(indices)
    for start in range(0, len(indices), batch):
        yield [ds[i] for i in indices[start : start + batch]]


def check_classes(meta, ds: SegDataset) -> None:
    """The model's classes are the data set's: their number, and their names in order where the
    model file names them (a model scored against another class list gives a meaningless mIoU)."""
    from edgeseg.data.base import classes_text

    names = tuple(meta.class_names or ()) if meta.dataset else ()  # a model without edgeseg metadata names no classes
    if meta.num_classes != ds.info.num_classes or (names and names != tuple(ds.info.class_names)):
        model = classes_text(names) if names else f"{meta.num_classes} classes"
        raise ConfigError(f"the model's classes ({model}) are not those of data set '{ds.info.name}' "
                          f"({classes_text(ds.info.class_names)}); give the data set it was trained on (--dataset/--data)")


def evaluate(runner: BaseRunner, ds: SegDataset, batch: int = 1, indices=None, progress: bool = True, desc: str = "eval",
             boundary: float | None = None) -> tuple[dict, ConfusionMatrix]:
    """Returns the eval summary (percentages) and the raw confusion matrix; with ``boundary`` (the
    band's width as a share of the image diagonal) the summary has the boundary IoU too."""
    meta = runner.meta
    check_classes(meta, ds)
    pre = Preprocess.from_meta(meta)
    cm = ConfusionMatrix(meta.num_classes)
    biou = BoundaryIoU(meta.num_classes, boundary) if boundary else None
    n = len(ds) if indices is None else len(indices)
    bar = Progress(n, desc, "img", enabled=progress)
    t0 = time.perf_counter()
    for samples in iterate_batches(ds, batch, indices):
        outputs = runner.infer(pre([s.image for s in samples]))
        for s, p in zip(samples, native_labels(outputs, [s.label.shape for s in samples], runner.name)):
            cm.update(torch.from_numpy(s.label), p)
            if biou is not None:
                biou.update(torch.from_numpy(np.asarray(s.label)), p)
        bar.update(len(samples))
    bar.close()
    summary = cm.summary(ds.info.class_names)
    summary.update(n_images=n, res=list(meta.res), backend=runner.backend, seconds=round(time.perf_counter() - t0, 3))
    if biou is not None:
        summary["boundary_iou"] = biou.summary(ds.info.class_names)
    return summary, cm
