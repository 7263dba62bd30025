"""Everything a training run assembles before its first step: data, model, its description,
initial or restored weights, class weights, and the step plan."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from edgeseg import __version__
from edgeseg.data import build_dataset
from edgeseg.data.base import DatasetInfo, SegDataset, check_labelled, frame_sizes, res_above_frames, resolved_files
from edgeseg.errors import ConfigError, DataError
from edgeseg.models import Checkpoint, ModelConfig, ModelMeta, load_checkpoint, load_pretrained
from edgeseg.models.checkpoint import strict_load
from edgeseg.records import check_needs
from edgeseg.trainer.checkpoint import check_resume_compatible
from edgeseg.trainer.config import TrainConfig, default_epochs
from edgeseg.trainer.data import fraction_indices

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainData:
    train: SegDataset
    val: SegDataset

    @property
    def info(self) -> DatasetInfo:
        return self.train.info


def build_data(cfg: TrainConfig) -> TrainData:
    """The training split (limited, subsampled, extended as the options say) and the val split."""
    train_ds = build_dataset(cfg.dataset, cfg.data, cfg.train_split, cfg.skip_bad)
    val_ds = build_dataset(cfg.dataset, cfg.data, cfg.val_split, cfg.skip_bad)
    check_labelled(val_ds, "--val-split")
    train_files = _image_files(train_ds)  # (of the split's files: a decoded cache below names none)
    if train_files & _image_files(val_ds):
        logger.warning(f"--data {cfg.data}: the training split '{cfg.train_split}' and the validation split '{cfg.val_split}' share "
                       "images (a folder without split folders serves both): validation scores are on training images")
    if cfg.cache:
        from edgeseg.data.cache import cached_dataset

        train_ds = cached_dataset(train_ds, cfg.cache)
    if cfg.train_limit:
        train_ds = train_ds.subset(range(min(cfg.train_limit, len(train_ds))))
    if cfg.train_fraction is not None:
        train_ds = train_ds.subset(fraction_indices(len(train_ds), cfg.train_fraction, cfg.subset_seed))
    if cfg.extra_data:
        from edgeseg.data.base import ConcatDataset

        extra = []
        seen = {f: "--data's training split" for f in train_files}
        for path in cfg.extra_data:
            try:
                extra.append(build_dataset("folder", path, cfg.train_split, cfg.skip_bad))
            except (DataError, ConfigError) as exc:  # said against the option that named the folder
                raise type(exc)(f"--extra-data {exc}") from None
            files = _image_files(extra[-1])
            twice = sorted(files & seen.keys())  # an image in two of the sets would weigh twice in training, without a word
            if twice:
                raise ConfigError(f"--extra-data {path}: {len(twice)} of its images are also in {seen[twice[0]]} "
                                  f"({Path(twice[0]).name} ...); give each image once")
            seen.update((f, f"--extra-data {path}") for f in files)
        try:
            train_ds = ConcatDataset([train_ds] + extra)
        except DataError as exc:  # the one class check, said against the option
            raise DataError(f"--extra-data {', '.join(cfg.extra_data)}: {exc}") from None
    check_labelled(train_ds, "--train-split")  # what is trained on: after --train-limit, --train-fraction and --extra-data
    return TrainData(train_ds, val_ds)


def _image_files(ds: SegDataset) -> set[str]:
    return {str(files[0]) for i in range(len(ds)) if (files := resolved_files(ds, i))}


def native_frame_size(ds: SegDataset, option: str = "--refine guided") -> tuple[int, int]:
    """(width, height) of the data set's frames, which a guided model takes (and --sr-aux renders); they must all agree."""
    sizes = frame_sizes(ds)
    if len(sizes) != 1:
        shown = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)[:4])
        raise ConfigError(f"{option}: the training images have {len(sizes)} frame sizes ({shown}); it needs one native frame size")
    return tuple(sizes.pop())


def model_meta(cfg: TrainConfig, data: TrainData) -> ModelMeta:
    """What the run's checkpoints say about the model: its config, classes, resolution and data."""
    info = data.info
    native = native_frame_size(data.train) if cfg.refine != "none" else None
    if above := res_above_frames(data.train, cfg.res):
        logger.warning(f"{above}: the network trains on up-sampled images and sees no detail they do not have")
    if cfg.upscale > 1:  # the output must not exceed the smallest frame (mixed sizes are fine without --refine)
        sizes = frame_sizes(data.train)
        smallest = (min(w for w, _ in sizes), min(h for _, h in sizes))
        if cfg.res[0] * cfg.upscale > smallest[0] or cfg.res[1] * cfg.upscale > smallest[1]:
            raise ConfigError(f"--upscale {cfg.upscale}: the output {cfg.res[0] * cfg.upscale}x{cfg.res[1] * cfg.upscale} exceeds "
                              f"the native {smallest[0]}x{smallest[1]} frames of {info.name}; use a smaller --upscale or --res")
    model_cfg = ModelConfig(cfg.model, info.num_classes, options=dict(cfg.model_options), upscale=cfg.upscale, refine=cfg.refine,
                            res=tuple(cfg.res), native_res=native, kernel=cfg.kernel)
    return ModelMeta(model_cfg, info, label_mode=cfg.labels, dataset_kind=cfg.dataset, dataset_root=str(cfg.data) if cfg.data else None,
                     edgeseg_version=__version__)


def _resolve_pretrained(spec: str, model: nn.Module) -> str:
    if spec != "auto":
        return spec
    from edgeseg.models.pretrained import imagenet_available

    encoder = getattr(model, "encoder", None)
    return "imagenet" if hasattr(encoder, "classifier_prefixes") and imagenet_available(encoder) else "none"


def initial_weights(model: nn.Module, cfg: TrainConfig, data: TrainData, progress: bool) -> str:
    """Load ``--pretrained`` weights (and fit a DUpsampling head's W); returns what was done."""
    note = load_pretrained(model, _resolve_pretrained(cfg.pretrained, model))
    from edgeseg.models.dupsample import DUpsampleHead

    head = getattr(model, "head", None)
    if isinstance(head, DUpsampleHead) and not note.startswith("whole-model"):
        from edgeseg.trainer.dupsample_w import fitted_w

        head.set_w(fitted_w(data.train, cfg.res, head.r, head.proj.out_channels, cfg.labels, cfg.kernel, progress=progress))
    return note


def resumed_config(cfg: TrainConfig, given=None) -> TrainConfig:
    """``--resume``: ``cfg`` merged with the options the run in ``cfg.out`` was started with
    (TrainConfig.resumed); unchanged when there is nothing to resume (the trainer says so)."""
    path = Path(cfg.out) / "last.pt"
    if not cfg.resume or not path.is_file():
        check_needs(cfg)  # nothing to merge: what was given must find what it needs by itself
        return cfg
    training = load_checkpoint(path).training
    saved = (training.train_config if training else None) or {}
    return cfg.resumed(saved, given)


def restore(model: nn.Module, cfg: TrainConfig, out: Path, world: int) -> Checkpoint:
    """``--resume``: last.pt checked against this run's options, its weights loaded into ``model``."""
    path = out / "last.pt"
    ckpt = load_checkpoint(path)
    check_resume_compatible(ckpt, cfg.to_dict(), str(path), world)
    if ckpt.training is None:
        raise ConfigError(f"--resume: {path} holds no training state; train into a new --out")
    strict_load(model, ckpt.weights, str(path))
    return ckpt


def loss_weights(cfg: TrainConfig, data: TrainData, ckpt: Checkpoint | None, device, progress: bool) -> torch.Tensor | None:
    """``--class-weights``: per-class loss weights from the training labels, or None; a resumed run
    must find the weights it started with."""
    if cfg.class_weights == "none":
        return None
    from edgeseg.data.label_stats import class_pixel_counts
    from edgeseg.trainer.losses import class_weights

    w = class_weights(class_pixel_counts(data.train, progress=progress), cfg.class_weights)  # (build_data saw labelled pixels)
    started = (ckpt.training.train_config or {}).get("class_weight_values") if ckpt is not None else None
    if started is not None and not np.allclose(started, w, rtol=1e-4, atol=1e-6):  # the labels (or --extra-data) changed
        raise ConfigError(f"--resume: the training labels changed since {cfg.out} started (its class weights were "
                          f"{', '.join(f'{v:.3f}' for v in started)}; now {', '.join(f'{v:.3f}' for v in w)}); train into a new --out")
    return torch.tensor(w, dtype=torch.float32, device=device)


@dataclass(frozen=True)
class StepPlan:
    steps_per_epoch: int
    total_steps: int
    epochs: int
    warmup: int


def plan_steps(cfg: TrainConfig, n_train: int, world: int) -> StepPlan:
    per_step = cfg.batch * world
    steps_per_epoch = n_train // per_step
    if steps_per_epoch < 1:
        cut = [flag for flag, given in (("--train-fraction", cfg.train_fraction is not None), ("--train-limit", bool(cfg.train_limit))) if given]
        raise ConfigError(f"--batch {cfg.batch} x {world} process(es) is larger than the {n_train} training samples"
                          + (f" left by {' and '.join(cut)}" if cut else ""))
    total = cfg.iters if cfg.iters is not None else (cfg.epochs or default_epochs(cfg.dataset)) * steps_per_epoch
    warmup = cfg.warmup if cfg.warmup is not None else min(200, total // 20)
    if warmup >= total:
        raise ConfigError(f"--warmup {warmup}: the run has {total} steps, so the learning rate would never reach --lr; "
                          f"give fewer than {total} warm-up steps")
    return StepPlan(steps_per_epoch, total, math.ceil(total / steps_per_epoch), warmup)
