"""One epoch of optimisation steps, shared by supervised training and contrastive
pretraining, and the Ctrl-C flag that stops it between steps."""

from __future__ import annotations

import resource
import signal
import time
from contextlib import nullcontext
from typing import Callable

import torch
import torch.nn as nn

from edgeseg.errors import TrainingStopped
from edgeseg.progress import Progress
from edgeseg.trainer.data import raise_if_error
from edgeseg.trainer.distributed import DistInfo, broadcast_flag
from edgeseg.trainer.losses import compute_loss
from edgeseg.trainer.schedule import LRSchedule


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C, and a scheduler's or container's stop (Slurm, docker stop)


class StopFlag:
    """Ctrl-C (or SIGTERM) sets the flag and the loop stops after the current step, saving where it
    stood; a second one aborts."""

    def __init__(self):
        self.set = False
        self._previous = {}

    def __enter__(self):
        def handler(signum, frame):
            if self.set:
                raise KeyboardInterrupt
            self.set = True

        self._previous = {}
        for s in STOP_SIGNALS:
            try:
                self._previous[s] = signal.signal(s, handler)
            except ValueError:  # not the main thread: leave the signals alone
                break
        return self

    def __exit__(self, *exc):
        for s, previous in self._previous.items():
            # None: the handler was installed from C (an embedding host); the default is the nearest Python can restore
            signal.signal(s, previous if previous is not None else signal.SIG_DFL)


AMP_MODES = ("off", "auto", "bf16", "fp16")


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "off":  # TrainConfig has checked the value
        return None
    if device.type != "cuda":
        return None
    if amp == "fp16" or (amp == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda-allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu-max-rss"


def train_one_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    schedule: LRSchedule,
    scaler: torch.amp.GradScaler,
    *,
    device: torch.device,
    normalise: Callable[[torch.Tensor], torch.Tensor],
    loss_fn: Callable[[object, dict], torch.Tensor] = compute_loss,
    autocast_dtype: torch.dtype | None = None,
    clip_grad: float = 0.0,
    max_steps: int | None = None,
    stop: StopFlag | None = None,
    dist_info: DistInfo = DistInfo(),
    progress: Progress | None = None,
    on_step: Callable[[int], None] | None = None,
    prepare: Callable[[object], tuple] | None = None,
) -> dict:
    """One pass over ``loader``; returns mean loss, images/s and steps done.

    ``prepare`` turns what the loader yields into ``(images, target)`` on the device (the
    ``--augment-on device`` path); without it the loader yields them.
    Stops early after ``max_steps`` steps or when ``stop`` is set (between
    steps, so optimiser state is always consistent). Raises ``TrainingStopped``
    on a non-finite loss without taking the step.
    """
    model.train()
    channels_last = torch.channels_last
    total_loss = torch.zeros((), device=device)
    steps = images = 0
    t0 = time.perf_counter()
    for batch in loader:
        raise_if_error(batch, dist_info)
        x, target = prepare(batch) if prepare is not None else batch
        x = normalise(x.to(device, non_blocking=True)).contiguous(memory_format=channels_last)
        target = {k: v.to(device, non_blocking=True) for k, v in target.items()}
        ctx = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
        with ctx:
            out = model(x)
        loss = loss_fn(out, target)
        if broadcast_flag(not bool(torch.isfinite(loss)), dist_info):
            raise TrainingStopped(f"loss became {loss.item()} at step {schedule.step_count}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if clip_grad > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        scaler.step(optimizer)
        scaler.update()
        schedule.step()
        total_loss += loss.detach()
        steps += 1
        images += x.shape[0] * dist_info.world
        if progress is not None:
            progress.set(loss=float(loss.detach()), lr=schedule.lr())
            progress.update(1, units=x.shape[0] * dist_info.world)
        if on_step is not None:
            on_step(schedule.step_count)
        if max_steps is not None and steps >= max_steps:
            break
        if stop is not None and broadcast_flag(stop.set, dist_info):
            stop.set = True
            break
    elapsed = time.perf_counter() - t0
    loss_sum = total_loss.item()
    return {"loss": loss_sum / max(steps, 1), "loss_sum": loss_sum, "steps": steps, "images": images, "img_per_s": images / elapsed if elapsed > 0 else 0.0}
