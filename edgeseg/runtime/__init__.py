"""One runner interface for every backend; ``load(path)`` picks the runner by file type.

Backends import their heavy packages lazily: importing this package needs
neither onnxruntime nor tensorrt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeseg.errors import ModelFileError
from edgeseg.runtime.base import BaseRunner
from edgeseg.runtime.meta import ModelMeta

CHECKPOINT_SUFFIXES = (".pt", ".pth")
ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
IR_SUFFIXES = (".xml",)
# Backends a user may choose for an ONNX model; the other file types have exactly one.
ONNX_BACKENDS = ("onnxruntime", "openvino")


def backend_for(path: str | Path, backend: str | None = None) -> str:
    """The backend that runs ``path``: fixed by the file type, or ``backend`` for ONNX models."""
    suffix = Path(path).suffix.lower()
    if suffix in CHECKPOINT_SUFFIXES:
        found = "torch"
    elif suffix in ONNX_SUFFIXES:
        found = "onnxruntime"
    elif suffix in ENGINE_SUFFIXES:
        found = "tensorrt"
    elif suffix in IR_SUFFIXES:
        found = "openvino"
    else:
        raise ModelFileError(
            f"{path}: unknown model file type '{suffix}'; expected a checkpoint (.pt), an ONNX model (.onnx), "
            "a TensorRT engine (.engine) or an OpenVINO IR (.xml)"
        )
    if backend in (None, "auto") or backend == found:
        return found
    from edgeseg.errors import ConfigError

    if backend not in ONNX_BACKENDS:
        raise ConfigError(f"--backend: expected one of {', '.join(ONNX_BACKENDS)}; got '{backend}'")
    if found != "onnxruntime":
        raise ConfigError(f"--backend {backend}: {Path(path).name} is {_KIND[found]}, which only {found} runs; "
                          "--backend chooses between onnxruntime and openvino for ONNX models (.onnx)")
    return backend


@dataclass(frozen=True)
class EngineOptions:
    """How a model file is run, beyond its device: the backend for ONNX models (onnxruntime or
    openvino; None picks by file type), CPU threads, and OpenVINO's inference precision."""

    backend: str | None = None
    threads: int | None = None
    precision: str | None = None

    def kwargs(self) -> dict:
        return {"backend": self.backend, "threads": self.threads, "precision": self.precision}


_KIND = {"torch": "a checkpoint", "tensorrt": "a TensorRT engine", "openvino": "an OpenVINO IR"}


def load(path: str | Path, device: str = "auto", providers: list[str] | None = None, strict: bool = False, scales=None,
         backend: str | None = None, threads: int | None = None, precision: str | None = None, tta: str | None = None) -> BaseRunner:
    """A runner for a checkpoint, ONNX model, TensorRT engine or OpenVINO IR (not yet activated).

    ``scales`` sets the inference scales of a multi-scale attention checkpoint; exported
    models have theirs fixed in the graph. ``backend`` picks onnxruntime or openvino for an
    ONNX model; ``threads`` caps the CPU threads of the torch, onnxruntime and openvino
    runners; ``precision`` is OpenVINO's inference precision (auto, f32, bf16, f16).
    """
    from edgeseg.errors import ConfigError

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: file not found")
    backend = backend_for(path, backend)
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads: expected a positive number of threads; got {threads}")
    if precision not in (None, "auto") and backend != "openvino":
        raise ConfigError(f"--ov-precision {precision}: {path.name} runs on {backend}; the precision hint is OpenVINO's "
                          "(give auto for models on other backends)")
    if scales is not None and backend != "torch":
        raise ConfigError(f"--scales: {path.name} has its scales fixed in the graph; re-export the checkpoint with --scales")
    if tta not in (None, "none") and backend != "torch":
        raise ConfigError(f"--tta: {path.name} has its test-time augmentation fixed in the graph; re-export the checkpoint with --tta")
    if backend == "torch":
        from edgeseg.runtime.torch_runner import TorchRunner

        return TorchRunner.from_checkpoint(path, device="cuda" if device == "auto" and _cuda() else ("cpu" if device == "auto" else device),
                                           scales=scales, threads=threads, tta=tta)
    if backend == "onnxruntime":
        from edgeseg.runtime.ort_runner import OrtRunner

        return OrtRunner.from_file(path, device=device, providers=providers, strict=strict, threads=threads)
    if backend == "openvino":
        from edgeseg.runtime.ov_runner import OvRunner

        if device not in ("auto", "cpu"):
            raise ConfigError(f"--device {device}: edgeseg runs OpenVINO on the CPU; use --device cpu or auto")
        if providers:
            raise ConfigError("--providers: execution providers are ONNX Runtime's; drop them for --backend openvino")
        return OvRunner.from_file(path, precision=precision, threads=threads, strict=strict)
    from edgeseg.runtime.trt_runner import TrtRunner

    if device == "cpu":
        raise ConfigError(f"{path}: TensorRT engines run on a CUDA GPU; --device cpu cannot run them")
    return TrtRunner.from_file(path, device=TrtRunner.default_device if device == "auto" else device)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


__all__ = ["BaseRunner", "EngineOptions", "ModelMeta", "ONNX_BACKENDS", "backend_for", "load"]
