"""Latency measurement: calls timed side by side, iterations interleaved, so that a
shared, noisy machine slows them alike and their ratios stay meaningful."""

from __future__ import annotations

import platform
import time
from typing import Callable, Sequence

import numpy as np


def latency_stats(times_s: Sequence[float], batch: int) -> dict:
    ms = np.asarray(times_s) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p90_ms": round(float(np.percentile(ms, 90)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "throughput_ips": round(batch * 1000.0 / float(ms.mean()), 2),
        "n": int(ms.size),
    }


def time_interleaved(calls: Sequence[Callable[[], object]], iters: int, warmup: int, on_round: Callable[[], None] | None = None) -> list[list[float]]:
    """Seconds per call of each callable over ``iters`` rounds (after ``warmup``), one call of each per round."""
    times: list[list[float]] = [[] for _ in calls]
    for it in range(warmup + iters):
        for k, call in enumerate(calls):
            t0 = time.perf_counter()
            call()
            if it >= warmup:
                times[k].append(time.perf_counter() - t0)
        if on_round is not None:
            on_round()
    return times


def machine() -> str:
    import torch

    return f"{platform.processor() or platform.machine()}, {platform.system()}, torch threads {torch.get_num_threads()}"
