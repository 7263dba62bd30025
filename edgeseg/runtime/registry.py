"""The backends: one row each, the file types it runs, its runner class and the options of a
:class:`~edgeseg.runtime.spec.RunnerSpec` it honours. Nothing here imports a backend's
package (or PyTorch): the command's entry point reads the file types before PyTorch loads.

A new backend is its runner module, one row here, and its entry in the backend contract test
(tests/test_runtime.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeseg.errors import ConfigError, ModelFileError


@dataclass(frozen=True)
class Backend:
    name: str
    suffixes: tuple[str, ...]  # the file types it runs by default
    runner: str  # "module:Class"
    kind: str  # what such a file is, for messages
    devices: tuple[str, ...] = ("cpu", "cuda")
    options: frozenset = frozenset()  # RunnerSpec fields it honours beyond the device
    also_runs: tuple[str, ...] = ()  # file types it runs when chosen with --backend
    exported: bool = True  # its files are exported models (not training checkpoints)


BACKENDS = {b.name: b for b in (
    Backend("torch", (".pt", ".pth"), "edgeseg.runtime.torch_runner:TorchRunner", "a checkpoint",
            options=frozenset({"threads", "scales", "tta", "strict"}), exported=False),
    Backend("onnxruntime", (".onnx",), "edgeseg.runtime.ort_runner:OrtRunner", "an ONNX model",
            options=frozenset({"threads", "providers", "strict"})),
    Backend("openvino", (".xml",), "edgeseg.runtime.ov_runner:OvRunner", "an OpenVINO IR", devices=("cpu",),
            options=frozenset({"threads", "precision", "strict"}), also_runs=(".onnx",)),
    Backend("tensorrt", (".engine", ".plan", ".trt"), "edgeseg.runtime.trt_runner:TrtRunner", "a TensorRT engine", devices=("cuda",),
            options=frozenset({"strict"})),
)}
MODEL_SUFFIXES = tuple(s for b in BACKENDS.values() for s in b.suffixes)
EXPORTED_SUFFIXES = tuple(s for b in BACKENDS.values() if b.exported for s in b.suffixes)
CHECKPOINT_SUFFIXES = BACKENDS["torch"].suffixes


def _by_suffix(suffix: str) -> Backend | None:
    return next((b for b in BACKENDS.values() if suffix in b.suffixes), None)


def backend_for(path: str | Path, backend: str | None = None) -> Backend:
    """The backend that runs ``path``: fixed by the file type, or ``backend`` where it runs that type too."""
    suffix = Path(path).suffix.lower()
    found = _by_suffix(suffix)
    if found is None:
        kinds = ", ".join(f"{b.kind} ({b.suffixes[0]})" for b in BACKENDS.values())
        raise ModelFileError(f"{path}: unknown model file type '{suffix}'; expected {kinds}")
    if backend in (None, "auto") or backend == found.name:
        return found
    chosen = BACKENDS.get(backend)
    if chosen is None:
        raise ConfigError(f"--backend: expected one of {', '.join(choosable())} (or auto); got '{backend}'")
    if suffix not in chosen.also_runs:
        raise ConfigError(f"--backend {backend}: {Path(path).name} is {found.kind}, which only {found.name} runs; "
                          f"--backend chooses between {' and '.join(choosable())} for ONNX models (.onnx)")
    return chosen


def choosable() -> tuple[str, ...]:
    """The backends --backend may name: those that run another backend's file type, and that backend."""
    names = [b.name for b in BACKENDS.values() if b.also_runs]
    owners = [_by_suffix(s).name for b in BACKENDS.values() for s in b.also_runs]
    return tuple(dict.fromkeys(owners + names))


def omp_wait_policy(backend: Backend) -> str | None:
    """The OpenMP wait policy for a process that runs ``backend``: ``PASSIVE`` beside an exported
    model's engine, None (PyTorch's default) for checkpoints.

    edgeseg's pre- and post-processing run on PyTorch, whose OpenMP threads spin after each
    parallel region and take the cores from another engine's threads: with them waiting
    passively, ONNX Runtime FP32 ran 27% faster on the 2-core reference machine and PyTorch
    itself 55% slower (benchmarks/RESULTS.md section 19). The variable is read once, when
    PyTorch loads, so it is set for the whole process (launch.py, bench's workers).
    """
    return "PASSIVE" if backend.exported else None
