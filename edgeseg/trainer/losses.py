"""Losses for soft and hard label targets.

Soft targets are class *mass* (sums to the valid mass, not to one): void is kept
apart, and every loss is normalised by the summed valid mass so that
partly-void pixels count for what they hold.

Class weights (``--class-weights``) scale each class's share of the loss; the
normaliser is then the weighted valid mass, as in ``F.cross_entropy(weight=...)``: a batch
is a weighted mean over its pixels, so the weights shift pixels' shares within a batch, not
the loss's scale between batches.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

EPS = 1e-6
CLASS_WEIGHTS = ("none", "log", "sqrt")


def _weighted(mass: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    return mass if weight is None else mass * weight.to(mass).view(1, -1, 1, 1)


def soft_cross_entropy(logits: torch.Tensor, mass: torch.Tensor, valid: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """sum over pixels and classes of -w_c t_c log p_c, divided by the summed (weighted) valid mass."""
    logp = F.log_softmax(logits.float(), dim=1)
    wm = _weighted(mass, weight)
    norm = valid.sum() if weight is None else wm.sum()
    return -(wm * logp).sum() / norm.clamp(min=EPS)


def soft_kl(logits: torch.Tensor, mass: torch.Tensor, valid: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """KL(t || p) with t = mass / valid per pixel, weighted by valid mass; same gradient as
    the cross-entropy, but zero at a perfect fit (0 log 0 = 0). With class weights it is the
    weighted sum of the per-class terms: same gradient as the weighted cross-entropy, and no
    longer a divergence (its minimum is below zero, at p proportional to w * t)."""
    logp = F.log_softmax(logits.float(), dim=1)
    t = mass / valid.unsqueeze(1).clamp(min=EPS)
    plogt = torch.where(mass > 0, mass * torch.log(t.clamp(min=EPS)), torch.zeros_like(mass))
    wm = _weighted(mass, weight)
    norm = valid.sum() if weight is None else wm.sum()
    return (_weighted(plogt, weight) - wm * logp).sum() / norm.clamp(min=EPS)


def hard_cross_entropy(logits: torch.Tensor, label: torch.Tensor, ignore_index: int = 255, weight: torch.Tensor | None = None) -> torch.Tensor:
    return F.cross_entropy(logits.float(), label, weight=None if weight is None else weight.to(logits.device, torch.float32),
                           ignore_index=ignore_index)


SOFT_LOSSES = {"ce": soft_cross_entropy, "kl": soft_kl}


def class_weights(counts, scheme: str) -> np.ndarray | None:
    """Per-class loss weights from the training labels' class pixel counts, or None for ``none``.

    ``log``: 1 / ln(1.02 + f_c) (Paszke et al., ENet 2016), bounded for rare classes;
    ``sqrt``: 1 / sqrt(f_c), milder on frequent classes. f_c is the class's share of the
    labelled pixels. Weights are scaled so that their pixel-weighted mean is 1, so they read as
    multiples of an average pixel's weight; a class absent from the labels gets the
    largest weight of the present ones (it contributes nothing to the loss either way).
    """
    if scheme == "none":
        return None
    counts = np.asarray(counts, dtype=np.float64)
    if counts.sum() <= 0:
        return None
    f = counts / counts.sum()
    present = f > 0
    w = np.zeros_like(f)
    if scheme == "log":
        w[present] = 1.0 / np.log(1.02 + f[present])
    elif scheme == "sqrt":
        w[present] = 1.0 / np.sqrt(f[present])
    else:
        raise ValueError(f"unknown class-weight scheme {scheme!r}")
    w[~present] = w[present].max()
    return w / float((f * w).sum())


def training_loss(out, target: dict, kind: str = "ce", ignore_index: int = 255, weight: torch.Tensor | None = None,
                  distill_weight: float = 0.0, temperature: float = 1.0, sr_weight: float = 0.0, normalise=None,
                  distill_class_weights: bool = False) -> torch.Tensor:
    """The whole training loss: the label loss (compute_loss), with a teacher's map in ``target``
    ``(1 - distill_weight) * label loss + distill_weight * T^2 KL(teacher || student)`` (weighted by
    ``weight`` as the label loss is where ``distill_class_weights``), plus
    ``sr_weight`` times the SR auxiliary's mean squared error where the output has one."""
    sr = out.pop("sr", None) if isinstance(out, dict) else None
    if isinstance(out, dict) and set(out) == {"logits"}:
        out = out["logits"]
    loss = compute_loss(out, target, kind, ignore_index, weight)
    if "teacher_mass" in target and distill_weight > 0:
        main = out["logits"] if isinstance(out, dict) else out
        loss = (1 - distill_weight) * loss + distill_weight * distill_loss(main, target["teacher_mass"], target["teacher_valid"], temperature,
                                                                             weight if distill_class_weights else None)
    if sr is not None and sr_weight > 0:
        loss = loss + sr_weight * F.mse_loss(sr.float(), normalise(target["sr"]))
    return loss


def compute_loss(logits, target: dict, kind: str = "ce", ignore_index: int = 255, weight: torch.Tensor | None = None) -> torch.Tensor:
    """The training loss of a model output: logits, or a dict with the main ``logits`` plus
    ``aux`` predictions weighted by ``aux_weight`` (multi-scale attention)."""
    if isinstance(logits, dict):
        loss = compute_loss(logits["logits"], target, kind, ignore_index, weight)
        for aux in logits.get("aux", ()):
            loss = loss + logits["aux_weight"] * compute_loss(aux, target, kind, ignore_index, weight)
        return loss
    if "label" in target:
        return hard_cross_entropy(logits, target["label"], ignore_index, weight)
    return SOFT_LOSSES[kind](logits, target["mass"], target["valid"], weight)


def distill_loss(logits: torch.Tensor, mass: torch.Tensor, valid: torch.Tensor, temperature: float,
                 weight: torch.Tensor | None = None) -> torch.Tensor:
    """``T^2 * KL(t || softmax(z / T))`` with ``t = mass / valid`` per pixel, averaged by ``valid``:
    the soft label loss ``soft_kl`` at temperature T. With class weights ``weight``
    (``--distill-class-weights``) it is weighted as the label loss is: the sum of ``w_c`` times each
    class's term over the weighted teacher mass."""
    return temperature**2 * soft_kl(logits.float() / temperature, mass, valid, weight)
