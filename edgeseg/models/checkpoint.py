"""Reading model files safely: ``torch.load(weights_only=True)`` only, clear errors."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from edgeseg.errors import ModelFileError

CHECKPOINT_FORMAT = "edgeseg-checkpoint-v1"


def load_file(path: str | Path) -> dict:
    """Load a ``.pt``/``.pth`` file without executing code; one-line error otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError, OSError) as exc:
        text = str(exc)
        if "Unsupported global" in text or "GLOBAL" in text:
            detail = next((line.strip() for line in text.splitlines() if "Unsupported global" in line), "")
            raise ModelFileError(
                f"{path}: refuses to load: the file holds Python objects beyond tensors ({detail[:120]}); edgeseg only loads weights"
            ) from None
        detail = next((line.strip() for line in text.splitlines()[1:] if line.strip() and "WeightsUnpickler" not in line), "")
        detail = detail or (text.strip().splitlines()[0] if text.strip() else type(exc).__name__)
        raise ModelFileError(f"{path}: truncated or corrupt model file ({detail[:120]})") from None
    if not isinstance(obj, dict):
        raise ModelFileError(f"{path}: expected a dict of tensors or an edgeseg checkpoint, got {type(obj).__name__}")
    return obj


def load_checkpoint(path: str | Path) -> dict:
    """An edgeseg training checkpoint (``last.pt``/``best.pt``)."""
    ckpt = load_file(path)
    if ckpt.get("format") != CHECKPOINT_FORMAT or "model" not in ckpt or "model_config" not in ckpt:
        raise ModelFileError(f"{path}: not an edgeseg checkpoint (expected best.pt or last.pt written by 'edgeseg train')")
    return ckpt


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
