"""The resolved options of one training run; saved to config.json and into checkpoints."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from edgeseg.errors import ConfigError
from edgeseg.models import DEFAULT_MODEL

MAX_RES = 8192  # widest or tallest --res accepted


@dataclass(frozen=True)
class TrainConfig:
    out: str = "runs/train"
    res: tuple[int, int] = (512, 256)  # (width, height)
    dataset: str = "synthetic"
    data: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    labels: str = "soft"  # soft | nearest | onehot-bilinear
    kernel: str = "area"  # area | bilinear
    loss: str = "ce"  # ce | kl, for soft targets
    class_weights: str = "none"  # none | log | sqrt: loss weights from the training labels' class frequencies
    model: str = DEFAULT_MODEL
    upscale: int = 1  # class scores at K x --res (1, 2, 4): a learned up-sampler on stride-4/2 features
    refine: str = "none"  # none | guided: refine the scores to the native frame with a learned guided filter
    pretrained: str = "auto"  # auto | imagenet | none | PATH
    epochs: int | None = None
    iters: int | None = None
    batch: int = 8  # per process
    lr: float = 2e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"  # adamw | sgd
    schedule: str = "poly"  # poly | cosine
    warmup: int | None = None  # steps; default 5% of the run, at most 200
    clip_grad: float = 5.0  # max gradient norm; 0 turns clipping off
    workers: int | None = None  # default: 0 on CPU (the 2-core case), up to 8 on CUDA
    device: str = "auto"
    amp: str = "off"  # off | auto | bf16 | fp16 (CUDA only)
    seed: int = 0
    scale: tuple[float, float] = (0.75, 1.5)
    hflip: bool = True
    jitter: float = 0.2
    val_every: int = 1
    val_limit: int | None = None
    train_limit: int | None = None  # first N training samples
    train_fraction: float | None = None  # a random fraction of the training split (few-label experiments)
    subset_seed: int = 0  # fixes which samples --train-fraction keeps, whatever --seed
    skip_bad: bool = False
    resume: bool = False
    exist_ok: bool = False
    progress: bool = True
    model_options: tuple = ()  # (key, value) pairs passed to the model builder
    contrastive_epochs: int = 0  # label-based pixel contrastive pretraining before supervised training
    contrastive_pixels: int = 10000  # pixels per batch in the contrastive loss (bounds its memory)
    contrastive_threshold: float = 0.75  # soft labels: minimum share of the top class
    class_uniform: float = 0.0  # fraction of each epoch's samples centred on a uniformly chosen class
    extra_data: tuple = ()  # folder data sets (e.g. auto-labels) added to the training split

    def __post_init__(self):
        """Every option checked once, where the config is made: a one-line error naming it."""
        from edgeseg.data import KERNELS, LABEL_MODES
        from edgeseg.trainer.losses import CLASS_WEIGHTS

        choices = {"labels": LABEL_MODES, "kernel": KERNELS, "loss": ("ce", "kl"), "schedule": ("poly", "cosine"),
                   "optimizer": ("adamw", "sgd"), "amp": ("off", "auto", "bf16", "fp16"), "refine": ("none", "guided"),
                   "class_weights": CLASS_WEIGHTS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"--{name.replace('_', '-')}: expected one of {', '.join(allowed)}; got '{getattr(self, name)}'")
        if self.upscale not in (1, 2, 4):
            raise ConfigError(f"--upscale: expected one of 1, 2, 4; got {self.upscale}")
        for name in ("batch", "val_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')}: must be at least 1")
        if self.epochs is not None and self.iters is not None:
            raise ConfigError("--epochs and --iters: give one or the other")
        if (self.epochs is not None and self.epochs < 1) or (self.iters is not None and self.iters < 1):
            raise ConfigError("--epochs/--iters: must be at least 1")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr: must be a positive number, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"--weight-decay: must be a number >= 0, got {self.weight_decay}")
        if not (math.isfinite(self.clip_grad) and self.clip_grad >= 0):
            raise ConfigError(f"--clip-grad: must be a number >= 0 (0 turns clipping off), got {self.clip_grad}")
        for name in ("val_limit", "train_limit"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')}: must be at least 1 (leave it out for all images)")
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"--workers: must be 0 or more, got {self.workers}")
        if self.warmup is not None and self.warmup < 0:
            raise ConfigError(f"--warmup: must be 0 or more, got {self.warmup}")
        lo, hi = self.scale
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
            raise ConfigError(f"--scale {lo},{hi}: expected 0 < MIN <= MAX")
        if not (math.isfinite(self.jitter) and 0 <= self.jitter < 1):
            raise ConfigError(f"--jitter: expected a number in [0, 1), got {self.jitter}")
        if not 0 <= self.class_uniform <= 1:
            raise ConfigError(f"--class-uniform: expected a fraction in [0, 1], got {self.class_uniform}")
        if self.train_fraction is not None and not 0 < self.train_fraction <= 1:
            raise ConfigError(f"--train-fraction: expected a fraction in (0, 1], got {self.train_fraction}")
        from edgeseg.models import check_model_options

        check_model_options(self.model, dict(self.model_options))
        w, h = self.res
        if not (1 <= w <= MAX_RES and 1 <= h <= MAX_RES):
            raise ConfigError(f"--res {w}x{h}: width and height must be within 1..{MAX_RES}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["res"] = list(self.res)
        d["scale"] = list(self.scale)
        d["model_options"] = [list(kv) for kv in self.model_options]
        return d


def default_epochs(dataset: str) -> int:
    """The quick-start default on the synthetic set fits in minutes on a CPU; real data gets a real schedule."""
    return 4 if dataset == "synthetic" else 100
