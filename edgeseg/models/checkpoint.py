"""The checkpoint schema, and reading model files safely: ``torch.load(weights_only=True)``
only, clear errors.

One frozen :class:`Checkpoint` is what the trainer writes and what every reader (runtime
metadata, model rebuild, resume check, export) reads; its file layout is a flat dict of
tensors and primitives, unchanged since the first checkpoint format.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from edgeseg.errors import ModelFileError
from edgeseg.models.base import ModelConfig

CHECKPOINT_FORMAT = "edgeseg-checkpoint-v1"


@dataclass(frozen=True)
class ModelCard:
    """What a checkpoint says about its model besides weights: enough to rebuild and run it."""

    model_config: ModelConfig
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    res: tuple[int, int]  # network input (width, height)
    kernel: str = "area"
    ignore_index: int = 255
    label_mode: str = "soft"
    dataset: str = ""
    dataset_root: str | None = None
    version: str = ""


@dataclass(frozen=True)
class TrainingState:
    """What resuming needs besides the model: optimiser, schedule, RNG and where the run stood."""

    optimizer: dict
    scheduler: dict
    rng: dict
    epoch: int
    step_in_epoch: int
    step: int
    best_miou: float = -1.0
    scaler: dict | None = None
    train_config: dict | None = None
    world_size: int = 1
    epoch_loss_sum: float = 0.0  # summed loss of the steps already done in an interrupted epoch


@dataclass(frozen=True)
class Checkpoint:
    card: ModelCard
    weights: dict
    training: TrainingState | None = None

    def to_dict(self, version: str) -> dict:
        c, t = self.card, self.training
        d = {
            "format": CHECKPOINT_FORMAT, "version": version,
            "model_config": c.model_config.to_dict(), "model": self.weights,
            "class_names": list(c.class_names), "palette": [list(p) for p in c.palette], "ignore_index": c.ignore_index,
            "res": list(c.res), "kernel": c.kernel, "label_mode": c.label_mode,
            "normalisation": {"mean": list(c.model_config.mean), "std": list(c.model_config.std)},
            "dataset": {"name": c.dataset, "root": c.dataset_root},
        }
        if t is not None:
            d.update(optimizer=t.optimizer, scheduler=t.scheduler, scaler=t.scaler or {}, rng=t.rng, epoch=t.epoch,
                     step_in_epoch=t.step_in_epoch, step=t.step, best_miou=t.best_miou, train_config=t.train_config,
                     world_size=t.world_size, epoch_loss_sum=t.epoch_loss_sum)
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "Checkpoint":
        """Parse a loaded checkpoint dict; a missing or mistyped entry is a one-line error naming it."""
        key = "model_config"
        try:
            cfg = ModelConfig.from_dict(d["model_config"])
            n = cfg.num_classes
            key = "class_names"
            names = tuple(str(v) for v in (d.get("class_names") or [f"class{i}" for i in range(n)]))
            key = "palette"
            palette = tuple(tuple(int(x) for x in c) for c in (d.get("palette") or []))
            if len(palette) != n:
                from edgeseg.data.base import default_palette

                palette = default_palette(n)
            key = "res"
            res = tuple(int(v) for v in d["res"])
            if len(res) != 2 or min(res) < 1:
                raise ValueError(f"expected [width, height], got {d['res']}")
            key = "dataset"
            ds = d.get("dataset") or {}
            card = ModelCard(cfg, names, palette, res, str(d.get("kernel", "area")), int(d.get("ignore_index", 255)),
                             str(d.get("label_mode", "soft")), str(ds.get("name", "")), ds.get("root"), str(d.get("version", "")))
            training = None
            if "optimizer" in d:
                key = "training state"
                training = TrainingState(d["optimizer"], d["scheduler"], d["rng"], int(d["epoch"]), int(d["step_in_epoch"]),
                                         int(d["step"]), float(d.get("best_miou", -1.0)), d.get("scaler") or None,
                                         d.get("train_config"), int(d.get("world_size", 1)), float(d.get("epoch_loss_sum", 0.0)))
            key = "model"
            if not isinstance(d["model"], dict):
                raise TypeError("expected a dict of tensors")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelFileError(f"{where}: checkpoint entry '{key}' is missing or damaged ({exc})") from None
        return cls(card, d["model"], training)


def load_file(path: str | Path) -> dict:
    """Load a ``.pt``/``.pth`` file without executing code; one-line error otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: file not found")
    try:
        with warnings.catch_warnings():  # torch warns at length before refusing; the one line below says it
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever the unpickler trips on, the file is not a checkpoint we can read
        text = str(exc)
        with open(path, "rb") as fh:
            head = fh.read(2)
        # PROTO 4/5: written by plain pickle.dump (torch's own legacy format is protocol 2, its zip format starts "PK")
        plain_pickle = len(head) == 2 and head[0] == 0x80 and 4 <= head[1] <= 5
        if "Unsupported global" in text or "GLOBAL" in text or (plain_pickle and "Unsupported operand" in text):
            detail = next((line.strip() for line in text.splitlines() if "Unsupported global" in line), "")
            raise ModelFileError(
                f"{path}: not a weights-only checkpoint: it holds Python objects or code beyond tensors"
                + (f" ({detail[:120]})" if detail else "") + "; edgeseg will not load it"
            ) from None
        detail = next((line.strip() for line in text.splitlines()[1:] if line.strip() and "WeightsUnpickler" not in line), "")
        detail = detail or (text.strip().splitlines()[0] if text.strip() else type(exc).__name__)
        raise ModelFileError(f"{path}: truncated or corrupt model file ({detail[:120]})") from None
    if not isinstance(obj, dict):
        raise ModelFileError(f"{path}: expected a dict of tensors or an edgeseg checkpoint, got {type(obj).__name__}")
    return obj


def load_checkpoint(path: str | Path) -> Checkpoint:
    """An edgeseg training checkpoint (``last.pt``/``best.pt``)."""
    ckpt = load_file(path)
    if ckpt.get("format") != CHECKPOINT_FORMAT or "model" not in ckpt or "model_config" not in ckpt:
        raise ModelFileError(f"{path}: not an edgeseg checkpoint (expected best.pt or last.pt written by 'edgeseg train')")
    return Checkpoint.from_dict(ckpt, str(path))


def describe_key_mismatch(missing, unexpected, shape_errors=()) -> str:
    def fmt(keys):
        keys = sorted(keys)
        return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {fmt(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {fmt(unexpected)}")
    if shape_errors:
        parts.append(f"{len(shape_errors)} shape mismatch(es): {fmt(shape_errors)}")
    return "; ".join(parts)


def strict_load(module: torch.nn.Module, state: dict, where: str, ignore_prefixes=()) -> None:
    """Load ``state`` into ``module`` requiring the same keys and shapes; lists what differs."""
    own = module.state_dict()
    given = {k: v for k, v in state.items() if not k.startswith(tuple(ignore_prefixes))}
    missing = set(own) - set(given)
    unexpected = set(given) - set(own)
    shapes = [f"{k} {tuple(given[k].shape)} vs {tuple(own[k].shape)}" for k in set(own) & set(given)
              if hasattr(given[k], "shape") and tuple(given[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        raise ModelFileError(f"{where}: weights do not fit the model: {describe_key_mismatch(missing, unexpected, shapes)}")
    module.load_state_dict(given, strict=True)
