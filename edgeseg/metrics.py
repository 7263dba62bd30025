"""One confusion matrix for training validation, eval, label checks and parity, and the
boundary IoU that says whether masks are sharp."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


class ConfusionMatrix:
    """Accumulates ``(target, prediction)`` counts; out-of-range targets (void) are ignored."""

    def __init__(self, num_classes: int, device: str | torch.device = "cpu"):
        self.n = num_classes
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, target: torch.Tensor | np.ndarray, pred: torch.Tensor | np.ndarray) -> None:
        target = torch.as_tensor(target, device=self.mat.device).reshape(-1).to(torch.int64)
        pred = torch.as_tensor(pred, device=self.mat.device).reshape(-1).to(torch.int64)
        if target.shape != pred.shape:
            raise ValueError(f"target has {target.numel()} pixels, prediction {pred.numel()}")
        keep = (target >= 0) & (target < self.n)
        idx = target[keep] * self.n + pred[keep].clamp(0, self.n - 1)
        self.mat += torch.bincount(idx, minlength=self.n * self.n).view(self.n, self.n)

    def iou(self) -> torch.Tensor:
        """Per-class IoU; NaN for classes absent from both target and prediction."""
        m = self.mat.to(torch.float64).cpu()
        tp = m.diag()
        denom = m.sum(0) + m.sum(1) - tp
        return torch.where(denom > 0, tp / denom.clamp(min=1), torch.full_like(tp, float("nan")))

    def miou(self) -> float:
        iou = self.iou()
        present = ~torch.isnan(iou)
        return float(iou[present].mean()) * 100 if bool(present.any()) else float("nan")

    def pixel_accuracy(self) -> float:
        m = self.mat.to(torch.float64)
        total = float(m.sum())
        return float(m.diag().sum()) / total * 100 if total else float("nan")

    def summary(self, class_names: Sequence[str]) -> dict:
        """Percentages, JSON-ready; absent classes are ``None``."""
        iou = self.iou()
        per_class = {name: (None if torch.isnan(v) else round(float(v) * 100, 4)) for name, v in zip(class_names, iou)}
        return {"miou": round(self.miou(), 4), "pixel_acc": round(self.pixel_accuracy(), 4), "per_class": per_class}


BOUNDARY_RATIO = 0.02  # the boundary band's width as a share of the image diagonal (Cheng et al., CVPR 2021)


def boundary_band(masks: torch.Tensor, ratio: float = BOUNDARY_RATIO) -> torch.Tensor:
    """The inner boundary band of each binary mask ``(K, H, W)``: the mask less its erosion by a
    (2d+1)-square, d = max(1, round(ratio x diagonal)), the image's outside counting as background
    one pixel beyond the border (the boundary IoU paper's ``mask_to_boundary``)."""
    import torch.nn.functional as F

    K, H, W = masks.shape
    d = max(1, int(round(ratio * (H * H + W * W) ** 0.5)))
    x = F.pad(masks.to(torch.float32)[:, None], (1, 1, 1, 1), value=0.0)
    # erosion = -max(-x) over the square, separably; the pooling's own padding is -inf, so the outside erodes nothing
    y = F.max_pool2d(-x, (2 * d + 1, 1), stride=1, padding=(d, 0))
    eroded = -F.max_pool2d(y, (1, 2 * d + 1), stride=1, padding=(0, d))
    return masks & (eroded[:, 0, 1 : H + 1, 1 : W + 1] < 0.5)


class BoundaryIoU:
    """Per-class boundary IoU over a data set: for each class, the pixels of the label's and of the
    prediction's mask that lie within the boundary band of that mask, intersected and united over
    all images (void pixels left out), as the confusion matrix does for mIoU."""

    def __init__(self, num_classes: int, ratio: float = BOUNDARY_RATIO):
        self.n, self.ratio = num_classes, ratio
        self.inter = torch.zeros(num_classes, dtype=torch.int64)
        self.union = torch.zeros(num_classes, dtype=torch.int64)

    def update(self, target, pred) -> None:
        target = torch.as_tensor(target).to(torch.int64)
        pred = torch.as_tensor(pred).to(torch.int64)
        valid = (target >= 0) & (target < self.n)
        classes = torch.unique(torch.cat([target[valid], pred[valid]]))
        for c in classes.tolist():  # one class at a time bounds the memory (a few full-size planes)
            masks = torch.stack([target == c, pred == c])
            gt, pr = boundary_band(masks, self.ratio) & valid
            self.inter[c] += int((gt & pr).sum())
            self.union[c] += int((gt | pr).sum())

    def summary(self, class_names: Sequence[str]) -> dict:
        iou = torch.where(self.union > 0, self.inter.double() / self.union.clamp(min=1), torch.full((self.n,), float("nan"), dtype=torch.float64))
        per_class = {name: (None if torch.isnan(v) else round(float(v) * 100, 4)) for name, v in zip(class_names, iou)}
        present = ~torch.isnan(iou)
        mean = round(float(iou[present].mean()) * 100, 4) if bool(present.any()) else None
        return {"per_class": per_class, "mean": mean, "band_ratio": self.ratio}


def format_table(rows: dict[str, dict[str, float | None]], columns: Sequence[str], title: str = "class") -> str:
    """A plain-text table: one row per key of ``rows``, one column per name in ``columns``."""
    width = max([len(title)] + [len(k) for k in rows]) + 2
    head = title.ljust(width) + "".join(c.rjust(max(len(c) + 2, 10)) for c in columns)
    lines = [head, "-" * len(head)]
    for name, vals in rows.items():
        cells = []
        for c in columns:
            v = vals.get(c)
            cells.append(("-" if v is None else f"{v:.2f}").rjust(max(len(c) + 2, 10)))
        lines.append(name.ljust(width) + "".join(cells))
    return "\n".join(lines)
