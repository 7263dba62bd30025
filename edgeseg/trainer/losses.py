"""Losses for soft and hard label targets.

Soft targets are class *mass* (sums to the valid mass, not to one): void is kept
apart, and every loss is normalised by the summed valid mass so that
partly-void pixels count for what they hold.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-6


def soft_cross_entropy(logits: torch.Tensor, mass: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """sum over pixels and classes of -t_c log p_c, divided by the summed valid mass."""
    logp = F.log_softmax(logits.float(), dim=1)
    return -(mass * logp).sum() / valid.sum().clamp(min=EPS)


def soft_kl(logits: torch.Tensor, mass: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """KL(t || p) with t = mass / valid per pixel, weighted by valid mass; same gradient as
    the cross-entropy, but zero at a perfect fit (0 log 0 = 0)."""
    logp = F.log_softmax(logits.float(), dim=1)
    t = mass / valid.unsqueeze(1).clamp(min=EPS)
    plogt = torch.where(mass > 0, mass * torch.log(t.clamp(min=EPS)), torch.zeros_like(mass))
    return (plogt - mass * logp).sum() / valid.sum().clamp(min=EPS)


def hard_cross_entropy(logits: torch.Tensor, label: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    return F.cross_entropy(logits.float(), label, ignore_index=ignore_index)


SOFT_LOSSES = {"ce": soft_cross_entropy, "kl": soft_kl}


def compute_loss(logits, target: dict, kind: str = "ce", ignore_index: int = 255) -> torch.Tensor:
    """The training loss of a model output: logits, or a dict with the main ``logits`` plus
    ``aux`` predictions weighted by ``aux_weight`` (multi-scale attention)."""
    if isinstance(logits, dict):
        loss = compute_loss(logits["logits"], target, kind, ignore_index)
        for aux in logits.get("aux", ()):
            loss = loss + logits["aux_weight"] * compute_loss(aux, target, kind, ignore_index)
        return loss
    if "label" in target:
        return hard_cross_entropy(logits, target["label"], ignore_index)
    return SOFT_LOSSES[kind](logits, target["mass"], target["valid"])
