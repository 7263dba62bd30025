"""Training data: per-sample randomness fixed by (seed, epoch, index), so order and
augmentation do not depend on worker count and a resumed run sees the same batches.

With ``--augment-on worker`` a loader worker decodes a sample and transforms it
(TrainTransform.plan then apply); with ``--augment-on device`` it only decodes and plans, and
hands over the part of the frame the window covers (``RawBatch``); ``augment_batch`` then
applies the plans on the training device, with the same result."""

from __future__ import annotations

import signal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from edgeseg.data.base import SegDataset
from edgeseg.data.transforms import Plan, TrainTransform, crop_for_plan
from edgeseg.data.window import SPARSE_KEYS, collate_sparse, dense_mass
from edgeseg.errors import DataError, EdgesegError

AUGMENT_ON = ("auto", "worker", "device")


class SampleError:
    """A user-facing error raised in a loader worker, carried to the main process intact."""

    def __init__(self, message: str):
        self.message = message


class TrainingSet(Dataset):
    """Item k of an epoch is ``plan[k] = (sample index, crop centre or None)``; without
    class-uniform sampling the plan is the identity."""

    def __init__(self, ds: SegDataset, transform: TrainTransform, seed: int, class_uniform: float = 0.0, centroids=None,
                 on_device: bool = False):
        self.ds = ds
        self.transform = transform
        self.on_device = on_device
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
            sample = self.ds[index]
            if not self.on_device:  # soft targets travel to the trainer as a SparseMass (a few bytes a cell)
                return self.transform(sample, rng, centre=centre, sparse=True)
            return crop_for_plan(sample.image, sample.label, sample.soft, self.transform.plan(*sample.label.shape, rng, centre), sample.teacher)
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


class RawBatch:
    """Window parts of a batch for ``--augment-on device``: uint8 images, labels (and top-2 soft
    labels) padded to the largest part, each part's size, and each sample's plan."""

    def __init__(self, parts: dict, sizes, plans):
        self.parts, self.sizes, self.plans = parts, sizes, plans  # parts: image, label and, where given, soft and teacher

    def pin_memory(self) -> "RawBatch":
        return RawBatch({k: v.pin_memory() for k, v in self.parts.items()}, self.sizes, self.plans)


_RAW_PARTS = ("image", "label", "soft", "teacher")  # the order crop_for_plan returns them in, before the plan


def _collate_raw(items) -> RawBatch:
    hm = max(it[1].shape[0] for it in items)
    wm = max(it[1].shape[1] for it in items)
    parts = {}
    for j, name in enumerate(_RAW_PARTS):
        if items[0][j] is None:
            continue
        first = items[0][j]
        buf = torch.zeros((len(items), hm, wm) + tuple(first.shape[2:]), dtype=torch.uint8)
        for k, it in enumerate(items):
            h, w = it[1].shape
            buf[k, :h, :w] = torch.from_numpy(it[j])
        parts[name] = buf
    return RawBatch(parts, [tuple(it[1].shape) for it in items], [it[-1] for it in items])


def augment_batch(batch: RawBatch, transform: TrainTransform, device: torch.device):
    """Apply each sample's plan on ``device``: the batch a worker would have made, made there."""
    parts = {k: v.to(device, non_blocking=True) for k, v in batch.parts.items()}
    outs = []
    for k, ((h, w), plan) in enumerate(zip(batch.sizes, batch.plans)):
        p = {name: v[k, :h, :w] for name, v in parts.items()}
        outs.append(transform.apply(p["image"], p["label"], plan, p.get("soft"), teacher=p.get("teacher")))
    return _stack(outs)


def _stack(outs):
    images = torch.stack([o[0] for o in outs])
    return images, {key: torch.stack([o[1][key] for o in outs]) for key in outs[0][1]}


def collate(items):
    for it in items:
        if isinstance(it, SampleError):
            return it
    if isinstance(items[0][-1], Plan):
        return _collate_raw(items)
    images = torch.stack([it[0] for it in items])
    kinds = {"sparse_cls" in it[1] for it in items}
    if len(kinds) > 1:  # sparse and dense soft targets in one batch (labels beside top-2 auto-labels): all dense
        classes = next(it[1]["mass"].shape[0] for it in items if "mass" in it[1])
        items = [(it[0], dense_mass(it[1], classes)) for it in items]
    keys = [k for k in items[0][1] if k not in SPARSE_KEYS]
    target = {k: torch.stack([it[1][k] for it in items]) for k in keys}
    if "sparse_cls" in items[0][1]:
        target.update(collate_sparse([it[1] for it in items]))
    return images, target


def prepare_batch(batch, transform: TrainTransform, device: torch.device, on_device: bool):
    """What the loader yields -> (images, dense target) on ``device``: augmented there
    (``--augment-on device``), or moved there and its SparseMass made dense there."""
    if on_device:
        return augment_batch(batch, transform, device)
    images, target = batch
    target = {k: v.to(device, non_blocking=True) for k, v in target.items()}
    return images.to(device, non_blocking=True), dense_mass(target, transform.info.num_classes)


def _worker_init(_):
    # A stop is the main process's to handle: it ends the step, saves where the run stood and then ends its
    # loader, whose workers leave at its done event (or, were the main process gone, at their watchdog). Ctrl-C
    # reaches every process of the terminal's group, and so does SIGTERM sent to a process group (Slurm's
    # scancel, `timeout`, `kill -- -PGID`): a worker ended by it made the main process fail in its next fetch,
    # before it could save. Ignored, a worker the loader's own terminate() cannot end finishes its item first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
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
