"""``edgeseg train``: plain functions, torchvision-reference style.

``train`` assembles a run (``_set_up``, from the parts in ``edgeseg.trainer.setup``) and fits it:
each epoch is ``train_one_epoch`` (``edgeseg.trainer.epoch``), then ``validate`` scores the model
at native resolution through the same path as ``edgeseg eval``, then checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from edgeseg import __version__
from edgeseg.data.transforms import Augment, TrainTransform
from edgeseg.errors import ConfigError, DataError, ModelFileError, TrainingStopped
from edgeseg.fileio import FolderLock, is_integer, json_text, parse_json, write_json_atomic, write_text_atomic
from edgeseg.metrics import ConfusionMatrix
from edgeseg.models import Checkpoint, ModelMeta, TrainingState, build_model
from edgeseg.models.checkpoint import strict_load
from edgeseg.progress import Progress
from edgeseg.runtime.processing import Preprocess
from edgeseg.runtime.scoring import evaluate
from edgeseg.runtime.torch_runner import TorchRunner, resolve_device
from edgeseg.trainer.checkpoint import rng_state, save_checkpoint, set_rng_state
from edgeseg.trainer.config import TrainConfig
from edgeseg.trainer.data import TrainingSet, make_loader, prepare_batch
from edgeseg.trainer.distributed import DistInfo, all_reduce_sum, barrier, broadcast_flag, cleanup, init_distributed
from edgeseg.trainer.epoch import StopFlag, amp_dtype, peak_memory_mb, train_one_epoch
from edgeseg.trainer.losses import training_loss
from edgeseg.trainer.schedule import LRSchedule, build_optimizer, param_groups
from edgeseg.trainer.setup import (
    StepPlan,
    TrainData,
    build_data,
    initial_weights,
    loss_weights,
    model_meta,
    native_frame_size,
    plan_steps,
    restore,
    resumed_config,
)
from edgeseg.trainer.tensorboard import log_epoch, open_writer

logger = logging.getLogger(__name__)


def validate(model: nn.Module, meta: ModelMeta, ds, device: torch.device, dist_info: DistInfo, limit: int | None, progress: bool) -> dict:
    """Native-resolution mIoU through the eval path, sharded over ranks and summed."""
    n = len(ds) if limit is None else min(limit, len(ds))
    indices = list(range(dist_info.rank, n, dist_info.world))
    runner = TorchRunner(model, meta, str(device), name="torch")
    with runner:
        _, cm = evaluate(runner, ds, batch=4, indices=indices, progress=progress and dist_info.is_main, desc="  val")
    total = ConfusionMatrix(meta.num_classes)
    total.mat = all_reduce_sum(cm.mat.clone(), dist_info)
    return total.summary(ds.info.class_names)


def prepare_out_dir(out: Path, resume: bool, exist_ok: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file; expected a run folder")
    if resume:
        if not (out / "last.pt").is_file():
            raise ConfigError(f"--resume: {out / 'last.pt'} not found; nothing to resume (train without --resume first)")
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not exist_ok:
        raise ConfigError(f"--out {out}: already exists; use --resume to continue it, --exist-ok to overwrite, or another --out")


def train(cfg: TrainConfig, on_step: Callable[[int], None] | None = None, given=None) -> dict:
    """Run a training job; returns a summary with the best val mIoU and file paths.

    With ``cfg.resume``, options not in ``given`` (the names the caller set; None: those that
    differ from their defaults) are taken from the run being continued (TrainConfig.resumed)."""
    cfg = resumed_config(cfg, given)
    device = resolve_device(cfg.device)
    if cfg.amp in ("bf16", "fp16") and device.type != "cuda" and not cfg.resume:  # asked for, and cannot be had
        raise ConfigError(f"--amp {cfg.amp}: mixed precision applies on CUDA only, and this run is on {device.type}; "
                          "leave --amp out (or --amp auto: mixed precision where the device has it)")
    out = Path(cfg.out)
    prepare_out_dir(out, cfg.resume, cfg.exist_ok)
    absolute = out.absolute()
    made = next((p for p in reversed([absolute, *absolute.parents]) if not p.exists()), None)  # the highest folder this run makes
    dist_info = init_distributed(device.type)
    try:
        if device.type == "cuda" and dist_info.enabled:
            device = torch.device("cuda", dist_info.local_rank)
        # rank 0 owns the run folder: a second 'edgeseg train --out' on it is refused while this one runs
        with FolderLock(out) if dist_info.is_main else nullcontext():
            try:
                run = _set_up(cfg, device, out, dist_info, logger.info if dist_info.is_main else (lambda *_: None))
                return _fit(run, on_step)
            except BaseException:
                if made is not None and dist_info.is_main:  # (inside the lock: the folder is this run's)
                    _remove_unfinished(absolute, made)
                raise
    finally:
        cleanup(dist_info)


def _remove_unfinished(out: Path, made: Path) -> None:
    """A run that made its folder and failed before writing anything worth keeping (a checkpoint,
    the contrastive phase's weights) leaves no folder: ``out`` goes, and the empty folders up to
    ``made``, the highest one it made."""
    if (out / "last.pt").exists() or (out / "contrastive.pt").exists():
        return
    shutil.rmtree(out, ignore_errors=True)
    for folder in out.parents:
        if not folder.is_relative_to(made):
            break
        with contextlib.suppress(OSError):
            folder.rmdir()


@dataclass
class _Run:
    """One run's assembled parts; ``_fit`` advances ``start_epoch``, ``best`` and ``history``."""

    cfg: TrainConfig
    out: Path
    device: torch.device
    dist_info: DistInfo
    say: Callable[[str], None]
    data: TrainData
    meta: ModelMeta
    model: nn.Module
    train_model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    scaler: torch.amp.GradScaler
    autocast: torch.dtype | None
    plan: StepPlan
    train_set: TrainingSet
    workers: int
    loss_weight: torch.Tensor | None = None  # per-class loss weights (--class-weights)
    augment_on: str = "worker"  # where the transforms run (resolved --augment-on)
    start_epoch: int = 0
    skip_batches: int = 0
    carried_loss: float = 0.0  # loss summed over the steps of the interrupted epoch done before a resume
    best: float = -1.0
    history: list = field(default_factory=list)
    last_ok: Path | None = None  # the last checkpoint written (kept when a step fails)
    contrastive: dict | None = None  # the contrastive phase's summary (--contrastive-epochs)
    teacher_sha256: str | None = None  # what --teacher held when the run began (a resume must find the same)
    train_samples: dict | None = None  # split_key of the training split (a resume must find the same)
    config_doc: dict | None = None  # config.json, written with the run's first checkpoint (an earlier run's stays until then)

    @property
    def main(self) -> bool:
        return self.dist_info.is_main

    def checkpoint(self, epoch: int, step_in_epoch: int, epoch_loss_sum: float = 0.0) -> Checkpoint:
        sr = self.sr_head()
        return Checkpoint(self.meta, self.model.state_dict(), TrainingState(
            optimizer=self.optimizer.state_dict(), scheduler=self.schedule.state_dict(), rng=rng_state(), epoch=epoch,
            step_in_epoch=step_in_epoch, step=self.schedule.step_count, best_miou=self.best,
            scaler=self.scaler.state_dict() if self.scaler.is_enabled() else {}, train_config=self.train_config(),
            world_size=self.dist_info.world, epoch_loss_sum=epoch_loss_sum, aux={"sr_head": sr.state_dict()} if sr is not None else None))

    def sr_head(self):
        net = getattr(self.train_model, "module", self.train_model)  # DistributedDataParallel wraps it
        return getattr(net, "head", None) if net is not self.model else None

    def train_config(self) -> dict:
        """The options, plus the class weights they resolved to (a resume must find the same)."""
        cfg = self.cfg.to_dict()
        if self.loss_weight is not None:
            cfg["class_weight_values"] = weight_values(self.loss_weight)
        if self.teacher_sha256 is not None:
            cfg["teacher_sha256"] = self.teacher_sha256
        cfg["train_samples"] = self.train_samples
        return cfg

    def loader(self, epoch: int, seed: int | None = None, skip: int = 0):
        return make_loader(self.train_set, self.cfg.batch, self.workers, self.cfg.seed if seed is None else seed, epoch,
                           self.dist_info.rank, self.dist_info.world, skip, pin=self.device.type == "cuda")

    def normalise(self):
        m = self.meta
        return Preprocess(m.res, m.kernel, m.mean, m.std).normalise

    def prepare(self):
        """How a loader batch becomes (images, target) on the device: augmented there, or its target made dense there."""
        on_device = self.augment_on == "device"
        return lambda batch: prepare_batch(batch, self.train_set.transform, self.device, on_device)

    def loss_fn(self):
        cfg, ignore, normalise = self.cfg, self.data.info.ignore_index, self.normalise()
        distill = cfg.distill_weight if cfg.teacher else 0.0
        sr = cfg.sr_weight if cfg.sr_aux else 0.0
        return lambda out, target: training_loss(out, target, cfg.loss, ignore, self.loss_weight, distill, cfg.distill_temperature, sr, normalise,
                                                       cfg.distill_class_weights)


def split_key(ds) -> dict:
    """What identifies a training split for --resume: its sample count and the hash of its names in order."""
    import hashlib

    names = "\n".join(ds.sample_name(i) for i in range(len(ds)))
    return {"count": len(ds), "names_sha256": hashlib.sha256(names.encode()).hexdigest()}


def weight_values(weight: torch.Tensor) -> list[float]:
    return [round(float(v), 6) for v in weight]


def _set_up(cfg: TrainConfig, device: torch.device, out: Path, dist_info: DistInfo, say) -> _Run:
    torch.manual_seed(cfg.seed + dist_info.rank)
    data = build_data(cfg)
    # What can be refused from the options and the data alone, before the teacher labels a split or W is fitted.
    plan = plan_steps(cfg, len(data.train), dist_info.world)
    meta = model_meta(cfg, data)
    model = build_model(meta.model)
    _check_one_image_batches(model, meta, cfg)
    teacher_sha = None
    if cfg.teacher:
        from edgeseg.trainer.distill import WithTeacher, check_same_teacher, teacher_labels, teacher_sha256

        teacher_sha = teacher_sha256(cfg.teacher)
        if cfg.resume:
            check_same_teacher(out / "last.pt", cfg.teacher, teacher_sha)
        folder = teacher_labels(cfg.teacher, data.train, cfg.distill_temperature, str(device), cfg.progress and dist_info.is_main,
                                teacher_sha)
        data = TrainData(WithTeacher(data.train, folder), data.val)
    ckpt = restore(model, cfg, out, dist_info.world) if cfg.resume else None
    train_samples = split_key(data.train)  # (hashed once: every checkpoint records it)
    started = ((ckpt.training.train_config or {}).get("train_samples") if ckpt is not None else None)
    if started is not None and started != train_samples:  # its schedule and epochs were planned on that split
        raise ConfigError(f"--resume: the training split changed since {out} started (it had {started.get('count')} samples, now "
                          f"{len(data.train)}, or other names); resume on the same data, or train into a new --out")
    init_note = (f"resumed from {out / 'last.pt'} (epoch {ckpt.training.epoch}, step {ckpt.training.step})" if ckpt is not None
                 else initial_weights(model, cfg, data, cfg.progress and dist_info.is_main))
    net = model
    if cfg.sr_aux:
        from edgeseg.models.sr import sr_net

        net = sr_net(model, native_frame_size(data.train, "--sr-aux"))
        if ckpt is not None and (ckpt.training.aux or {}).get("sr_head"):
            strict_load(net.head, ckpt.training.aux["sr_head"], f"{out / 'last.pt'} (its SR head)")
    net.to(device).to(memory_format=torch.channels_last)
    train_model = net
    if dist_info.enabled:
        train_model = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    workers = cfg.workers if cfg.workers is not None else (min(8, max((os.cpu_count() or 1) - 1, 0)) if device.type == "cuda" else 0)
    optimizer = build_optimizer(cfg.optimizer, param_groups(net, cfg.weight_decay), cfg.lr)
    autocast = amp_dtype(cfg.amp, device)
    if cfg.amp != "off" and device.type != "cuda":  # auto, or a CUDA run resumed here
        say(f"note: --amp {cfg.amp} applies to CUDA only; training in float32 on {device.type}")
    weight = loss_weights(cfg, data, ckpt, device, cfg.progress and dist_info.is_main)
    if weight is not None:
        say(f"class weights ({cfg.class_weights}): " + ", ".join(f"{n} {v:.2f}" for n, v in zip(data.info.class_names, weight.tolist())))
    augment_on = cfg.augment_on if cfg.augment_on != "auto" else ("device" if device.type == "cuda" else "worker")
    run = _Run(cfg, out, device, dist_info, say, data, meta, model, train_model, optimizer,
               LRSchedule(optimizer, cfg.lr, plan.total_steps, cfg.schedule, plan.warmup),
               torch.amp.GradScaler(device.type, enabled=autocast == torch.float16), autocast, plan,
               _training_set(cfg, data, meta, dist_info, augment_on == "device"), workers, loss_weight=weight, augment_on=augment_on,
               teacher_sha256=teacher_sha, train_samples=train_samples)
    run.last_ok = out / "last.pt" if (out / "last.pt").is_file() else None
    if ckpt is not None:
        _restore_state(run, ckpt)
    else:
        init_note += _contrastive(run)
    _write_config(run, init_note)
    _announce(run, init_note)
    return run


def _training_set(cfg: TrainConfig, data: TrainData, meta: ModelMeta, dist_info: DistInfo, on_device: bool = False) -> TrainingSet:
    centroids = None
    if cfg.class_uniform > 0:
        from edgeseg.data.class_uniform import cached_centroids

        centroids = cached_centroids(data.train, progress=cfg.progress and dist_info.is_main)
        missing = [data.info.class_names[c] for c, v in sorted(centroids.items()) if not len(v)]
        if missing and dist_info.is_main:  # an option that does nothing (for some classes, or all) is said
            from edgeseg.data.class_uniform import GRID, MIN_PIXELS

            logger.warning(f"--class-uniform {cfg.class_uniform:g}: {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''} "
                           f"{'has' if len(missing) == 1 else 'have'} no centroid (fewer than {MIN_PIXELS} pixels in every tile of a "
                           f"{GRID}x{GRID} grid over every label), so {'no crop is' if len(missing) == len(centroids) else 'they are never'} "
                           "centred on them")
    mcfg = meta.model
    transform = TrainTransform(mcfg.input_res, data.info, cfg.labels, cfg.kernel, Augment(tuple(cfg.scale), cfg.hflip, cfg.jitter),
                               target_res=mcfg.output_res, sr_res=native_frame_size(data.train, "--sr-aux") if cfg.sr_aux else None)
    return TrainingSet(data.train, transform, cfg.seed, cfg.class_uniform, centroids, on_device=on_device)


def _check_one_image_batches(model: nn.Module, meta, cfg: TrainConfig) -> None:
    """--batch 1 (per process): a training step on one image whose deepest features are one pixel
    fails inside batch normalisation; found with one step of a copy on a blank image, before any work."""
    if cfg.batch != 1:
        return
    import copy

    w, h = meta.model.input_res
    probe = copy.deepcopy(model).train()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):  # (dropout draws: the run must not depend on the probe)
            probe(torch.zeros(1, 3, h, w))
    except ValueError as exc:
        if "Expected more than 1 value per channel" not in str(exc):
            raise
        raise ConfigError(f"--batch 1 at --res {cfg.res[0]}x{cfg.res[1]}: {cfg.model}'s deepest features are a single pixel, and batch "
                          "normalisation cannot train on one value per channel; use --batch 2 or more, or a larger --res") from None


def _restore_state(run: _Run, ckpt: Checkpoint) -> None:
    """Optimiser, schedule, scaler, RNG and where the run stood, from ``ckpt`` (--resume)."""
    saved = ckpt.training
    try:  # a checkpoint is a file: state that does not fit this run (damaged, or edited) is refused by name
        run.optimizer.load_state_dict(saved.optimizer)
        run.schedule.load_state_dict(saved.scheduler)
        if saved.scaler:
            run.scaler.load_state_dict(saved.scaler)
        set_rng_state(saved.rng)  # rank 0's state; other ranks draw their own stream from it
    except torch.cuda.OutOfMemoryError:
        raise  # the device's limit, not a damaged file
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
        raise ModelFileError(f"{run.out / 'last.pt'}: its training state (optimiser, schedule, scaler or random state) cannot be "
                             f"restored ({str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__}); resume from an earlier "
                             "copy, or start a new run from its weights with --pretrained") from None
    if run.dist_info.rank:
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,))) + run.dist_info.rank)
    if saved.step >= run.plan.total_steps:
        raise ConfigError(f"--resume: {run.out} finished its {run.plan.total_steps} steps; nothing to resume. To train further, "
                          f"start a new run from its weights: --pretrained {run.out / 'last.pt'} --out <new folder>")
    run.start_epoch, run.skip_batches, run.best = saved.epoch, saved.step_in_epoch, saved.best_miou
    run.carried_loss = saved.epoch_loss_sum if saved.step_in_epoch else 0.0
    metrics = run.out / "metrics.jsonl"
    run.history = [h for h in _read_history(metrics) if h["epoch"] <= run.start_epoch]
    run.last_ok = run.out / "last.pt"


def _read_history(metrics: Path) -> list[dict]:
    """A run's metrics.jsonl, an epoch's record a line; a damaged line is one error naming it."""
    history = []
    for n, line in enumerate(metrics.read_text(errors="replace").splitlines() if metrics.is_file() else [], 1):
        if not line.strip():
            continue
        try:
            record = parse_json(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or not is_integer(record.get("epoch")):
            raise DataError(f"{metrics}: line {n} is not an epoch's record; the run's history is damaged "
                            "(remove the damaged lines to resume)")
        history.append({k: float("nan") if v is None else v for k, v in record.items()})  # (non-finite numbers are written as null)
    return history


def _contrastive(run: _Run) -> str:
    """Label-based contrastive pretraining (--contrastive-epochs) before the first step; its note."""
    cfg = run.cfg
    if not cfg.contrastive_epochs:
        return ""
    from edgeseg.trainer.contrastive import pretrain

    if run.main:
        run.out.mkdir(parents=True, exist_ok=True)
    run.say(f"contrastive pretraining: {cfg.contrastive_epochs} epochs, at most {cfg.contrastive_pixels} pixels per batch "
            f"({cfg.optimizer}, {cfg.schedule} schedule, gradient clip {cfg.clip_grad:g})")
    run.contrastive = pretrain(
        run.model, lambda e: run.loader(e, seed=cfg.seed + 7777), run.plan.steps_per_epoch, cfg.contrastive_epochs, device=run.device,
        normalise=run.normalise(), num_classes=run.data.info.num_classes, optimizer=cfg.optimizer, schedule=cfg.schedule, prepare=run.prepare(),
        lr=cfg.lr, weight_decay=cfg.weight_decay, clip_grad=cfg.clip_grad, grid=(max(1, cfg.res[1] // 8), max(1, cfg.res[0] // 8)),
        max_pixels=cfg.contrastive_pixels, threshold=cfg.contrastive_threshold, seed=cfg.seed, dist_info=run.dist_info,
        progress=cfg.progress, out=run.out if run.main else None,
    )
    return f"; then {cfg.contrastive_epochs} epochs of pixel contrastive pretraining"


def _write_config(run: _Run, init_note: str) -> None:
    """config.json: the options as resolved for this run (epochs, warm-up, workers, class weights ...)."""
    cfg, plan = run.cfg, run.plan
    resolved = {
        **cfg.to_dict(), "epochs": plan.epochs, "iters": plan.total_steps, "steps_per_epoch": plan.steps_per_epoch,
        "warmup": plan.warmup, "workers": run.workers, "augment_on": run.augment_on, "world_size": run.dist_info.world, "device": str(run.device),
        "autocast": str(run.autocast).replace("torch.", "") if run.autocast else "off",
        "train_samples": len(run.data.train), "val_samples": len(run.data.val), "init": init_note, "edgeseg_version": __version__,
        "contrastive": run.contrastive,
        "class_weight_values": None if run.loss_weight is None else weight_values(run.loss_weight),
    }
    run.config_doc = resolved


def _save_last(run: _Run, ckpt: Checkpoint) -> None:
    """last.pt, and with the run's first one its config.json: a run refused or failing before it
    leaves an earlier run's files (--exist-ok) as they were, config.json included."""
    if run.config_doc is not None:
        run.out.mkdir(parents=True, exist_ok=True)
        if not run.cfg.resume:
            _retire_earlier_run(run)
        write_json_atomic(run.out / "config.json", run.config_doc)
        run.config_doc = None
    save_checkpoint(run.out / "last.pt", ckpt)


def _retire_earlier_run(run: _Run) -> None:
    """With --exist-ok, an earlier run's files that this one does not write again stop describing the
    folder's model at this run's first checkpoint: its best.pt and contrastive.pt go (this run writes
    its own), and exports made from its checkpoints are named, to be made again."""
    for name in ("best.pt",) + (("contrastive.pt",) if not run.cfg.contrastive_epochs else ()):
        if (run.out / name).is_file():
            (run.out / name).unlink()
            run.say(f"removed {name} of the earlier run in {run.out}")
    exports = sorted(p.name for p in run.out.glob("model*") if p.suffix in (".onnx", ".xml", ".engine"))
    if exports:
        logger.warning(f"{run.out}: {', '.join(exports)} were exported from the earlier run's checkpoints, not this run's; "
                       "export again (edgeseg export --model ... --exist-ok)")


def _val_count(cfg: TrainConfig, data) -> str:
    n = len(data.val)
    return f"{cfg.val_limit} of {n}" if cfg.val_limit and cfg.val_limit < n else str(n)


def _announce(run: _Run, init_note: str) -> None:
    cfg, plan, say, mcfg = run.cfg, run.plan, run.say, run.meta.model
    if mcfg.output_res != tuple(cfg.res):
        ow, oh = mcfg.output_res
        say(f"output: scores at {ow}x{oh}" + (f", refined with the native {ow}x{oh} frame as guide" if cfg.refine != "none" else
                                              f" ({cfg.upscale}x the network resolution)"))
    say(f"training {cfg.model} on {run.data.info.name} ({len(run.data.train)} train / {_val_count(cfg, run.data)} val) at {cfg.res[0]}x{cfg.res[1]}, "
        f"labels {cfg.labels} ({cfg.kernel}), {plan.epochs} epochs = {plan.total_steps} steps of {cfg.batch * run.dist_info.world}, "
        f"on {run.device}" + (f" x{run.dist_info.world}" if run.dist_info.enabled else ""))
    say(f"init: {init_note}")
    if cfg.teacher:
        say(f"distilling from {cfg.teacher}: loss = {1 - cfg.distill_weight:g} x label loss + {cfg.distill_weight:g} x T^2 KL"
            f"{' (class-weighted)' if cfg.distill_class_weights else ''}, T = {cfg.distill_temperature:g}")
    if cfg.sr_aux:
        sw, sh = run.train_set.transform.sr_res
        say(f"SR auxiliary: reconstructing each window at {sw}x{sh} (weight {cfg.sr_weight:g}; training only, not in the model)")
    if min(cfg.res) < 32:
        logger.warning(f"--res {cfg.res[0]}x{cfg.res[1]}: below 32 pixels the encoder's deepest features are a single pixel; "
                       "expect a degenerate model")


def _fit(run: _Run, on_step) -> dict:
    """The epoch loop: train, validate, checkpoint, log; Ctrl-C stops between steps and saves."""
    writer = open_writer(run.out) if run.main else None
    try:
        with StopFlag() as stop:
            for epoch in range(run.start_epoch, run.plan.epochs):
                if run.plan.total_steps - run.schedule.step_count <= 0:
                    break
                outcome = _epoch(run, epoch, stop, writer, on_step)
                if outcome == "interrupted":
                    return {"interrupted": True, "out": str(run.out), "step": run.schedule.step_count, "is_main": run.main}
                if outcome == "finished":
                    break
    finally:
        if writer is not None:
            writer.close()
    out = run.out
    if run.main and not (out / "best.pt").is_file() and (out / "last.pt").is_file():
        save_checkpoint(out / "best.pt", run.checkpoint(run.plan.epochs, 0))
    return {"out": str(out), "best_miou": run.best, "epochs": len(run.history), "step": run.schedule.step_count, "is_main": run.main,
            "best": str(out / "best.pt"), "last": str(out / "last.pt"), "history": run.history}


def _epoch(run: _Run, epoch: int, stop: StopFlag, writer, on_step) -> str:
    """One epoch: its steps, then validation, checkpoints and logs. Returns "continue", "finished"
    or "interrupted" (Ctrl-C; last.pt holds where it stopped)."""
    cfg, plan, out, dist_info = run.cfg, run.plan, run.out, run.dist_info
    loader = run.loader(epoch, skip=run.skip_batches)
    bar = Progress(len(loader), f"epoch {epoch + 1}/{plan.epochs}", "img", enabled=cfg.progress and run.main)
    if run.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(run.device)
    t0 = time.perf_counter()
    try:
        stats = train_one_epoch(run.train_model, loader, run.optimizer, run.schedule, run.scaler, device=run.device,
                                normalise=run.normalise(), loss_fn=run.loss_fn(), autocast_dtype=run.autocast, clip_grad=cfg.clip_grad,
                                max_steps=plan.total_steps - run.schedule.step_count, stop=stop, dist_info=dist_info, progress=bar,
                                on_step=on_step, prepare=run.prepare())
    except TrainingStopped as exc:
        kept = f"kept {run.last_ok}" if run.last_ok else "no checkpoint was written yet"
        raise TrainingStopped(f"{exc} (epoch {epoch + 1}); stopped without saving it, {kept}; try a lower --lr"
                              + (" or --amp off" if run.autocast else "")) from None
    finally:
        bar.close()
    done_in_epoch = run.skip_batches + stats["steps"]
    epoch_loss_sum = run.carried_loss + stats["loss_sum"]
    run.skip_batches, run.carried_loss = 0, 0.0
    finished = run.schedule.step_count >= plan.total_steps
    interrupted = broadcast_flag(stop.set, dist_info)  # a Ctrl-C after the last in-epoch check counts too
    if interrupted and done_in_epoch < plan.steps_per_epoch and not finished:
        if run.main:
            _save_last(run, run.checkpoint(epoch, done_in_epoch, epoch_loss_sum))
        barrier(dist_info)
        run.say(f"interrupted at epoch {epoch + 1}, step {run.schedule.step_count}; wrote {out / 'last.pt'}; "
                f"continue with: edgeseg train --out {out} --resume")
        return "interrupted"
    record = {"epoch": epoch + 1, "step": run.schedule.step_count, "train_loss": round(epoch_loss_sum / max(done_in_epoch, 1), 6),
              "lr": run.schedule.lr(), "img_per_s": round(stats["img_per_s"], 3)}
    if (epoch + 1) % cfg.val_every == 0 or finished:
        summary = validate(run.model, run.meta, run.data.val, run.device, dist_info, cfg.val_limit, cfg.progress)
        record.update(val_miou=summary["miou"], val_pixel_acc=summary["pixel_acc"])
    peak, kind = peak_memory_mb(run.device)
    record.update(peak_mem_mb=round(peak, 1), peak_mem_kind=kind, epoch_s=round(time.perf_counter() - t0, 2))
    improved = "val_miou" in record and record["val_miou"] > run.best
    if improved:
        run.best = record["val_miou"]
    run.history.append(record)
    if run.main:
        _save_epoch(run, epoch, record, improved, writer)
    barrier(dist_info)
    run.say(f"epoch {epoch + 1}: loss {record['train_loss']:.4f}" + (f", val mIoU {record['val_miou']:.2f}" if "val_miou" in record else "")
            + f", {record['img_per_s']:.1f} img/s, peak {kind} {record['peak_mem_mb']:.0f} MB" + (" (best)" if improved else ""))
    if interrupted and not finished:  # stopped on an epoch's last step: the epoch is complete and saved
        run.say(f"interrupted after epoch {epoch + 1}; continue with: edgeseg train --out {out} --resume")
        return "interrupted"
    return "finished" if finished else "continue"


def _save_epoch(run: _Run, epoch: int, record: dict, improved: bool, writer) -> None:
    out = run.out
    _save_last(run, run.checkpoint(epoch + 1, 0))
    run.last_ok = out / "last.pt"
    if improved:
        save_checkpoint(out / "best.pt", run.checkpoint(epoch + 1, 0))
    write_text_atomic(out / "metrics.jsonl", "".join(json_text(h, indent=None) + "\n" for h in run.history))
    if writer is not None:
        log_epoch(writer, record, run.model, run.meta, run.data.val, run.device)
