"""The ``edgeseg`` command line: thin wrappers over public Python functions.

Every user mistake becomes one line on stderr and exit code 2; a failed check
(parity, INT8 budget) exits 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from pathlib import Path

import click

from edgeseg import __version__
from edgeseg.calibration.qdq import CALIB_METHODS, INT8_TARGETS
from edgeseg.data import DATASETS, KERNELS, LABEL_MODES
from edgeseg.errors import EdgesegError
from edgeseg.export.int8 import Int8Options
from edgeseg.export.onnx_export import OUTPUT_CHOICES, OnnxOptions
from edgeseg.export.trt_build import TrtOptions
from edgeseg.tasks.parity import DEFAULT_MAX_DELTA_MIOU, DEFAULT_MIN_AGREEMENT
from edgeseg.trainer.config import TrainConfig
from edgeseg.trainer.losses import CLASS_WEIGHTS

# --------------------------------------------------------------------------- option types


class Resolution(click.ParamType):
    """``WxH`` -> (width, height)."""

    name = "WxH"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(value))
        if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
            self.fail(f"expected WxH with positive integers, e.g. 512x256; got '{value}'", param, ctx)
        return int(m.group(1)), int(m.group(2))


RES = Resolution()


def dataset_options(default_split: str = "val", data_required: bool = False):
    """--dataset/--data/--split/--skip-bad, shared by every command that reads a data set."""

    def deco(fn):
        from edgeseg.data import DATASETS

        fn = click.option("--skip-bad", is_flag=True, help="Skip unreadable or inconsistent samples and report how many.")(fn)
        fn = click.option("--split", default=default_split, show_default=True, help="Data set split.")(fn)
        fn = click.option(
            "--data", "data", type=click.Path(path_type=Path), default=None,
            help="Data set root folder (not needed for synthetic).",
        )(fn)
        fn = click.option(
            "--dataset", type=click.Choice(list(DATASETS)), default=None,
            help="Data set kind [default: synthetic, or the model's training data set where known].",
        )(fn)
        return fn

    return deco


def default_of(cls, name: str):
    """The default of dataclass field ``name``: one place for every option default."""
    return cls.__dataclass_fields__[name].default


def res_text(res: tuple[int, int]) -> str:
    return f"{res[0]}x{res[1]}"


def _parse_providers(ctx, param, value):
    return [p.strip() for p in value.split(",") if p.strip()] if value else None


def providers_option(fn):
    return click.option("--providers", default=None, callback=_parse_providers,
                        help="ONNX Runtime execution providers, comma-separated (e.g. CUDAExecutionProvider,CPUExecutionProvider).")(fn)


def _csv(value):
    return [v.strip() for v in value.split(",")] if value else None


def engine_options(multi: bool = False):
    """--backend, --threads, --ov-precision, handed to the command as ``engine``: one
    runtime.EngineOptions, or with ``multi`` a list (comma-separated values, one per --model)."""
    from edgeseg.runtime.ov_runner import PRECISIONS

    each = " Comma-separated: one for all models or one per --model (auto: the model's own)." if multi else ""

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, backend, threads, ov_precision, **kwargs):
            from edgeseg.runtime import ONNX_BACKENDS, EngineOptions

            backends, precisions = _csv(backend) or [None], _csv(ov_precision) or [None]
            for b in backends:
                if b is not None and b not in ONNX_BACKENDS + ("auto",):
                    raise click.BadParameter(f"expected {' or '.join(ONNX_BACKENDS)} (or auto: by file type), got '{b}'", param_hint="--backend")
            for p in precisions:
                if p is not None and p not in PRECISIONS:
                    raise click.BadParameter(f"expected one of {', '.join(PRECISIONS)}, got '{p}'", param_hint="--ov-precision")
            if not multi and (len(backends) > 1 or len(precisions) > 1):
                raise click.BadParameter("one value expected", param_hint="--backend" if len(backends) > 1 else "--ov-precision")
            n = max(len(backends), len(precisions))
            if len(backends) not in (1, n) or len(precisions) not in (1, n):
                raise click.BadParameter(f"--backend gives {len(backends)} values and --ov-precision {len(precisions)}; "
                                         "give one value or one per --model", param_hint="--backend")
            engines = [EngineOptions(backend=backends[k % len(backends)], threads=threads, precision=precisions[k % len(precisions)])
                       for k in range(n)]
            return fn(*args, engine=engines if multi else engines[0], **kwargs)

        for opt in reversed([
            click.option("--backend", default=None, help="Backend for ONNX models: onnxruntime (default) or openvino "
                         f"(needs: pip install \"edgeseg[openvino]\"); .xml files run on openvino.{each}"),
            click.option("--threads", type=click.IntRange(min=1), default=None,
                         help="CPU threads for PyTorch, ONNX Runtime and OpenVINO [default: the engine's own]."),
            click.option("--ov-precision", default=None, help=f"OpenVINO inference precision: {', '.join(PRECISIONS)} [default: auto, which "
                         f"may run FP32 models in bf16 on CPUs with native bf16]; the precision that ran is reported.{each}"),
        ]):
            wrapper = opt(wrapper)
        return wrapper

    return deco


def quiet_option(fn):
    return click.option("--quiet", is_flag=True, help="No progress bars.")(fn)


def json_option(fn):
    return click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Also write the result as JSON to this file.")(fn)


def plot_option(fn):
    return click.option("--plot", "plot_path", type=click.Path(path_type=Path), default=None,
                        help='Also draw the result to this PNG (needs: pip install "edgeseg[plot]").')(fn)


def _check_plot(path: Path | None) -> None:
    """Before any work: the plotting package is there and the path is a .png."""
    if path is None:
        return
    if path.suffix.lower() != ".png":
        raise click.BadParameter(f"expected a .png file, got '{path}'", param_hint="--plot")
    from edgeseg.optional import require

    require("matplotlib", "--plot")


def write_json(path: Path | None, obj) -> None:
    if path is None:
        return
    from edgeseg.fileio import write_json_atomic

    write_json_atomic(path, obj)
    click.echo(f"wrote {path}", err=True)


# --------------------------------------------------------------------------- the group


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgeseg")
def cli():
    """Train compact segmentation models at low resolution with soft labels, export them to
    ONNX and TensorRT, and check that every backend still segments like the trained model."""


@cli.group()
def labels():
    """Label diagnostics."""


@labels.command("check")
@dataset_options(default_split="val")
@click.option("--res", type=RES, default="512x256", show_default=True, help="Training resolution to assess.")
@click.option(
    "--modes", default="soft-area,soft-bilinear,nearest,onehot-bilinear", show_default=True,
    help="Comma-separated label modes to compare.",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N samples.")
@click.option("--dup-stride", type=int, default=16, show_default=True, help="Block size r for the dupsample modes.")
@click.option("--dup-channels", type=int, default=64, show_default=True, help="C' for the dupsample modes (W fitted on the train split).")
@json_option
@plot_option
@click.option("--plot-index", type=click.IntRange(min=0), default=0, show_default=True, help="The image --plot draws.")
@quiet_option
def labels_check(dataset, data, split, skip_bad, res, modes, limit, dup_stride, dup_channels, json_path, plot_path, plot_index, quiet):
    """How much label information survives down-sampling to --res, per label mode.

    Each label is down-sampled to --res, its class masses up-sampled back
    (bilinear) and arg-maxed; mIoU* against the native label is an upper bound
    for a model trained on those targets.
    """
    from edgeseg.data import build_dataset
    from edgeseg.errors import ConfigError
    from edgeseg.tasks.labels_check import CHECK_MODES, DUP_MODES, check_labels, format_check

    chosen = [m.strip() for m in modes.split(",") if m.strip()]
    known = list(CHECK_MODES) + list(DUP_MODES)
    unknown = [m for m in chosen if m not in known]
    if unknown or not chosen:
        raise ConfigError(f"--modes: unknown mode(s) {unknown}; expected a comma-separated subset of {', '.join(known)}")
    ds = build_dataset(dataset or "synthetic", data, split, skip_bad)
    if limit:
        ds = ds.subset(range(min(limit, len(ds))))
    dup = None
    if set(chosen) & set(DUP_MODES):
        from edgeseg.trainer.dupsample_w import fitted_w

        if dup_stride < 2 or dup_channels < 1:
            raise ConfigError("--dup-stride must be at least 2 and --dup-channels at least 1")
        train = build_dataset(dataset or "synthetic", data, "train", skip_bad)
        dup = {"r": dup_stride, "W": fitted_w(train, res, dup_stride, dup_channels, "soft", "area")}
    _check_plot(plot_path)
    result = check_labels(ds, res, chosen, progress=not quiet, dup=dup)
    click.echo(format_check(result, ds, split))
    if plot_path is not None:
        import torch

        from edgeseg.tasks.labels_check import kept_label
        from edgeseg.tasks.plots import plot_label_modes

        if plot_index >= len(ds):
            raise click.BadParameter(f"{ds.info.name}/{split} has {len(ds)} images; got {plot_index}", param_hint="--plot-index")
        label = ds[plot_index].label
        kept = {m: kept_label(torch.from_numpy(label), m, res, ds.info, dup).numpy() for m in chosen}
        click.echo(f"wrote {plot_label_modes(label, kept, ds.info.palette, ds.info.class_names, res, plot_path)}", err=True)
    write_json(json_path, result)


def device_option(fn):
    return click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")(fn)


def _next_run_dir(base: Path) -> Path:
    """runs/train, runs/train2, runs/train3 ...: the first that does not exist yet."""
    if not base.exists():
        return base
    n = 2
    while Path(f"{base}{n}").exists():
        n += 1
    return Path(f"{base}{n}")


def _float_pair(text: str, option: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected MIN,MAX, e.g. 0.75,1.5; got '{text}'", param_hint=option) from None
    return lo, hi


def _model_opt(text: str):
    """KEY=VALUE -> (key, value); numbers, true/false and comma lists of numbers are typed."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise click.BadParameter(f"expected KEY=VALUE, got '{text}'", param_hint="--model-opt")

    def typed(v: str):
        v = v.strip()
        if v.lower() in ("true", "false"):
            return v.lower() == "true"
        for kind in (int, float):
            try:
                return kind(v)
            except ValueError:
                pass
        return v

    value = [typed(v) for v in raw.split(",")] if "," in raw else typed(raw)
    return key.strip(), value


def tta_option(fn):
    from edgeseg.models.tta import TTA_MODES

    return click.option("--tta", type=click.Choice(list(TTA_MODES)), default="none", show_default=True,
                        help="Test-time augmentation: flip averages the scores of the image and its mirror image (about 2x the time).")(fn)


def scales_option(fn):
    return click.option("--scales", default=None, help="Inference scales of a multi-scale attention model, e.g. 0.5,1.0,2.0.")(fn)


@cli.command()
@click.option("--res", type=RES, default=res_text(default_of(TrainConfig, "res")), show_default=True, help="Training resolution (model input).")
@click.option("--dataset", type=click.Choice(list(DATASETS)), default=default_of(TrainConfig, "dataset"), show_default=True)
@click.option("--data", type=click.Path(path_type=Path), default=None, help="Data set root (not needed for synthetic).")
@click.option("--labels", "label_mode", type=click.Choice(list(LABEL_MODES)), default=default_of(TrainConfig, "labels"), show_default=True,
              help="How labels reach the training resolution.")
@click.option("--kernel", type=click.Choice(list(KERNELS)), default=default_of(TrainConfig, "kernel"), show_default=True,
              help="Resize kernel shared by image and soft label.")
@click.option("--loss", type=click.Choice(["ce", "kl"]), default=default_of(TrainConfig, "loss"), show_default=True, help="Loss for soft targets.")
@click.option("--class-weights", type=click.Choice(CLASS_WEIGHTS), default=default_of(TrainConfig, "class_weights"), show_default=True,
              help="Loss weights from the training labels' class frequencies f: log = 1/ln(1.02+f) (ENet), sqrt = 1/sqrt(f).")
@click.option("--model", default=default_of(TrainConfig, "model"), show_default=True, help="Architecture (see 'edgeseg models').")
@click.option("--upscale", type=click.Choice(["1", "2", "4"]), default=str(default_of(TrainConfig, "upscale")), show_default=True,
              help="Class scores at K x --res through a learned up-sampler fed by stride-4/2 encoder features "
                   "(--model-opt upscale_input=8 adds a stride-1 stage on the input image; upscale_width=16 is the up-sampler's width).")
@click.option("--refine", type=click.Choice(["none", "guided"]), default=default_of(TrainConfig, "refine"), show_default=True,
              help="guided: refine the scores to the native frame with a learned guided filter; the model then takes the native frame. "
                   "Its guide: --model-opt guide_channels=1 (one shared guide map, cheaper), guide_kernel=3 (a 3x3 stage), "
                   "guide_width=0 (a guide linear in the colour, cheaper than the hidden stage).")
@click.option("--pretrained", default=default_of(TrainConfig, "pretrained"), show_default=True,
              help="auto (ImageNet when available for the model), imagenet, none, or a weights file.")
@click.option("--epochs", type=int, default=None, help="Epochs [default: 4 on synthetic, 100 otherwise].")
@click.option("--iters", type=int, default=None, help="Total optimiser steps (instead of --epochs).")
@click.option("--batch", type=int, default=default_of(TrainConfig, "batch"), show_default=True, help="Images per step and process.")
@click.option("--lr", type=float, default=default_of(TrainConfig, "lr"), show_default=True)
@click.option("--weight-decay", type=float, default=default_of(TrainConfig, "weight_decay"), show_default=True)
@click.option("--optimizer", type=click.Choice(["adamw", "sgd"]), default=default_of(TrainConfig, "optimizer"), show_default=True)
@click.option("--schedule", type=click.Choice(["poly", "cosine"]), default=default_of(TrainConfig, "schedule"), show_default=True)
@click.option("--warmup", type=int, default=None, help="Warm-up steps [default: 5% of the run, at most 200].")
@click.option("--clip-grad", type=float, default=default_of(TrainConfig, "clip_grad"), show_default=True, help="Max gradient norm (0: off).")
@click.option("--workers", type=int, default=None, help="Data loader processes [default: 0 on CPU, min(8, cores-1) on CUDA].")
@device_option
@click.option("--amp", type=click.Choice(["off", "auto", "bf16", "fp16"]), default=default_of(TrainConfig, "amp"), show_default=True,
              help="Mixed precision on CUDA (auto: bf16 where supported, else fp16).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run folder [default: runs/train, runs/train2, ...].")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last.pt.")
@click.option("--exist-ok", is_flag=True, help="Train into an existing --out, overwriting its files.")
@click.option("--seed", type=int, default=default_of(TrainConfig, "seed"), show_default=True)
@click.option("--scale", default=",".join(map(str, default_of(TrainConfig, "scale"))), show_default=True, help="Random zoom range MIN,MAX.")
@click.option("--no-hflip", is_flag=True, help="Turn off random horizontal flips.")
@click.option("--jitter", type=float, default=default_of(TrainConfig, "jitter"), show_default=True, help="Photometric jitter strength (0: off).")
@click.option("--val-every", type=int, default=default_of(TrainConfig, "val_every"), show_default=True, help="Validate every N epochs.")
@click.option("--val-limit", type=int, default=None, help="Validate on the first N val images only.")
@click.option("--train-limit", type=int, default=None, help="Train on the first N training images only.")
@click.option("--train-fraction", type=float, default=None, help="Train on a random fraction of the training split (few-label runs).")
@click.option("--skip-bad", is_flag=True, help="Skip unreadable or inconsistent samples and report how many.")
@click.option("--contrastive-epochs", type=click.IntRange(min=0), default=default_of(TrainConfig, "contrastive_epochs"), show_default=True,
              help="Label-based pixel contrastive pretraining epochs before supervised training.")
@click.option("--contrastive-pixels", type=click.IntRange(min=2), default=default_of(TrainConfig, "contrastive_pixels"), show_default=True,
              help="Pixels sampled per batch for the contrastive loss.")
@click.option("--extra-data", type=click.Path(path_type=Path), multiple=True,
              help="A folder data set (e.g. from 'edgeseg autolabel') added to the training split (repeatable).")
@click.option("--class-uniform", type=float, default=default_of(TrainConfig, "class_uniform"), show_default=True,
              help="Fraction of each epoch's crops centred on a pixel of a uniformly chosen class.")
@click.option("--model-opt", "model_opts", multiple=True, metavar="KEY=VALUE",
              help="Architecture option, e.g. infer_scales=0.5,1.0 or channels=64 (repeatable).")
@quiet_option
def train(res, dataset, data, label_mode, kernel, loss, class_weights, model, upscale, refine, pretrained, epochs, iters, batch, lr, weight_decay,
          optimizer, schedule, warmup, clip_grad, workers, device, amp, out, resume, exist_ok, seed, scale, no_hflip,
          jitter, val_every, val_limit, train_limit, train_fraction, skip_bad, contrastive_epochs, contrastive_pixels, extra_data, class_uniform,
          model_opts, quiet):
    """Train a compact model at low resolution with soft labels.

    With no options: lite0-lraspp on the embedded synthetic scenes at 512x256,
    a few minutes on a CPU. Run under 'torchrun --nproc_per_node N' for
    DistributedDataParallel (NCCL on GPU, gloo on CPU). Ctrl-C saves last.pt;
    --resume continues exactly where it stopped.
    """
    from edgeseg.trainer import TrainConfig
    from edgeseg.trainer import train as run_train

    if resume and out is None:
        raise click.BadParameter("give the run folder to resume, e.g. --out runs/train", param_hint="--resume")
    out = out if out is not None else _next_run_dir(Path("runs") / "train")
    cfg = TrainConfig(
        out=str(out), res=res, dataset=dataset, data=str(data) if data else None, labels=label_mode, kernel=kernel,
        loss=loss, class_weights=class_weights, model=model, upscale=int(upscale), refine=refine, pretrained=pretrained, epochs=epochs, iters=iters, batch=batch, lr=lr,
        weight_decay=weight_decay, optimizer=optimizer, schedule=schedule, warmup=warmup, clip_grad=clip_grad,
        workers=workers, device=device, amp=amp, seed=seed, scale=_float_pair(scale, "--scale"), hflip=not no_hflip,
        jitter=jitter, val_every=val_every, val_limit=val_limit, train_limit=train_limit, train_fraction=train_fraction, skip_bad=skip_bad,
        resume=resume, exist_ok=exist_ok, progress=not quiet, model_options=tuple(_model_opt(o) for o in model_opts),
        contrastive_epochs=contrastive_epochs, contrastive_pixels=contrastive_pixels, class_uniform=class_uniform,
        extra_data=tuple(str(p) for p in extra_data),
    )
    if resume:
        cfg = _resumed_config(cfg, out, click.get_current_context())
    result = run_train(cfg)
    if result.get("interrupted"):
        return 130
    if result["is_main"]:
        click.echo(f"best val mIoU {result['best_miou']:.2f}; checkpoints in {result['out']} (best.pt, last.pt)")
    return 0


# TrainConfig fields set by a train option of another name, and fields no option sets.
_OPTION_OF = {"labels": "label_mode", "hflip": "no_hflip", "model_options": "model_opts", "progress": "quiet"}
_NEVER_FROM_CHECKPOINT = {"out", "resume", "exist_ok", "progress", "device", "workers"}


def _resumed_config(cfg, out: Path, ctx: click.Context):
    """--resume: every option left out of the command line takes the value the run was started with,
    so 'edgeseg train --out RUN --resume' continues it as it was; options given are checked against it."""
    from dataclasses import fields, replace

    from click.core import ParameterSource

    from edgeseg.models import load_checkpoint

    path = out / "last.pt"
    if not path.is_file():
        return cfg  # the trainer says there is nothing to resume
    saved = (load_checkpoint(path).training or None)
    saved = (saved.train_config if saved else None) or {}
    given = {name for name in ctx.params if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE}
    if given & {"epochs", "iters"}:
        given |= {"epochs", "iters"}  # the schedule was given: take neither from the checkpoint
    changes = {}
    for f in fields(cfg):
        if f.name in _NEVER_FROM_CHECKPOINT or f.name not in saved or _OPTION_OF.get(f.name, f.name) in given:
            continue
        value = saved[f.name]
        if isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        changes[f.name] = value
    return replace(cfg, **changes)


@cli.command(name="eval")
@click.option("--model", "model_path", type=click.Path(path_type=Path), required=True,
              help="Checkpoint (.pt), ONNX model (.onnx), TensorRT engine (.engine) or OpenVINO IR (.xml).")
@dataset_options(default_split="val")
@click.option("--reference", type=click.Path(path_type=Path), default=None,
              help="Also run this model (e.g. best.pt) and report parity: pixel agreement and mIoU change.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Evaluate the first N images only.")
@device_option
@providers_option
@engine_options()
@click.option("--strict", is_flag=True, help="Refuse models whose input size differs from their metadata.")
@scales_option
@tta_option
@json_option
@plot_option
@quiet_option
def eval_cmd(model_path, dataset, data, split, skip_bad, reference, batch, limit, device, providers, strict, scales, tta, json_path, plot_path,
             quiet, engine):
    """mIoU, per-class IoU and pixel accuracy at native resolution, with any backend."""
    from edgeseg.tasks.evaluate import evaluate_model, format_eval

    _check_plot(plot_path)
    result = evaluate_model(model_path, dataset, data, split, skip_bad, reference, batch, limit, device, providers, strict,
                            progress=not quiet, scales=scales, engine=engine, tta=tta)
    click.echo(format_eval(result))
    write_json(json_path, result)
    if plot_path is not None:
        from edgeseg.tasks.plots import plot_eval

        click.echo(f"wrote {plot_eval(result, plot_path)}", err=True)
    return 0


@cli.command()
@click.option("--model", "checkpoint", type=click.Path(path_type=Path), required=True, help="Checkpoint to export (e.g. runs/train/best.pt).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None, help="Output folder [default: the checkpoint's folder].")
@click.option("--opset", type=int, default=default_of(OnnxOptions, "opset"), show_default=True, help="ONNX opset (17 suits TensorRT 8.5 and newer).")
@click.option("--dynamic-batch", is_flag=True, help="Make the batch dimension dynamic.")
@click.option("--output", type=click.Choice(list(OUTPUT_CHOICES)), default=default_of(OnnxOptions, "output"), show_default=True,
              help="Graph outputs: float logits, in-graph argmax labels (uint8), or both.")
@click.option("--output-size", type=RES, default=None, help="Up-sample the label output to WxH inside the graph.")
@click.option("--input", "input_format", type=click.Choice(["float", "uint8"]), default=default_of(OnnxOptions, "input_format"), show_default=True,
              help="float: normalised NCHW float32; uint8: NHWC uint8 with normalisation inside the graph.")
@click.option("--no-verify", is_flag=True, help="Skip the parity check on real images.")
@dataset_options(default_split="val")
@click.option("--verify-images", type=click.IntRange(min=1), default=32, show_default=True, help="Images for the parity check.")
@click.option("--min-agreement", type=float, default=DEFAULT_MIN_AGREEMENT, show_default=True, help="Minimum pixel agreement (percent).")
@click.option("--max-delta-miou", type=float, default=DEFAULT_MAX_DELTA_MIOU, show_default=True, help="Maximum |delta mIoU| (points).")
@device_option
@click.option("--int8", is_flag=True, help="Also write model.int8.onnx (Q/DQ, calibrated on the training split) and calibration.cache.")
@click.option("--calib-method", type=click.Choice(list(CALIB_METHODS)), default=default_of(Int8Options, "calib_method"), show_default=True)
@click.option("--calib-images", type=int, default=default_of(Int8Options, "calib_images"), show_default=True, help="Calibration images (at least 10; 100+ advised).")
@click.option("--calib-seed", type=int, default=default_of(Int8Options, "calib_seed"), show_default=True)
@click.option("--calib-array", type=click.Path(path_type=Path), default=None, help="Pre-processed calibration inputs (.npy) instead of images.")
@click.option("--int8-budget", type=float, default=default_of(Int8Options, "budget"), show_default=True, help="mIoU points INT8 may lose against FP32.")
@click.option("--no-fallback", is_flag=True, help="Quantise every layer; no float fallback of sensitive blocks.")
@click.option("--int8-target", type=click.Choice(list(INT8_TARGETS)), default=default_of(Int8Options, "target"), show_default=True,
              help="Where the INT8 model runs: tensorrt (Q/DQ on operator inputs) or cpu (ONNX Runtime / OpenVINO integer kernels).")
@click.option("--sensitivity-images", type=int, default=default_of(Int8Options, "sensitivity_images"), show_default=True, help="Val images for the INT8 sensitivity search.")
@click.option("--openvino", is_flag=True, help='Also write OpenVINO IR of each ONNX model (model.xml/.bin, model.int8.xml/.bin), '
              'each with a parity check (needs: pip install "edgeseg[openvino]").')
@click.option("--trt", is_flag=True, help="Build a TensorRT engine (model.engine and model.engine.json).")
@click.option("--fp16", is_flag=True, help="With --trt: FP16 engine; with --trt --int8: float layers may run in FP16 (TensorRT < 11).")
@click.option("--int8-mode", type=click.Choice(["auto", "explicit", "implicit"]), default=default_of(TrtOptions, "int8_mode"), show_default=True,
              help="With --trt --int8: explicit Q/DQ (TensorRT >= 10) or the calibration cache (8.5-10.x); auto picks by version.")
@click.option("--workspace", type=float, default=default_of(TrtOptions, "workspace_gb"), show_default=True, help="TensorRT workspace in GB.")
@click.option("--timing-cache", type=click.Path(path_type=Path), default=None, help="TensorRT timing cache file (read and updated).")
@click.option("--dla", type=int, default=None, help="Build for DLA core N (Jetson), GPU fallback on; needs --fp16 or --int8.")
@click.option("--max-batch", type=click.IntRange(min=1), default=default_of(TrtOptions, "max_batch"), show_default=True,
              help="With --dynamic-batch --trt: the largest batch the engine accepts.")
@scales_option
@tta_option
@quiet_option
def export(checkpoint, out_dir, opset, dynamic_batch, output, output_size, input_format, no_verify, dataset, data, split,
           skip_bad, verify_images, min_agreement, max_delta_miou, device, int8, calib_method, calib_images, calib_seed,
           calib_array, int8_budget, no_fallback, int8_target, sensitivity_images, openvino, trt, fp16, int8_mode, workspace, timing_cache, dla, max_batch, scales,
           tta, quiet):
    """Export a checkpoint to ONNX (and INT8, TensorRT) and prove parity on real images.

    Writes model.onnx and parity.json; --int8 adds model.int8.onnx, int8_report.json and a
    TensorRT calibration cache; --openvino adds OpenVINO IR of each (model.xml, model.int8.xml);
    --trt adds model.engine and model.engine.json. Fails with exit
    code 1 when a parity check misses its threshold.
    """
    from edgeseg.export import OnnxOptions
    from edgeseg.export.int8 import Int8Options
    from edgeseg.export.trt_build import TrtOptions
    from edgeseg.tasks.export import export_model

    if fp16 and not trt:
        raise click.BadParameter("--fp16 applies to TensorRT engines; add --trt", param_hint="--fp16")
    options = OnnxOptions(opset=opset, dynamic_batch=dynamic_batch, output=output, output_size=output_size, input_format=input_format,
                          scales=scales, tta=tta)
    int8_opts = Int8Options(calib_method=calib_method, calib_images=calib_images, calib_seed=calib_seed,
                            calib_array=str(calib_array) if calib_array else None, budget=int8_budget, fallback=not no_fallback,
                            sensitivity_images=sensitivity_images, target=int8_target) if int8 else None
    trt_opts = None
    if trt:
        precision = "int8" if int8 else ("fp16" if fp16 else "fp32")
        trt_opts = TrtOptions(precision=precision, int8_mode=int8_mode, workspace_gb=workspace,
                              timing_cache=str(timing_cache) if timing_cache else None, dla_core=dla,
                              fp16_fallback=bool(int8 and fp16), max_batch=max_batch)
    export_model(checkpoint, out_dir, options, verify=not no_verify, dataset=dataset, data=data, split=split,
                 n_verify=verify_images, min_agreement=min_agreement, max_delta_miou=max_delta_miou,
                 device="cpu" if device == "auto" else device, int8=int8_opts, trt=trt_opts, progress=not quiet, openvino=openvino)
    return 0


@cli.command()
@click.option("--model", "models", type=click.Path(path_type=Path), multiple=True, required=True,
              help="Model file; repeat to time several side by side in one run.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--iters", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--in-process", is_flag=True, help="Time several models in this process instead of a worker process each "
              "(their thread pools then compete and distort the ratios).")
@click.option("--block", type=click.IntRange(min=1), default=10, show_default=True, help="Iterations each worker runs per turn.")
@dataset_options(default_split="val")
@device_option
@providers_option
@engine_options(multi=True)
@json_option
@quiet_option
def bench(models, batch, iters, warmup, in_process, block, dataset, data, split, skip_bad, device, providers, json_path, quiet, engine):
    """Latency p50/p90/p99 and throughput, model only and end to end (pre- and post-processing).

    Several models take turns, each in its own worker process, so that one engine's threads
    do not slow the next; ratios are to the first model."""
    from edgeseg.tasks.bench import bench as run_bench
    from edgeseg.tasks.bench import format_bench

    result = run_bench(list(models), batch, iters, warmup, device, providers, dataset, data, progress=not quiet, engines=engine,
                       isolate=False if in_process else None, block=block)
    click.echo(format_bench(result))
    write_json(json_path, result)
    return 0


@cli.command()
@click.option("--model", "model_path", type=click.Path(path_type=Path), required=True)
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Folder for <name>_label.png and <name>_overlay.png.")
@device_option
@providers_option
@engine_options()
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.5, show_default=True, help="Overlay opacity.")
@click.option("--strict", is_flag=True, help="Refuse images whose aspect ratio differs from the model input.")
@click.option("--every", type=click.IntRange(min=1), default=1, show_default=True, help="Video: segment every Nth frame.")
@click.option("--labels", "labels", is_flag=True, help="Video: also write a label PNG per frame.")
@click.option("--exist-ok", is_flag=True, help="Video: replace an overlay video that exists.")
@quiet_option
def predict(model_path, inputs, out_dir, device, providers, alpha, strict, every, labels, exist_ok, quiet, engine):
    """Segment images and folders (label and overlay PNGs), or a video file, camera index (0) or
    stream URL (rtsp://, http://) into an overlay video; video needs: pip install "edgeseg[video]"."""
    from edgeseg.tasks.predict import predict as run_predict

    result = run_predict(model_path, inputs, out_dir, device, providers, alpha, strict, progress=not quiet, every=every,
                         labels=labels, exist_ok=exist_ok, engine=engine)
    if result["outputs"]:
        click.echo(f"wrote {result['outputs']} label and overlay pairs to {result['out']}")
    for v in result["videos"]:
        t = v["seconds"]
        click.echo(f"wrote {v['video']} ({v['frames']} frames, {v['codec']}, {v['fps']} frames/s; decode {t['decode']:.1f} s, "
                   f"infer {t['infer']:.1f} s, encode {t['encode']:.1f} s of {t['wall']:.1f} s)"
                   + (" - interrupted, the video holds the frames so far" if v["interrupted"] else ""))
    return 0


@cli.command()
@click.option("--model", "model_path", type=click.Path(path_type=Path), required=True, help="Teacher: checkpoint or ONNX model with logits.")
@click.option("--images", "images", type=click.Path(path_type=Path), multiple=True, required=True, help="Image files or folders (repeatable).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Output folder data set (images/, masks/, classes.json).")
@click.option("--threshold", type=float, default=0.9, show_default=True, help="Minimum class probability; below it the pixel is void.")
@scales_option
@click.option("--soft", is_flag=True, help="Also write top-2 soft labels (soft/<name>.png, 4 bytes a pixel).")
@device_option
@providers_option
@engine_options()
@click.option("--exist-ok", is_flag=True, help="Overwrite labels already in --out.")
@quiet_option
def autolabel(model_path, images, out_dir, threshold, scales, soft, device, providers, exist_ok, quiet, engine):
    """Teacher predictions to a folder data set that 'edgeseg train' can use (alone or via --extra-data)."""
    from edgeseg.tasks.autolabel import autolabel as run_autolabel

    r = run_autolabel(model_path, list(images), out_dir, threshold, scales, soft, device, providers, exist_ok, progress=not quiet, engine=engine)
    click.echo(f"labelled {r['images']} images into {r['out']}: {100 * r['labelled_fraction']:.1f}% of pixels at p >= {threshold}"
               + (" (plus top-2 soft labels)" if soft else ""))
    return 0


@cli.command()
@click.option("--classes", type=int, default=19, show_default=True, help="Classes for the parameter count.")
def models(classes):
    """The registered architectures, with parameter counts."""
    from edgeseg.models import DEFAULT_MODEL, MODELS, ModelConfig, build_model

    for name, builder in MODELS.items():
        n = sum(p.numel() for p in build_model(ModelConfig(name, classes)).parameters())
        doc = (builder.__doc__ or "").strip().splitlines()[0] if builder.__doc__ else ""
        click.echo(f"{name:18s} {n / 1e6:6.2f} M params  {doc}" + ("  [default]" if name == DEFAULT_MODEL else ""))
    return 0


# --------------------------------------------------------------------------- entry point


class _EchoHandler(logging.Handler):
    """edgeseg's log records as plain lines on stderr ("warning: " before warnings); the stream is
    looked up at each record, so redirected or captured stderr gets them."""

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        click.echo(f"warning: {msg}" if record.levelno >= logging.WARNING else msg, err=True)


def configure_logging() -> None:
    """Library modules log to ``logging.getLogger("edgeseg.<module>")``; the command line shows them."""
    root = logging.getLogger("edgeseg")
    root.handlers = [h for h in root.handlers if not isinstance(h, _EchoHandler)] + [_EchoHandler()]
    root.setLevel(logging.INFO)
    root.propagate = False


def main(argv=None) -> None:
    configure_logging()
    try:
        rv = cli.main(args=argv, prog_name="edgeseg", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(130)
    except click.exceptions.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        click.echo(f"error: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except EdgesegError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except OSError as exc:  # where an output cannot be written: read-only, full disk, a file in the way
        where = exc.filename if exc.filename is not None else "an output file"
        click.echo(f"error: {where}: {exc.strerror or exc}; check the path and free space", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)
