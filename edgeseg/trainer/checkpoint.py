"""Training checkpoints: atomic writes of plain tensors and primitives only."""

from __future__ import annotations

import io

from pathlib import Path

import torch

from edgeseg import __version__
from edgeseg.errors import ConfigError
from edgeseg.fileio import atomic_path
from edgeseg.models.checkpoint import Checkpoint


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_torch(path: Path, obj) -> None:
    """``torch.save`` of ``obj`` to ``path``, atomically. Serialised in memory first, then written
    as bytes: torch.save writing to a file that cannot grow (a full disk) fails with a RuntimeError
    about stream positions, a plain write with the OSError that says why and where."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def save_checkpoint(path: Path, ckpt: Checkpoint) -> None:
    save_torch(path, ckpt.to_dict(__version__))


def _same(value):
    """Lists and tuples compare alike (a checkpoint may hold either)."""
    return [_same(v) for v in value] if isinstance(value, (list, tuple)) else value


def _same_input(a, b) -> bool:
    """Options naming files or folders (--data, --teacher, --extra-data ...) are the same when they
    name the same thing, however spelt (``./camvid`` and ``camvid``)."""
    from edgeseg.fileio import same_path

    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        a, b = list(a or ()), list(b or ())
        return len(a) == len(b) and all(_same_input(x, y) for x, y in zip(a, b))
    if a is None or b is None:
        return a is b
    return str(a) == str(b) or same_path(str(a), str(b))


def check_resume_compatible(ckpt: Checkpoint, cfg_dict: dict, where: str, world_size: int = 1) -> None:
    """Refuse, by name, every option that differs from the run being resumed. An option absent from
    an older checkpoint is compared with its default (an option, when added, defaults to the
    behaviour before it) unless the older checkpoint holds no options at all."""
    from dataclasses import MISSING, fields

    from edgeseg.records import flag_of
    from edgeseg.trainer.config import TrainConfig, compared_fields, saved_options

    compared = compared_fields()
    saved = saved_options(dict((ckpt.training.train_config if ckpt.training else None) or {}))
    if saved:
        for f in fields(TrainConfig):
            if f.name not in saved and f.name in compared:
                saved[f.name] = None if f.default is MISSING else _same(f.default)
    flags = {f.name: flag_of(f) for f in fields(TrainConfig)}
    inputs = {f.name for f in fields(TrainConfig) if f.metadata.get("input")}
    diffs = [f"{flags.get(k, k)} {saved.get(k)!r} (now {cfg_dict.get(k)!r})"
             for k in cfg_dict if k in compared and k in saved
             and not (_same_input(saved.get(k), cfg_dict.get(k)) if k in inputs else _same(saved.get(k)) == _same(cfg_dict.get(k)))]
    saved_world = ckpt.training.world_size if ckpt.training else 1
    if saved_world != world_size:
        diffs.append(f"{saved_world} process(es) (now {world_size})")
    if diffs:
        raise ConfigError(
            f"{where} was trained with {', '.join(diffs)}; resume with the same options (or leave them out) or train into a new --out"
        )
