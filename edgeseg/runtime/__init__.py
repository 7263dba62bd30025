"""One runner interface for every backend; ``load(path)`` picks the runner by file type.

Backends import their heavy packages lazily: importing this package needs
neither onnxruntime nor tensorrt.
"""

from __future__ import annotations

from pathlib import Path

from edgeseg.errors import ModelFileError
from edgeseg.runtime.base import BaseRunner
from edgeseg.runtime.meta import ModelMeta

CHECKPOINT_SUFFIXES = (".pt", ".pth")
ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def backend_for(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in CHECKPOINT_SUFFIXES:
        return "torch"
    if suffix in ONNX_SUFFIXES:
        return "onnxruntime"
    if suffix in ENGINE_SUFFIXES:
        return "tensorrt"
    raise ModelFileError(
        f"{path}: unknown model file type '{suffix}'; expected a checkpoint (.pt), an ONNX model (.onnx) or a TensorRT engine (.engine)"
    )


def load(path: str | Path, device: str = "auto", providers: list[str] | None = None, strict: bool = False, scales=None) -> BaseRunner:
    """A runner for a checkpoint, ONNX model or TensorRT engine (not yet activated).

    ``scales`` sets the inference scales of a multi-scale attention checkpoint; exported
    models have theirs fixed in the graph.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: file not found")
    backend = backend_for(path)
    if scales is not None and backend != "torch":
        from edgeseg.errors import ConfigError

        raise ConfigError(f"--scales: {path.name} has its scales fixed in the graph; re-export the checkpoint with --scales")
    if backend == "torch":
        from edgeseg.runtime.torch_runner import TorchRunner

        return TorchRunner.from_checkpoint(path, device="cuda" if device == "auto" and _cuda() else ("cpu" if device == "auto" else device),
                                           scales=scales)
    if backend == "onnxruntime":
        from edgeseg.runtime.ort_runner import OrtRunner

        return OrtRunner.from_file(path, device=device, providers=providers, strict=strict)
    from edgeseg.errors import ConfigError
    from edgeseg.runtime.trt_runner import TrtRunner

    if device == "cpu":
        raise ConfigError(f"{path}: TensorRT engines run on a CUDA GPU; --device cpu cannot run them")
    return TrtRunner.from_file(path, device=TrtRunner.default_device if device == "auto" else device)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


__all__ = ["BaseRunner", "ModelMeta", "backend_for", "load"]
