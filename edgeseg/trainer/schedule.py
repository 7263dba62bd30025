"""The optimiser, and the learning-rate schedule as a pure function of the step: linear warm-up,
then poly or cosine. The schedule's whole state is the step counter, so resuming restores it exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("poly", "cosine")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weights, not on biases and normalisation parameters."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(name: str, groups: list[dict], lr: float) -> torch.optim.Optimizer:
    """``name`` (OPTIMIZERS) over parameter ``groups`` (each with its weight decay)."""
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")


class LRSchedule:
    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, total_steps: int, kind: str = "poly", warmup: int = 0, power: float = 0.9, min_ratio: float = 0.0):
        self.optimizer = optimizer
        self.base_lr = base_lr
        self.total = max(int(total_steps), 1)
        self.kind = kind
        self.warmup = max(int(warmup), 0)
        self.power = power
        self.min_ratio = min_ratio
        self.step_count = 0
        self._apply()

    def factor(self, step: int) -> float:
        if self.warmup and step < self.warmup:
            return (step + 1) / self.warmup
        t = min((step - self.warmup) / max(self.total - self.warmup, 1), 1.0)
        if self.kind == "cosine":
            f = 0.5 * (1 + math.cos(math.pi * t))
        else:
            f = (1 - t) ** self.power
        return self.min_ratio + (1 - self.min_ratio) * f

    def lr(self) -> float:
        return self.base_lr * self.factor(self.step_count)

    def _apply(self) -> None:
        lr = self.lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"step": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step"])
        self._apply()
