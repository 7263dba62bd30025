"""Scoring a runner on a data set at native resolution: the one eval path.

The model runs at its input resolution; logits are up-sampled bilinearly to
each image's native size and arg-maxed there, and compared with the original
labels (void ignored).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from edgeseg.data.base import SegDataset
from edgeseg.metrics import ConfusionMatrix
from edgeseg.progress import Progress
from edgeseg.runtime.base import BaseRunner
from edgeseg.runtime.processing import Preprocess, scores_to_labels, upsample_labels


def preprocess_for(meta) -> Preprocess:
    """Native images -> the model's input: resized to the network resolution, or for a
    native-frame (guided) model to its native frame size, which the graph resizes itself."""
    return Preprocess(tuple(meta.input_res), meta.kernel, tuple(meta.mean), tuple(meta.std), meta.input_layout,
                      min_res=tuple(meta.res) if meta.native_res else None)


def native_labels(outputs: dict[str, np.ndarray], sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Model outputs -> one int64 label map per image at its native ``(H, W)``."""
    out = []
    for i, size in enumerate(sizes):
        if "logits" in outputs:
            out.append(scores_to_labels(torch.from_numpy(outputs["logits"][i : i + 1]), size)[0])
        else:
            out.append(upsample_labels(torch.from_numpy(outputs["labels"][i : i + 1].astype(np.int64)), size)[0])
    return out


def iterate_batches(ds: SegDataset, batch: int, indices=None):
    indices = list(range(len(ds))) if indices is None else list(indices)
    for start in range(0, len(indices), batch):
        yield [ds[i] for i in indices[start : start + batch]]


def evaluate(runner: BaseRunner, ds: SegDataset, batch: int = 1, indices=None, progress: bool = True, desc: str = "eval") -> tuple[dict, ConfusionMatrix]:
    """Returns the eval summary (percentages) and the raw confusion matrix."""
    meta = runner.meta
    if meta.num_classes != ds.info.num_classes:
        from edgeseg.errors import ConfigError

        raise ConfigError(
            f"the model predicts {meta.num_classes} classes but data set '{ds.info.name}' has {ds.info.num_classes}; "
            "evaluate on the data set it was trained on"
        )
    pre = preprocess_for(meta)
    cm = ConfusionMatrix(meta.num_classes)
    n = len(ds) if indices is None else len(indices)
    bar = Progress(n, desc, "img", enabled=progress)
    t0 = time.perf_counter()
    for samples in iterate_batches(ds, batch, indices):
        x = pre([s.image for s in samples])
        outputs = runner.infer(x)
        preds = native_labels(outputs, [s.label.shape for s in samples])
        for s, p in zip(samples, preds):
            cm.update(torch.from_numpy(s.label), p)
        bar.update(len(samples))
    bar.close()
    summary = cm.summary(ds.info.class_names)
    summary.update(n_images=n, res=list(meta.res), backend=runner.backend, seconds=round(time.perf_counter() - t0, 3))
    return summary, cm


def resolve_dataset(meta, dataset: str | None, data, split: str, skip_bad: bool, saved_root: str | None = None) -> SegDataset:
    """The data set to score on: as given, else the one the model was trained on."""
    from edgeseg.data import DATASETS, build_dataset
    from edgeseg.errors import ConfigError

    name = dataset or (meta.dataset if meta.dataset in DATASETS else None)
    if name is None:
        raise ConfigError(
            f"--dataset: the model does not say which data set it was trained on ({meta.dataset or 'no metadata'}); "
            "give --dataset and --data"
        )
    root = data if data is not None else (saved_root if name == meta.dataset else None)
    return build_dataset(name, root, split, skip_bad)


def evaluate_model(model, dataset=None, data=None, split="val", skip_bad=False, reference=None, batch=1, limit=None,
                   device="auto", providers=None, strict=False, progress=True, scales=None) -> dict:
    """``edgeseg eval``: score ``model`` (any backend) and, with ``reference``, report parity."""
    from edgeseg import runtime

    runner = runtime.load(model, device=device, providers=providers, strict=strict, scales=scales).activate()  # fail fast on a broken model
    ref_runner = runtime.load(reference, device=device, providers=providers).activate() if reference is not None else None
    # A checkpoint remembers where its data set lives; an ONNX model or engine does not.
    saved_root = runner.meta.extra.get("dataset_root") or (ref_runner.meta.extra.get("dataset_root") if ref_runner else None)
    ds = resolve_dataset(runner.meta, dataset, data, split, skip_bad, saved_root)
    indices = list(range(min(limit, len(ds)))) if limit else None
    if ref_runner is None:
        with runner:
            summary, _ = evaluate(runner, ds, batch, indices, progress)
    else:
        from edgeseg.runtime.compare import compare_runners

        report = compare_runners(runner, ref_runner, ds, indices=indices, batch=batch, progress=progress)
        summary = report["model"]
        summary["parity"] = report["parity"]
    summary.update(model=str(model), dataset=ds.info.name, split=split, skipped=ds.skipped)
    return summary
