"""The runner interface shared by every backend.

A runner takes model inputs (already pre-processed) and returns named outputs
as numpy arrays. Subclasses override only ``activate_impl``, ``infer_impl`` and
``deactivate_impl``; the public methods check state and inputs.
"""

from __future__ import annotations

import numpy as np

from edgeseg.errors import ConfigError, EdgesegError
from edgeseg.runtime.meta import ModelMeta


class BaseRunner:
    backend = "base"

    def __init__(self, meta: ModelMeta, name: str = ""):
        self.meta = meta
        self.name = name or self.backend
        self.is_active = False
        self.fixed_batch: int | None = None  # set on activation for models with a static batch size

    # -- lifecycle
    def activate(self) -> "BaseRunner":
        if not self.is_active:
            self.activate_impl()
            self.is_active = True
        return self

    def deactivate(self) -> None:
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    def __enter__(self) -> "BaseRunner":
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()

    # -- inference
    def input_shape(self, batch: int) -> tuple[int, ...]:
        return self.meta.input_shape(batch)

    def input_dtype(self):
        return self.meta.input_dtype

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """``x``: a batch in the model's input layout; returns {"logits": ..., "labels": ...}."""
        if not self.is_active:
            raise EdgesegError(f"runner '{self.name}' is not active; use it as a context manager or call activate()")
        x = np.asarray(x)
        expected = self.input_shape(x.shape[0] if x.ndim else 0)
        if x.shape != expected:
            raise ConfigError(f"{self.name}: input shape {tuple(x.shape)} does not match the model's {expected}")
        if x.dtype != self.input_dtype():
            raise ConfigError(f"{self.name}: input dtype {x.dtype} does not match the model's {np.dtype(self.input_dtype())}")
        x = np.ascontiguousarray(x)
        fixed = self.fixed_batch
        if fixed and x.shape[0] != fixed:
            # A static-batch model runs a larger batch in chunks of its own size.
            if x.shape[0] % fixed:
                raise ConfigError(f"{self.name}: the model takes batches of {fixed}; got {x.shape[0]} (export with --dynamic-batch)")
            parts = [self.infer_impl(x[i : i + fixed]) for i in range(0, x.shape[0], fixed)]
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return self.infer_impl(x)

    # -- to override
    def activate_impl(self) -> None:
        pass

    def infer_impl(self, x: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def deactivate_impl(self) -> None:
        pass
