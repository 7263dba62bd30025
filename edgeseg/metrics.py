"""One confusion matrix for training validation, eval, label checks and parity."""

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
