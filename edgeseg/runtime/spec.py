"""How a model file is run: one frozen record, checked once when it is made, then handed whole
to ``runtime.load`` and to every task (eval, bench, predict, autolabel, the export checks)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace

from edgeseg.errors import ConfigError
from edgeseg.models.msa import parse_scales
from edgeseg.models.tta import TTA_MODES
from edgeseg.records import check_fields, opt
from edgeseg.runtime.ov_runner import PRECISIONS as OV_PRECISIONS
from edgeseg.runtime.registry import Backend, choosable
MAX_THREADS_PER_CPU = 4  # more threads than this per logical CPU only costs (thread creation, contention)


def max_threads() -> int:
    return MAX_THREADS_PER_CPU * (os.cpu_count() or 1)


@dataclass(frozen=True)
class RunnerSpec:
    backend: str | None = opt(None, help="Backend for ONNX models: onnxruntime (default) or openvino (needs: pip install "
                              '"edgeseg[openvino]"); .xml files run on openvino.')
    device: str = opt("auto", help="auto, cpu or cuda[:N].")
    providers: tuple[str, ...] | None = opt(None, help="ONNX Runtime execution providers, comma-separated "
                                            "(e.g. CUDAExecutionProvider,CPUExecutionProvider).")
    threads: int | None = opt(None, low=1, help="CPU threads for PyTorch, ONNX Runtime and OpenVINO [default: the engine's own].")
    precision: str | None = opt(None, choices=OV_PRECISIONS, flag="--ov-precision",
                                help="OpenVINO inference precision [default: auto, which may run FP32 models in bf16 on CPUs "
                                     "with native bf16]; the precision that ran is reported.")
    strict: bool = opt(False, help="Refuse models whose input size differs from their metadata, and images whose aspect "
                                   "ratio differs from the model input.")
    scales: tuple[float, ...] | None = opt(None, help="Inference scales of a multi-scale attention model, e.g. 0.5,1.0,2.0.")
    tta: str = opt("none", choices=TTA_MODES, help="Test-time augmentation: flip averages the scores of the image and its "
                                                   "mirror image (about 2x the time).")

    def __post_init__(self):
        if isinstance(self.providers, (list, str)):
            object.__setattr__(self, "providers", tuple(p.strip() for p in (self.providers.split(",") if isinstance(self.providers, str)
                                                                             else self.providers) if p.strip()) or None)
        if self.scales is not None:
            object.__setattr__(self, "scales", parse_scales(self.scales, "--scales"))
        if self.backend == "auto":
            object.__setattr__(self, "backend", None)
        if self.precision == "auto":
            object.__setattr__(self, "precision", None)
        check_fields(self)
        if self.backend is not None and self.backend not in choosable():
            raise ConfigError(f"--backend: expected one of {', '.join(choosable())} (or auto: by file type); got '{self.backend}'")
        if not re.fullmatch(r"auto|cpu|cuda(:\d{1,3})?", str(self.device)):
            raise ConfigError(f"--device: expected auto, cpu or cuda[:N]; got '{self.device}'")
        if self.threads is not None and self.threads > max_threads():
            raise ConfigError(f"--threads {self.threads}: at most {max_threads()} ({MAX_THREADS_PER_CPU} per CPU of this machine)")

    def with_(self, **changes) -> "RunnerSpec":
        return replace(self, **changes)

    def check_for(self, backend: Backend, name: str) -> None:
        """Refuse the options that ``backend`` (running file ``name``) would not honour."""
        for field_name, flag, why in (
            ("precision", "--ov-precision", "the precision hint is OpenVINO's (give auto for models on other backends)"),
            ("scales", "--scales", "its scales are fixed in the graph; re-export the checkpoint with --scales"),
            ("tta", "--tta", "its test-time augmentation is fixed in the graph; re-export the checkpoint with --tta"),
            ("providers", "--providers", "execution providers are ONNX Runtime's"),
            ("threads", "--threads", "it runs on the GPU; CPU threads are for PyTorch, ONNX Runtime and OpenVINO"),
        ):
            value = getattr(self, field_name)
            if value not in (None, "none", False) and field_name not in backend.options:
                raise ConfigError(f"{flag} {_text(value)}: {name} runs on {backend.name}; {why}")
        device = "cuda" if self.device.startswith("cuda") else self.device
        if device != "auto" and device not in backend.devices:
            where = " or ".join({"cpu": "the CPU", "cuda": "a CUDA GPU"}[d] for d in backend.devices)
            raise ConfigError(f"--device {self.device}: {name} runs on {backend.name}, which edgeseg runs on {where} only; "
                              f"use --device {backend.devices[0]} or auto")


def _text(value) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) if isinstance(value, tuple) else str(value)


