"""DistributedDataParallel set-up for ``torchrun``: NCCL on GPU, gloo on CPU; rank 0 writes."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from edgeseg.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_count(name: str, default: int | None, high: int, set_by: str = "torchrun") -> int:
    """An integer the launcher puts in the environment, in [0, high), or a one-line ConfigError naming it."""
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise ConfigError(f"${name} is not set; a distributed run needs WORLD_SIZE, RANK and LOCAL_RANK as {set_by} sets them")
        return default
    try:
        number = int(value.strip())
    except ValueError:
        number = -1
    if not 0 <= number < high:
        raise ConfigError(f"${name}={value!r}: expected a whole number from 0 to {high - 1} (as {set_by} sets it)")
    return number


def init_distributed(device_type: str) -> DistInfo:
    world = _env_count("WORLD_SIZE", 1, 1_000_001)
    if world <= 1:
        # a single process: RANK and LOCAL_RANK, where set, must say it is process 0 (a rank of a
        # larger run launched with the wrong WORLD_SIZE would otherwise train alone, unawares)
        for name in ("RANK", "LOCAL_RANK"):
            if os.environ.get(name, "0").strip() != "0":
                raise ConfigError(f"${name}={os.environ[name]!r} but $WORLD_SIZE is {os.environ.get('WORLD_SIZE', 'unset')!s}: "
                                  f"a single process must be rank 0; launch with torchrun, or unset ${name}")
        return DistInfo()
    rank = _env_count("RANK", None, world)
    local_rank = _env_count("LOCAL_RANK", 0, world)
    if not dist.is_initialized():
        # Stop flags and confusion matrices are reduced on the CPU: gloo carries those, NCCL the gradients.
        backend = "cpu:gloo,cuda:nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local_rank)


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_flag(flag: bool, info: DistInfo) -> bool:
    """True on every rank if it is true on any rank (stop signals)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
