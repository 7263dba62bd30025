"""The runner interface shared by every backend.

A runner takes model inputs (already pre-processed) and returns named outputs as numpy arrays.
Subclasses override ``from_file``, ``activate_impl``, ``infer_impl`` and ``deactivate_impl``
(and ``describe_impl`` for what only they know); the public methods check state and inputs,
and ``named_outputs`` maps a backend's output tensors to edgeseg's names in one place.
"""

from __future__ import annotations

import numpy as np

from edgeseg.errors import ConfigError, EdgesegError
from edgeseg.models.meta import MODEL_OUTPUTS, ModelMeta


class BaseRunner:
    backend = "base"

    def __init__(self, meta: ModelMeta, name: str = ""):
        self.meta = meta
        self.name = name or self.backend
        self.is_active = False
        self.fixed_batch: int | None = None  # set on activation for models with a static batch size

    @classmethod
    def from_file(cls, path, spec) -> "BaseRunner":
        """A runner of model file ``path`` as ``spec`` (a checked RunnerSpec) says."""
        raise NotImplementedError

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

    def describe(self) -> dict:
        """What ran: backend, device, precision, execution providers, threads (None where the
        backend has no such setting), plus what only this backend reports."""
        return {"backend": self.backend, "model": self.name, "device": None, "precision": None, "providers": None, "threads": None,
                "fixed_batch": self.fixed_batch, **self.describe_impl()}

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

    @staticmethod
    def named_outputs(names, values) -> dict[str, np.ndarray]:
        """A model's outputs under edgeseg's names: ``logits`` (float32 class scores) and ``labels``.
        An output named otherwise (a model exported elsewhere) counts by its rank: the first 4-D
        one is the logits, else the first one is the labels."""
        result = {n: v for n, v in zip(names, values) if n in MODEL_OUTPUTS}
        if not result and len(values):
            first4d = next((v for v in values if np.ndim(v) == 4), None)
            result = {"logits": first4d} if first4d is not None else {"labels": values[0]}
        if "logits" in result:
            result["logits"] = np.asarray(result["logits"], dtype=np.float32)
        return result

    # -- to override
    def activate_impl(self) -> None:
        pass

    def infer_impl(self, x: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def deactivate_impl(self) -> None:
        pass

    def describe_impl(self) -> dict:
        return {}
