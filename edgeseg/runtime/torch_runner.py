"""PyTorch eager runner for checkpoints (and for models in memory during training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgeseg.errors import ConfigError
from edgeseg.models.meta import ModelMeta
from edgeseg.runtime.base import BaseRunner


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA device is available to PyTorch on this machine (use --device cpu or auto)")
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"--device: expected auto, cpu or cuda[:N]; got '{device}'")
    index = device.partition(":")[2]
    if index.isdigit() and int(index) >= torch.cuda.device_count():
        raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0")
    return torch.device(device)


class TorchRunner(BaseRunner):
    backend = "torch"

    def __init__(self, model: torch.nn.Module, meta: ModelMeta, device: str = "cpu", name: str = "", threads: int | None = None):
        super().__init__(meta, name or "torch")
        self.model = model
        self.device = resolve_device(device)
        self.threads = threads
        self._threads_before: int | None = None

    @classmethod
    def from_file(cls, path: str | Path, spec) -> "TorchRunner":
        from edgeseg.fileio import sha256_file
        from edgeseg.models import load_checkpoint, model_from_checkpoint

        ckpt = load_checkpoint(path).check_weights(str(path))
        model = model_from_checkpoint(ckpt, str(path), scales=spec.scales, tta=spec.tta)
        return cls(model, ckpt.meta.with_(source_sha256=sha256_file(path)), spec.device, name=f"torch:{Path(path).name}", threads=spec.threads)

    def activate_impl(self) -> None:
        if self.threads:
            # PyTorch has one intra-op pool per process: set for this runner, given back on deactivation
            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(int(self.threads))
        self.model.to(self.device).eval()

    def deactivate_impl(self) -> None:
        if self._threads_before is not None:
            torch.set_num_threads(self._threads_before)
            self._threads_before = None

    def describe_impl(self) -> dict:
        return {"device": str(self.device), "threads": self.threads or torch.get_num_threads()}

    @torch.inference_mode()
    def infer_impl(self, x: np.ndarray) -> dict[str, np.ndarray]:
        t = torch.from_numpy(x).to(self.device)
        logits = self.model(t).float()
        return {"logits": logits.cpu().numpy()}
