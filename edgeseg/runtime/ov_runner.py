"""OpenVINO runner (CPU): ONNX models (FP32 and Q/DQ INT8) and OpenVINO IR (``.xml`` + ``.bin``).

OpenVINO picks the inference precision itself unless told: on CPUs with AMX or
AVX-512 BF16 its default runs FP32 models in bf16. ``precision`` makes the choice
explicit, and the runner reports what actually ran (``precision_report``): the
inference precision hint the compiled model settled on and the runtime precision
of its convolutions (``i8`` where a Q/DQ model was fused into integer kernels).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

import numpy as np

from edgeseg.errors import ModelFileError
from edgeseg.fileio import parse_json
from edgeseg.models.meta import ModelMeta
from edgeseg.optional import require
from edgeseg.progress import end_line
from edgeseg.runtime.base import BaseRunner
from edgeseg.runtime.registry import BACKENDS

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "f32", "bf16", "f16")  # OpenVINO's inference precision hints (--ov-precision)
# Where edgeseg keeps its metadata in an IR's rt_info: the ONNX metadata_props as one JSON object,
# and the SHA-256 of the weights file written with it.
RT_META = ["edgeseg", "meta"]
RT_BIN_SHA = ["edgeseg", "bin_sha256"]


def _ov():
    return require("openvino", "the OpenVINO backend")


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.startswith("Exception from")]
    return (lines[-1] if lines else type(exc).__name__)[:200]


def ir_meta(model, path: Path) -> ModelMeta:
    """edgeseg metadata of an IR, checked against the graph's input and the weights file."""
    if not model.has_rt_info(RT_META):
        raise ModelFileError(f"{path}: an OpenVINO IR without edgeseg metadata; write it with `edgeseg export --openvino` "
                             "(or run the ONNX model it came from)")
    try:
        props = parse_json(model.get_rt_info(RT_META).astype(str))
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{path}: edgeseg metadata is damaged ({exc}); re-export the model") from None
    meta = ModelMeta.from_props(props, str(path))
    if meta is None:
        raise ModelFileError(f"{path}: an OpenVINO IR without edgeseg metadata; write it with `edgeseg export --openvino`")
    shape = model.inputs[0].get_partial_shape()
    if shape.rank.get_length() != 4 or not all(d.is_static for d in list(shape)[1:]):
        raise ModelFileError(f"{path}: expected a 4-D image input with a fixed size, found {shape}")
    dims = [d.get_length() if d.is_static else None for d in shape]
    expected = meta.input_shape(1)[1:]
    if tuple(dims[1:]) != tuple(expected):
        raise ModelFileError(f"{path}: metadata says input {tuple(expected)} but the graph takes {tuple(dims[1:])}; re-export the model")
    return meta


def check_ir_files(xml: Path, model=None) -> None:
    """The IR's weights file exists and is the one written with this .xml (SHA-256 in its rt_info)."""
    from edgeseg.fileio import sha256_file

    bin_path = xml.with_suffix(".bin")
    if not bin_path.is_file():
        raise ModelFileError(f"{xml}: its weights file {bin_path.name} is missing; an OpenVINO IR is the .xml and the .bin together")
    if model is not None and model.has_rt_info(RT_META):
        if not model.has_rt_info(RT_BIN_SHA):
            raise ModelFileError(f"{xml}: its edgeseg metadata has no weights hash; re-export it with `edgeseg export --openvino`")
        if sha256_file(bin_path) != model.get_rt_info(RT_BIN_SHA).astype(str):
            raise ModelFileError(f"{xml}: {bin_path.name} is not the weights file written with this .xml (SHA-256 differs); "
                                 "copy both files of one export together, or re-export")


@contextlib.contextmanager
def native_stderr_held():
    """Hold what native code writes to file descriptor 2 during the block; pass it on only when the
    block succeeds (a failure is then said once, in edgeseg's own line)."""
    import tempfile

    try:
        if sys.stderr is not None:
            sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr (closed): nothing to hold back
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        ok = False
        try:
            yield
            ok = True
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if ok:
                held.seek(0)
                text = held.read()
                if text and sys.stderr is not None:
                    end_line()
                    sys.stderr.write(text.decode(errors="replace"))


class OvRunner(BaseRunner):
    backend = "openvino"

    def __init__(self, path: Path, meta: ModelMeta, precision: str | None = None, threads: int | None = None, name: str = "", model=None):
        super().__init__(meta, name or f"openvino:{Path(path).name}")
        self.path = Path(path)
        self.model = model  # the IR as read and checked in from_file; compiled as is
        self.precision = precision or "auto"  # checked by the RunnerSpec it came from
        self.threads = threads
        self.compiled = None
        self.precision_report: dict | None = None

    @classmethod
    def from_file(cls, path: str | Path, spec) -> "OvRunner":
        path = Path(path)
        ov = _ov()
        if path.suffix.lower() in BACKENDS["openvino"].suffixes:
            check_ir_files(path)
            try:
                with native_stderr_held():  # a damaged IR is tried by every frontend, whose parsers print to the process's stderr
                    model = ov.Core().read_model(str(path))
            except RuntimeError as exc:
                raise ModelFileError(f"{path}: OpenVINO cannot read the IR ({_first_line(exc)}); is {path.with_suffix('.bin').name} "
                                     "the weights file written with it?") from None
            meta = ir_meta(model, path)
            check_ir_files(path, model)
        else:
            model = None
            from edgeseg.runtime.ort_runner import onnx_meta

            meta, _ = onnx_meta(path, spec.strict)
        return cls(path, meta, precision=spec.precision, threads=spec.threads, model=model)

    def activate_impl(self) -> None:
        ov = _ov()
        core = ov.Core()
        config = {}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        if self.precision != "auto":
            config["INFERENCE_PRECISION_HINT"] = self.precision
        config["PERFORMANCE_HINT"] = "LATENCY"
        try:
            self.compiled = core.compile_model(self.model if self.model is not None else str(self.path), "CPU", config)
        except RuntimeError as exc:
            raise ModelFileError(f"{self.path}: OpenVINO cannot compile the model ({_first_line(exc)})") from None
        shape = self.compiled.inputs[0].get_partial_shape()
        self.fixed_batch = shape[0].get_length() if shape[0].is_static else None
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]
        self.request = self.compiled.create_infer_request()
        self.precision_report = precision_report(self.compiled)
        logger.debug(f"{self.name}: {self.precision_report}")

    def infer_impl(self, x: np.ndarray) -> dict[str, np.ndarray]:
        self.request.infer({0: x}, share_inputs=True)
        return self.named_outputs(self.output_names, [np.array(self.request.get_output_tensor(k).data) for k in range(len(self.output_names))])

    def describe_impl(self) -> dict:
        report = self.precision_report or {}
        return {"device": "cpu", "precision": report.get("inference_precision", self.precision), "threads": report.get("threads", self.threads),
                "precision_report": report or None}

    def deactivate_impl(self) -> None:
        self.request = None
        self.compiled = None


def _short(element_type) -> str:
    """OpenVINO's element type as the --ov-precision names it (f32, bf16, f16)."""
    name = str(element_type).replace("<Type: '", "").replace("'>", "")
    return {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(name, name)


def default_precision() -> str:
    """The precision OpenVINO's CPU plugin runs float models at here unless told (no model compiled)."""
    return _short(_ov().Core().get_property("CPU", "INFERENCE_PRECISION_HINT"))


def precision_report(compiled) -> dict:
    """What ran: the compiled model's inference precision and the runtime precision of its convolutions."""
    hint = _short(compiled.get_property("INFERENCE_PRECISION_HINT"))
    convs: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if "layerType" not in info or "Convolution" not in info["layerType"].astype(str):
            continue
        prec = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "?"
        convs[prec] = convs.get(prec, 0) + 1
    return {"inference_precision": hint, "convolutions": dict(sorted(convs.items())),
            "threads": int(compiled.get_property("INFERENCE_NUM_THREADS"))}
