"""One runner interface for every backend; ``load(path, spec)`` picks the runner by file type.

Importing this package imports no backend package and not PyTorch (the command's entry point
reads the file types from ``registry`` before PyTorch loads); the runners import theirs when
they are loaded.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from edgeseg.errors import model_file
from edgeseg.runtime.registry import BACKENDS, backend_for

if TYPE_CHECKING:
    from edgeseg.runtime.base import BaseRunner
    from edgeseg.runtime.spec import RunnerSpec


def load(path: str | Path, spec: "RunnerSpec | None" = None, **fields) -> "BaseRunner":
    """A runner for a model file (not yet activated): ``spec`` says how it runs (``fields``:
    the same given one by one), checked against what its backend honours."""
    from edgeseg.runtime.spec import RunnerSpec

    spec = (spec or RunnerSpec()).with_(**fields) if fields else (spec or RunnerSpec())
    path = model_file(path)
    backend = backend_for(path, spec.backend)
    spec.check_for(backend, path.name)
    module, cls = backend.runner.split(":")
    return getattr(importlib.import_module(module), cls).from_file(path, spec)


def __getattr__(name: str):
    if name == "RunnerSpec":  # without importing PyTorch for the entry point's sake
        from edgeseg.runtime.spec import RunnerSpec

        return RunnerSpec
    raise AttributeError(name)


__all__ = ["BACKENDS", "RunnerSpec", "backend_for", "load"]
