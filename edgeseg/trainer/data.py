"""Training data: per-sample randomness fixed by (seed, epoch, index), so order and
augmentation do not depend on worker count and a resumed run sees the same batches."""

from __future__ import annotations

import signal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from edgeseg.data.base import SegDataset
from edgeseg.data.transforms import TrainTransform
from edgeseg.errors import DataError, EdgesegError


class SampleError:
    """A user-facing error raised in a loader worker, carried to the main process intact."""

    def __init__(self, message: str):
        self.message = message


class TrainingSet(Dataset):
    """Item k of an epoch is ``plan[k] = (sample index, crop centre or None)``; without
    class-uniform sampling the plan is the identity."""

    def __init__(self, ds: SegDataset, transform: TrainTransform, seed: int, class_uniform: float = 0.0, centroids=None):
        self.ds = ds
        self.transform = transform
        self.seed = seed
        self.class_uniform = class_uniform
        self.centroids = centroids
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        from edgeseg.data.class_uniform import epoch_plan

        self.epoch = epoch
        self.plan = epoch_plan(len(self.ds), self.class_uniform, self.centroids, self.seed, epoch) if self.class_uniform else None

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, k: int):
        rng = np.random.default_rng([self.seed, self.epoch, k])
        index, centre = self.plan[k] if self.plan is not None else (k, None)
        try:
            return self.transform(self.ds[index], rng, centre=centre)
        except EdgesegError as exc:
            return SampleError(str(exc))


class EpochSampler(Sampler):
    """A permutation drawn from (seed, epoch), sharded over ranks, minus samples already seen."""

    def __init__(self, n: int, batch: int, seed: int, epoch: int, rank: int = 0, world: int = 1, skip_batches: int = 0):
        perm = np.random.default_rng([seed, epoch, 7919]).permutation(n)
        per_rank = n // world
        mine = perm[rank * per_rank : (rank + 1) * per_rank] if world > 1 else perm
        usable = (len(mine) // batch) * batch  # whole batches only
        self.indices = mine[skip_batches * batch : usable].tolist()

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def collate(items):
    for it in items:
        if isinstance(it, SampleError):
            return it
    images = torch.stack([it[0] for it in items])
    keys = items[0][1].keys()
    target = {k: torch.stack([it[1][k] for it in items]) for k in keys}
    return images, target


def _worker_init(_):
    # Ctrl-C is handled by the main process, which stops between steps and saves.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


def make_loader(train_set: TrainingSet, batch: int, workers: int, seed: int, epoch: int, rank: int, world: int, skip_batches: int, pin: bool) -> DataLoader:
    train_set.set_epoch(epoch)
    sampler = EpochSampler(len(train_set), batch, seed, epoch, rank, world, skip_batches)
    return DataLoader(
        train_set,
        batch_size=batch,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        drop_last=True,
        pin_memory=pin,
        worker_init_fn=_worker_init if workers > 0 else None,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(seed * 1000003 + epoch),
    )


def fraction_indices(n: int, fraction: float, seed: int) -> list[int]:
    """The sorted sample indices ``--train-fraction`` keeps: a seeded random ``fraction`` of ``n``."""
    keep = max(1, int(round(fraction * n)))
    return sorted(np.random.default_rng(seed).permutation(n)[:keep].tolist())


def raise_if_error(batch, dist_info) -> None:
    """Raise when this batch, or the batch of any other process, failed to load.

    Every rank must agree before a collective runs, or the others wait forever.
    """
    from edgeseg.trainer.distributed import broadcast_flag

    error = batch.message if isinstance(batch, SampleError) else None
    if broadcast_flag(error is not None, dist_info):
        raise DataError(error or "a training sample failed to load on another process (see its error)")
