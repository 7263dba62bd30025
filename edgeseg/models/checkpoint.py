"""The checkpoint schema, and reading model files safely: ``torch.load(weights_only=True)``
only, clear errors.

One frozen :class:`Checkpoint` is what the trainer writes and what every reader (runtime
metadata, model rebuild, resume check, export) reads: the model's description
(:class:`~edgeseg.models.meta.ModelMeta`, as plain data), its weights and, for ``last.pt``, the
training state; tensors and primitives only. edgeseg 0.1.0's flat layout still reads.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from edgeseg.data.base import DatasetInfo, default_palette
from edgeseg.errors import ModelFileError, model_file
from edgeseg.models.base import ModelConfig
from edgeseg.models.meta import ModelMeta, naming
from edgeseg.records import from_plain

CHECKPOINT_FORMAT = "edgeseg-checkpoint-v2"
LEGACY_FORMAT = "edgeseg-checkpoint-v1"  # edgeseg 0.1.0: a flat dict (read by _legacy_meta)


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
    aux: dict | None = None  # training-only modules' weights (the SR auxiliary), never part of the model


@dataclass(frozen=True)
class Checkpoint:
    meta: ModelMeta
    weights: dict
    training: TrainingState | None = None

    def to_dict(self, version: str) -> dict:
        d = {"format": CHECKPOINT_FORMAT, "version": version, "meta": self.meta.to_plain(), "model": self.weights}
        if self.training is not None:  # raw state (optimiser tensors), field by field
            d["training"] = {f.name: getattr(self.training, f.name) for f in fields(TrainingState)}
        return d

    def check_weights(self, where: str) -> "Checkpoint":
        """A model must be sane to be run, exported or taught from: finite weights (its class list and
        recorded sizes are checked when its description is read). Returns itself."""
        check_weight_values(self.weights, where)
        return self

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "Checkpoint":
        """Parse a loaded checkpoint dict (this format or edgeseg 0.1.0's); a missing or mistyped
        entry is a one-line error naming it."""
        legacy = d.get("format") == LEGACY_FORMAT
        with naming(where):
            meta = _legacy_meta(d, where) if legacy else ModelMeta.read(d.get("meta"), where) if isinstance(d.get("meta"), dict) \
                else _missing(where, "meta")
        if not isinstance(d.get("model"), dict):
            _missing(where, "model")
        state = {k: d[k] for k in _TRAINING_KEYS if k in d} if legacy else d.get("training")
        training = None
        if state and "optimizer" in state:
            try:
                training = TrainingState(**{f.name: state[f.name] for f in fields(TrainingState) if f.name in state})
                int(training.epoch), int(training.step), int(training.step_in_epoch)
            except (TypeError, ValueError) as exc:
                raise ModelFileError(f"{where}: checkpoint entry 'training state' is missing or damaged ({exc})") from None
        return cls(meta, d["model"], training)


_TRAINING_KEYS = ("optimizer", "scheduler", "rng", "epoch", "step_in_epoch", "step", "best_miou", "scaler", "train_config",
                  "world_size", "epoch_loss_sum", "aux")


def _missing(where: str, key: str):
    raise ModelFileError(f"{where}: checkpoint entry '{key}' is missing or damaged")


def _legacy_meta(d: dict, where: str) -> ModelMeta:
    """The model description of an edgeseg 0.1.0 checkpoint (flat keys beside ``model_config``)."""
    key = "model_config"
    try:
        plain = dict(d["model_config"])
        plain.setdefault("res", d["res"])  # configs before --upscale kept the resolution beside them
        plain.setdefault("kernel", d.get("kernel", "area"))
        cfg = from_plain(ModelConfig, plain, where)
        key = "class_names"
        names = tuple(str(v) for v in (d.get("class_names") or [f"class{i}" for i in range(cfg.num_classes)]))
        key = "palette"
        palette = tuple(tuple(int(x) for x in c) for c in (d.get("palette") or []))
        if len(palette) != len(names):
            palette = default_palette(len(names))
        key = "dataset"
        ds = d.get("dataset") or {}
        data = DatasetInfo(str(ds.get("name", "")), names, palette, int(d.get("ignore_index", 255)))
        kind = str((d.get("train_config") or {}).get("dataset", ""))  # the --dataset it was trained with, where recorded
        return ModelMeta(cfg, data, label_mode=str(d.get("label_mode", "soft")), dataset_kind=kind, dataset_root=ds.get("root"),
                         edgeseg_version=str(d.get("version", "")))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"{where}: checkpoint entry '{key}' is missing or damaged ({exc})") from None


def load_file(path: str | Path) -> dict:
    """Load a ``.pt``/``.pth`` file without executing code; one-line error otherwise."""
    path = model_file(path)
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
    if ckpt.get("format") not in (CHECKPOINT_FORMAT, LEGACY_FORMAT) or "model" not in ckpt:
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


def check_weight_values(weights: dict, where: str) -> None:
    """Every weight a tensor, every floating one finite; else a ModelFileError naming the first that is not
    (every weights reader: --model, --pretrained, --teacher, --resume)."""
    for name, tensor in weights.items():
        if not torch.is_tensor(tensor):
            raise ModelFileError(f"{where}: weight '{name}' is a {type(tensor).__name__}, not a tensor; the file is damaged "
                                 "or not a weights file")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(f"{where}: weight '{name}' holds NaN or infinite values; the model is broken (retrain, or use "
                                 "an earlier checkpoint)")


def strict_load(module: torch.nn.Module, state: dict, where: str, ignore_prefixes=()) -> None:
    """Load ``state`` into ``module`` requiring the same keys and shapes; lists what differs."""
    own = module.state_dict()
    given = {k: v for k, v in state.items() if not k.startswith(tuple(ignore_prefixes))}
    check_weight_values(given, where)
    missing = set(own) - set(given)
    unexpected = set(given) - set(own)
    shapes = [f"{k} {tuple(given[k].shape)} vs {tuple(own[k].shape)}" for k in set(own) & set(given)
              if hasattr(given[k], "shape") and tuple(given[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        raise ModelFileError(f"{where}: weights do not fit the model: {describe_key_mismatch(missing, unexpected, shapes)}")
    module.load_state_dict(given, strict=True)
