"""The options of one training run, declared once: each field carries its command-line help,
choices and bounds (edgeseg.records.opt), so ``edgeseg train``'s options are made from this
record, checked here when it is made, saved to config.json and into checkpoints, and merged
with the run's own on ``--resume`` by :meth:`TrainConfig.resumed` (the CLI and the Python API
share it)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from edgeseg.data import DATASETS, KERNELS, LABEL_MODES
from edgeseg.errors import ConfigError, ModelFileError
from edgeseg.limits import check_size
from edgeseg.models import DEFAULT_MODEL, MODELS, check_model_options
from edgeseg.models.native import REFINES, UPSCALES
from edgeseg.records import check_fields, check_needs, coerce_field, flag_of, opt
from edgeseg.trainer.data import AUGMENT_ON
from edgeseg.trainer.epoch import AMP_MODES
from edgeseg.trainer.losses import CLASS_WEIGHTS, SOFT_LOSSES
from edgeseg.trainer.schedule import OPTIMIZERS, SCHEDULES

MAX_SEED = 2**32 - 1  # numpy's and torch's seeds are 32-bit words here
BIG = 10**9  # bound of counts that have no natural limit (steps, images)


def parse_model_option(text: str):
    """``KEY=VALUE`` -> (key, value); numbers, true/false and comma lists of numbers are typed."""
    key, sep, raw = str(text).partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--model-opt: expected KEY=VALUE, got '{text}'")

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


def _float_pair(text: str):
    try:
        lo, hi = (float(v) for v in str(text).split(","))
    except ValueError:
        raise ConfigError(f"--scale: expected MIN,MAX, e.g. 0.75,1.5; got '{text}'") from None
    return lo, hi


@dataclass(frozen=True)
class TrainConfig:
    out: str = opt("runs/train", resume="never", cli_default=None, output="folder", help="Run folder [default: runs/train, runs/train2, ...].")
    res: tuple[int, int] = opt((512, 256), help="Training resolution (model input), WxH.")
    dataset: str = opt("synthetic", choices=tuple(DATASETS), help="Data set kind.")
    data: str | None = opt(None, input=True, needs=("dataset", tuple(d for d in DATASETS if d != "synthetic")),
                           help="Data set root (not for synthetic, which is generated).")
    train_split: str = opt("train", help="Split to train on.")
    val_split: str = opt("val", help="Split to validate on.")
    labels: str = opt("soft", choices=LABEL_MODES, help="How labels reach the training resolution.")
    kernel: str = opt("area", choices=KERNELS, help="Resize kernel shared by image and soft label.")
    loss: str = opt("ce", choices=tuple(SOFT_LOSSES), needs=("labels", ("soft", "onehot-bilinear")),
                    help="Loss for soft targets (--labels soft or onehot-bilinear; nearest labels are hard).")
    class_weights: str = opt("none", choices=CLASS_WEIGHTS,
                             help="Loss weights from the training labels' class frequencies f: log = 1/ln(1.02+f) (ENet), sqrt = 1/sqrt(f).")
    model: str = opt(DEFAULT_MODEL, help="Architecture (see 'edgeseg models').")
    upscale: int = opt(1, choices=UPSCALES, help="Class scores at K x --res through a learned up-sampler fed by stride-4/2 encoder "
                       "features (--model-opt upscale_input=8 adds a stride-1 stage on the input image; upscale_width=16 is the "
                       "up-sampler's width).")
    refine: str = opt("none", choices=REFINES, help="guided: refine the scores to the native frame with a learned guided filter; the "
                      "model then takes the native frame. Its guide: --model-opt guide_channels=1 (one shared guide map, cheaper), "
                      "guide_kernel=3 (a 3x3 stage), guide_width=0 (a guide linear in the colour, cheaper than the hidden stage).")
    pretrained: str = opt("auto", input=True, help="auto (ImageNet when available for the model), imagenet, none, or a weights file.")
    epochs: int | None = opt(None, low=1, high=100_000, help="Epochs [default: 4 on synthetic, 100 otherwise].")
    iters: int | None = opt(None, low=1, high=BIG, help="Total optimiser steps (instead of --epochs).")
    batch: int = opt(8, low=1, high=4096, help="Images per step and process.")
    lr: float = opt(2e-3, low=0.0, high=10.0, low_open=True, help="Peak learning rate.")
    weight_decay: float = opt(1e-4, low=0.0, high=10.0, help="Weight decay (not on biases and norms).")
    optimizer: str = opt("adamw", choices=OPTIMIZERS, help="Optimiser.")
    schedule: str = opt("poly", choices=SCHEDULES, help="Learning-rate schedule after the warm-up.")
    warmup: int | None = opt(None, low=0, high=BIG, help="Warm-up steps [default: 5% of the run, at most 200].")
    clip_grad: float = opt(5.0, low=0.0, high=1e6, help="Max gradient norm (0: off).")
    workers: int | None = opt(None, low=0, high=256, resume="never", help="Data loader processes [default: 0 on CPU, min(8, cores-1) on CUDA].")
    augment_on: str = opt("auto", choices=AUGMENT_ON, resume="never",
                          help="Where zoom, crop, flip, resize, soft labels and jitter run: in the loader's workers, or on the training "
                               "device (workers then only decode); auto: device on CUDA, worker on CPU. Same result either way.")
    cache: str | None = opt(None, input=True, resume="never", help="A decoded cache of the training split (from 'edgeseg data cache'), read instead "
                                                       "of its image files; refused when stale.")
    device: str = opt("auto", resume="never", help="auto, cpu or cuda[:N].")
    amp: str = opt("off", choices=AMP_MODES, help="Mixed precision on CUDA (auto: bf16 where supported, else fp16).")
    seed: int = opt(0, low=0, high=MAX_SEED, help="Seed of initialisation, sample order and augmentation.")
    scale: tuple[float, float] = opt((0.75, 1.5), low=0.0, high=16.0, low_open=True, parse=_float_pair, metavar="MIN,MAX",
                                     help="Random zoom range MIN,MAX.")
    hflip: bool = opt(True, flag="--no-hflip", invert=True, help="Turn off random horizontal flips.")
    jitter: float = opt(0.2, low=0.0, high=0.99, help="Photometric jitter strength (0: off).")
    val_every: int = opt(1, low=1, high=100_000, resume="inherit", help="Validate every N epochs.")
    val_limit: int | None = opt(None, low=1, high=BIG, resume="inherit", help="Validate on the first N val images only.")
    train_limit: int | None = opt(None, low=1, high=BIG, help="Train on the first N training images only.")
    train_fraction: float | None = opt(None, low=0.0, high=1.0, low_open=True,
                                       help="Train on a random fraction of the training split (few-label runs).")
    subset_seed: int = opt(0, needs="train_fraction", low=0, high=MAX_SEED, help="Fixes which samples --train-fraction keeps, whatever --seed.")
    skip_bad: bool = opt(False, help="Skip unreadable or inconsistent samples and report how many.")
    resume: bool = opt(False, resume="never", help="Continue the run in --out from its last.pt (options left out are the run's).")
    exist_ok: bool = opt(False, resume="never", help="Train into an existing --out, overwriting its files.")
    progress: bool = opt(True, flag="--quiet", invert=True, resume="never", help="No progress bars.")
    model_options: tuple = opt((), flag="--model-opt", multiple=True, parse=parse_model_option, metavar="KEY=VALUE",
                               help="Architecture option, e.g. infer_scales=0.5,1.0 or channels=64 (repeatable).")
    contrastive_epochs: int = opt(0, low=0, high=100_000, help="Label-based pixel contrastive pretraining epochs before supervised training.")
    contrastive_pixels: int = opt(10000, needs="contrastive_epochs", low=2, high=10**7, help="Pixels sampled per batch for the contrastive loss (bounds its memory).")
    contrastive_threshold: float = opt(0.75, needs="contrastive_epochs", low=0.0, high=1.0, help="Soft labels: the least share of the top class for a contrastive pixel.")
    class_uniform: float = opt(0.0, low=0.0, high=1.0, help="Fraction of each epoch's crops centred on a pixel of a uniformly chosen class.")
    teacher: str | None = opt(None, input=True, help="Distil from a teacher: a checkpoint (it labels every training image once, at native "
                                         "resolution with flip; the labels are kept in edgeseg's cache) or a folder of its labels.")
    distill_weight: float = opt(0.5, needs="teacher", low=0.0, high=1.0, help="With --teacher: loss = (1 - W) label loss + W T^2 KL(teacher || student).")
    distill_temperature: float = opt(1.0, needs="teacher", low=0.0, high=20.0, low_open=True, help="With --teacher: the softmax temperature T of both.")
    distill_class_weights: bool = opt(False, needs=["teacher", ("class_weights", tuple(c for c in CLASS_WEIGHTS if c != "none"))],
                                      help="With --teacher and --class-weights: weight the distillation term by the class weights "
                                           "as the label loss is (by default it is unweighted).")
    sr_aux: bool = opt(False, help="Training only: a light branch reconstructs the window at native resolution from the network's "
                                   "features (DSRL); the exported model is the model without it.")
    sr_weight: float = opt(0.1, needs="sr_aux", low=0.0, high=100.0, help="With --sr-aux: the weight of its mean squared error (images normalised as the model's input).")
    extra_data: tuple[str, ...] = opt((), input=True, multiple=True, help="A folder data set (e.g. from 'edgeseg autolabel') added to the training split (repeatable).")

    def __post_init__(self):
        """Every option checked once, where the config is made: a one-line error naming it."""
        object.__setattr__(self, "res", check_size(*_pair(self.res, "--res"), "--res"))
        object.__setattr__(self, "scale", tuple(_pair(self.scale, "--scale")))
        object.__setattr__(self, "model_options", tuple(tuple(kv) for kv in self.model_options))
        object.__setattr__(self, "extra_data", tuple(str(p) for p in self.extra_data))
        check_fields(self, needs=not self.resume)  # a resume checks them once merged with the run (resumed)
        if self.epochs is not None and self.iters is not None:
            raise ConfigError("--epochs and --iters: give one or the other")
        if self.resume and self.exist_ok:
            raise ConfigError("--exist-ok: has no effect with --resume (which continues the run in --out); leave one of them out")
        lo, hi = self.scale
        if lo > hi:
            raise ConfigError(f"--scale {lo:g},{hi:g}: expected MIN <= MAX")
        for name in ("out", "pretrained", "model", "train_split", "val_split"):
            if not str(getattr(self, name)).strip():
                raise ConfigError(f"{flag_of(_field(name))}: expected a value, got an empty string")
        if self.data is not None and not str(self.data).strip():
            raise ConfigError("--data: expected a folder, got an empty string")
        if self.model not in MODELS:
            raise ConfigError(f"--model: unknown model '{self.model}'; expected one of: {', '.join(sorted(MODELS))}")
        check_model_options(self.model, dict(self.model_options))
        # Input paths absolute: a run's saved options (--resume, eval's data set) name the same files from any working folder.
        object.__setattr__(self, "extra_data", tuple(_absolute(p) for p in self.extra_data))
        for name in ("data", "teacher", "cache"):
            object.__setattr__(self, name, _absolute(getattr(self, name)))
        if self.pretrained not in PRETRAINED_WORDS:
            object.__setattr__(self, "pretrained", _absolute(self.pretrained))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["res"] = list(self.res)
        d["scale"] = list(self.scale)
        d["model_options"] = [list(kv) for kv in self.model_options]
        d["extra_data"] = list(self.extra_data)
        return d

    def resumed(self, saved: dict, given=None) -> "TrainConfig":
        """This config merged with the run's own (``saved``, its train_config) for ``--resume``: every
        option not in ``given`` (the names the caller set; None: those differing from their
        defaults) takes the run's value, except the options that belong to this invocation (out,
        device, workers ...). What was given and differs is then refused by the resume check."""
        if given is None:
            given = {f.name for f in fields(self) if getattr(self, f.name) != _default(f)}
        given = set(given)
        if given & {"epochs", "iters"}:
            given |= {"epochs", "iters"}  # the schedule was given: take neither from the run
        saved = saved_options(saved)
        changes = {}
        for f in fields(self):
            if f.metadata.get("resume") == "never" or f.name in given or f.name not in saved:
                continue
            try:  # a checkpoint is a file: its saved options are read as their fields' types, or refused
                value = coerce_field(TrainConfig, f.name, saved[f.name])
            except ValueError as exc:
                raise ModelFileError(f"{Path(self.out) / 'last.pt'}: its saved option {flag_of(f)} is damaged ({exc})") from None
            if isinstance(value, list):
                value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
            changes[f.name] = value
        try:
            merged = replace(self, **changes)
        except (TypeError, ValueError) as exc:  # (ConfigError, a value out of bounds, says which option)
            raise ModelFileError(f"{Path(self.out) / 'last.pt'}: its saved options cannot be used ({str(exc)[:120]})") from None
        check_needs(merged, names=given, given=given)  # what was given now must find what it needs, in the run or given with it
        return merged


def saved_options(saved: dict) -> dict:
    """A run's saved options as this version reads them: an older run may hold a --data that the
    synthetic data set ignored then and refuses now (dropped)."""
    if saved.get("dataset") == "synthetic" and saved.get("data") is not None:
        saved = {**saved, "data": None}
    return saved


def compared_fields() -> tuple[str, ...]:
    """The options a resumed run must share with the run it continues."""
    return tuple(f.name for f in fields(TrainConfig) if f.metadata.get("resume") == "compare")


PRETRAINED_WORDS = ("auto", "imagenet", "none")  # --pretrained values that are not files


def _absolute(path):
    """``path`` made absolute (links kept, '..' folded), None and empty strings as they are."""
    return os.path.abspath(path) if path is not None and str(path).strip() else path


def _field(name: str):
    return next(f for f in fields(TrainConfig) if f.name == name)


def _default(f):
    from dataclasses import MISSING

    return f.default if f.default is not MISSING else f.default_factory()


def _pair(value, flag: str):
    if isinstance(value, str):
        raise ConfigError(f"{flag}: expected two numbers, got '{value}'")
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ConfigError(f"{flag}: expected two numbers, got {value!r}") from None
    return a, b


def default_epochs(dataset: str) -> int:
    """The quick-start default on the synthetic set fits in minutes on a CPU; real data gets a real schedule."""
    return 4 if dataset == "synthetic" else 100
