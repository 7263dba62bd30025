"""Learning-rate schedule as a pure function of the step: linear warm-up, then poly or cosine.

Its whole state is the step counter, so resuming restores it exactly.
"""

from __future__ import annotations

import math

import torch


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
