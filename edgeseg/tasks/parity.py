"""Parity in task terms: two runners on the same real images, compared as segmentations.

Each runner gets its own pre-processing (their input layouts may differ), both
outputs are taken to native resolution, and the report gives pixel agreement,
the mIoU of each against the labels and its change, per-class IoU changes, and
the logit differences where both models expose logits of the same shape.
"""

from __future__ import annotations

import numpy as np
import torch

from edgeseg.data.base import SegDataset
from edgeseg.export.formats import FP32_MAX_DELTA_MIOU, FP32_MIN_AGREEMENT
from edgeseg.metrics import ConfusionMatrix
from edgeseg.progress import Progress
from edgeseg.runtime.base import BaseRunner
from edgeseg.runtime.processing import Preprocess, native_labels
from edgeseg.runtime.scoring import check_classes, iterate_batches



def compare_runners(model: BaseRunner, reference: BaseRunner, ds: SegDataset, indices=None, batch: int = 1, progress: bool = True) -> dict:
    check_classes(model.meta, ds)  # each scored against the labels: their classes must be the data set's, as plain eval checks
    check_classes(reference.meta, ds)
    if model.meta.num_classes != reference.meta.num_classes:
        from edgeseg.errors import ConfigError

        raise ConfigError(f"the model has {model.meta.num_classes} classes and the reference {reference.meta.num_classes}; they cannot be compared")
    n_classes = model.meta.num_classes
    pre_m, pre_r = Preprocess.from_meta(model.meta), Preprocess.from_meta(reference.meta)
    if "nhwc-uint8" in (model.meta.input_layout, reference.meta.input_layout):
        # Compare the graphs on the same input: a uint8-input model sees the resized image rounded.
        from dataclasses import replace

        pre_m, pre_r = replace(pre_m, round_uint8=True), replace(pre_r, round_uint8=True)
    cm_m, cm_r = ConfusionMatrix(n_classes), ConfusionMatrix(n_classes)
    per_image = []  # (model, reference) confusion matrices of each image, for the bootstrap interval
    agree = total = 0
    max_diff, sum_diff, n_diff, comparable = 0.0, 0.0, 0, True
    non_finite = {"model": 0, "reference": 0}  # images whose scores hold NaN or infinities
    n = len(ds) if indices is None else len(indices)
    bar = Progress(n, "parity", "img", enabled=progress)
    with model, reference:
        for samples in iterate_batches(ds, batch, indices):
            images = [s.image for s in samples]
            out_m, out_r = model.infer(pre_m(images)), reference.infer(pre_r(images))
            for key, out in (("model", out_m), ("reference", out_r)):
                if "logits" in out:
                    non_finite[key] += int((~np.isfinite(out["logits"].reshape(len(samples), -1))).any(1).sum())
            if "logits" in out_m and "logits" in out_r and out_m["logits"].shape == out_r["logits"].shape:
                d = np.abs(out_m["logits"].astype(np.float64) - out_r["logits"].astype(np.float64))
                max_diff = max(max_diff, float(d.max()))
                sum_diff += float(d.sum())
                n_diff += d.size
            else:
                comparable = False
            sizes = [s.label.shape for s in samples]
            for s, lm, lr in zip(samples, native_labels(out_m, sizes, None), native_labels(out_r, sizes, None)):
                agree += int((lm == lr).sum())
                total += lm.numel()
                gt = torch.from_numpy(s.label)
                one_m, one_r = ConfusionMatrix(n_classes), ConfusionMatrix(n_classes)
                one_m.update(gt, lm)
                one_r.update(gt, lr)
                per_image.append((one_m.mat.clone(), one_r.mat.clone()))
                cm_m.mat += one_m.mat
                cm_r.mat += one_r.mat
            bar.update(len(samples))
    bar.close()
    names = ds.info.class_names
    sm, sr = cm_m.summary(names), cm_r.summary(names)
    per_class_delta = {
        c: (None if sm["per_class"][c] is None or sr["per_class"][c] is None else round(sm["per_class"][c] - sr["per_class"][c], 4))
        for c in names
    }
    parity = {
        "reference": reference.name,
        "reference_backend": reference.backend,
        "n_images": n,
        "pixel_agreement": round(100.0 * agree / max(total, 1), 5),
        "model_miou": sm["miou"],
        "reference_miou": sr["miou"],
        "delta_miou": round(sm["miou"] - sr["miou"], 4),
        "delta_miou_interval": bootstrap_delta_interval(per_image),
        "per_class_delta": per_class_delta,
        "reference_per_class": sr["per_class"],
        "non_finite_scores": non_finite,
        "max_abs_logit_diff": max_diff if comparable and n_diff else None,
        "mean_abs_logit_diff": (sum_diff / n_diff) if comparable and n_diff else None,
    }
    model_summary = {**sm, "n_images": n, "res": list(model.meta.res), "backend": model.backend, "confusion": cm_m.mat.tolist()}
    return {"model": model_summary, "reference": {**sr, "backend": reference.backend}, "parity": parity}


def _miou_of(mats: torch.Tensor) -> torch.Tensor:
    """mIoU (percent) of a batch of confusion matrices ``(B, C, C)``, over classes present in each."""
    mats = mats.to(torch.float64)
    tp = mats.diagonal(dim1=1, dim2=2)
    union = mats.sum(1) + mats.sum(2) - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.nan)
    return 100.0 * torch.nanmean(iou, dim=1)


def bootstrap_delta_interval(per_image, resamples: int = 1000, seed: int = 0) -> list[float] | None:
    """95% interval of the mIoU change (model - reference), images resampled with replacement."""
    if len(per_image) < 2:
        return None
    n = len(per_image)
    c = per_image[0][0].shape[0]
    m = torch.stack([a for a, _ in per_image]).reshape(n, c * c).to(torch.float64)
    r = torch.stack([b for _, b in per_image]).reshape(n, c * c).to(torch.float64)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (resamples, n), generator=gen)
    # how often each image is drawn in each resample: (resamples, n) weights, so memory stays resamples x C^2
    weights = torch.zeros(resamples, n, dtype=torch.float64).scatter_add_(1, idx, torch.ones(resamples, n, dtype=torch.float64))
    deltas = _miou_of((weights @ m).reshape(resamples, c, c)) - _miou_of((weights @ r).reshape(resamples, c, c))
    lo, hi = torch.quantile(deltas, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return [round(lo, 4), round(hi, 4)]


def parity_failures(parity: dict, min_agreement: float = FP32_MIN_AGREEMENT, max_delta_miou: float = FP32_MAX_DELTA_MIOU,
                    one_sided: bool = False) -> list[str]:
    """Reasons a parity report fails its thresholds (empty when it passes).

    ``one_sided``: ``max_delta_miou`` is a budget for *losing* mIoU (INT8, FP16, bf16), so a model
    that scores higher than its reference passes; otherwise any change beyond it fails (FP32, where
    a change either way means the graph computes something else)."""
    out = []
    for who, n in (parity.get("non_finite_scores") or {}).items():
        if n:
            out.append(f"the {who}'s scores are NaN or infinite on {n} image(s)")
    if parity["pixel_agreement"] < min_agreement:
        out.append(f"pixel agreement {parity['pixel_agreement']:.4f}% < {min_agreement}%")
    if one_sided:
        if parity["delta_miou"] < -max_delta_miou:
            out.append(f"mIoU change {parity['delta_miou']:+.4f} < -{max_delta_miou}")
    elif abs(parity["delta_miou"]) > max_delta_miou:
        out.append(f"|delta mIoU| {abs(parity['delta_miou']):.4f} > {max_delta_miou}")
    return out
