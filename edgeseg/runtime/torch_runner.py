"""PyTorch eager runner for checkpoints (and for models in memory during training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgeseg.errors import ConfigError
from edgeseg.runtime.base import BaseRunner
from edgeseg.runtime.meta import ModelMeta, meta_from_checkpoint


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available to PyTorch on this machine (use --device cpu or auto)")
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"--device: expected auto, cpu or cuda[:N]; got '{device}'")
    return torch.device(device)


class TorchRunner(BaseRunner):
    backend = "torch"

    def __init__(self, model: torch.nn.Module, meta: ModelMeta, device: str = "cpu", name: str = "", threads: int | None = None):
        super().__init__(meta, name or "torch")
        self.model = model
        self.device = resolve_device(device)
        self.threads = threads

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", scales=None, threads: int | None = None,
                        tta: str | None = None) -> "TorchRunner":
        from edgeseg.fileio import sha256_file
        from edgeseg.models import load_checkpoint, model_from_checkpoint

        ckpt = load_checkpoint(path)
        model = model_from_checkpoint(ckpt, str(path), scales=scales, tta=tta)
        return cls(model, meta_from_checkpoint(ckpt, sha256_file(path)), device, name=f"torch:{Path(path).name}", threads=threads)

    def activate_impl(self) -> None:
        if self.threads:
            torch.set_num_threads(int(self.threads))  # process-wide: PyTorch has one intra-op pool
        self.model.to(self.device).eval()

    @torch.inference_mode()
    def infer_impl(self, x: np.ndarray) -> dict[str, np.ndarray]:
        t = torch.from_numpy(x).to(self.device)
        logits = self.model(t).float()
        return {"logits": logits.cpu().numpy()}
