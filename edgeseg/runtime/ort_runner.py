"""ONNX Runtime runner: CPU, CUDA and TensorRT execution providers, whichever are available."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edgeseg.errors import ConfigError, ModelFileError
from edgeseg.data.base import MAX_CLASSES
from edgeseg.models.meta import ModelMeta
from edgeseg.runtime.base import BaseRunner

logger = logging.getLogger(__name__)

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}


def _ort():
    import onnxruntime

    return onnxruntime


GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def resolve_providers(device: str = "auto", providers: list[str] | None = None) -> list[str]:
    """Execution providers to ask for, checked against the installed onnxruntime."""
    available = _ort().get_available_providers()
    if providers:
        chosen = [PROVIDER_ALIASES.get(p.lower(), p) for p in providers]
        missing = [p for p in chosen if p not in available]
        if missing:
            hint = ' (install "edgeseg[gpu]" for CUDA and TensorRT providers)' if any(p != "CPUExecutionProvider" for p in missing) else ""
            raise ConfigError(f"--providers: {', '.join(missing)} not available in this onnxruntime; available: {', '.join(available)}{hint}")
        on_gpu = any(p in GPU_PROVIDERS for p in chosen)
        if device == "cpu" and on_gpu or device.startswith("cuda") and not on_gpu:
            raise ConfigError(f"--providers {','.join(chosen)}: run on {'a GPU' if on_gpu else 'the CPU'}, not --device {device}; "
                              "give one of the two, or both agreeing")
        if "CPUExecutionProvider" not in chosen:
            chosen.append("CPUExecutionProvider")
        return chosen
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise ConfigError('--device cuda: onnxruntime has no CUDAExecutionProvider here; install "edgeseg[gpu]" (onnxruntime-gpu)')
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []) + ["CPUExecutionProvider"]


ONNX_FLOAT, ONNX_UINT8 = 1, 2  # onnx.TensorProto element types
ONNX_TYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16", 11: "float64", 16: "bfloat16"}


def read_onnx(path: Path):
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError) as exc:
        raise ModelFileError(f"{path}: not a readable ONNX model ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})") from None
    if not model.graph.node:  # an empty file, and other bytes that happen to decode, are an empty ModelProto
        raise ModelFileError(f"{path}: holds no ONNX graph ({'an empty file' if Path(path).stat().st_size == 0 else 'not an ONNX model'})")
    return model


def meta_from_graph(model, path: Path, strict: bool) -> ModelMeta:
    """Metadata of an ONNX model; for a foreign model, what can be read off its graph."""
    props = {p.key: p.value for p in model.metadata_props}
    meta = ModelMeta.from_props(props, str(path))
    inputs = [i for i in model.graph.input if i.name not in {init.name for init in model.graph.initializer}]
    if len(inputs) != 1:
        raise ModelFileError(f"{path}: expected one image input, found {len(inputs)}")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    elem = inputs[0].type.tensor_type.elem_type
    if len(dims) != 4:
        raise ModelFileError(f"{path}: expected a 4-D image input, found shape {dims}")
    nhwc = dims[3] == 3 and dims[1] != 3
    h, w = (dims[1], dims[2]) if nhwc else (dims[2], dims[3])
    if h is None or w is None:
        raise ModelFileError(f"{path}: the input's height and width are not fixed ({dims}); edgeseg needs a static input size")
    # What edgeseg feeds: 3-channel images, float32 N,C,H,W or uint8 N,H,W,C (normalised inside the graph).
    if (dims[3] if nhwc else dims[1]) not in (3, None) or elem not in (ONNX_FLOAT, ONNX_UINT8) or (elem == ONNX_UINT8) != nhwc:
        raise ModelFileError(f"{path}: its input takes {dims} {ONNX_TYPES.get(elem, f'type {elem}')}; edgeseg feeds 3-channel images "
                             "as float32 (N, 3, H, W) or uint8 (N, H, W, 3)")
    if meta is not None and (elem == ONNX_UINT8) != (meta.input_layout == "nhwc-uint8"):
        raise ModelFileError(f"{path}: its metadata says input layout {meta.input_layout} but the graph takes "
                             f"{ONNX_TYPES.get(elem)} {dims}; re-export the model")
    if meta is None:
        out_dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
        n = out_dims[1] if len(out_dims) == 4 and out_dims[1] else None
        if n is None:
            raise ModelFileError(f"{path}: no edgeseg metadata and the output is not (N, C, H, W) logits; cannot run it")
        if n > MAX_CLASSES:
            raise ModelFileError(f"{path}: no edgeseg metadata and its output has {n} channels; edgeseg writes 8-bit labels "
                                 f"of at most {MAX_CLASSES} classes")
        logger.warning(f"{path} has no edgeseg metadata; assuming {n} classes, input {w}x{h}, "
                       "normalisation (x - 127) / 128 and the area kernel")
        layout = "nhwc-uint8" if (nhwc and elem == ONNX_UINT8) else "nchw"
        return ModelMeta.foreign(n, (w, h), layout, (model.graph.output[0].name,) if model.graph.output[0].name in ("logits", "labels")
                                 else ("logits",))
    if tuple(meta.input_res) != (w, h):
        iw, ih = meta.input_res
        if strict or meta.native_res:
            raise ModelFileError(f"{path}: metadata says input {iw}x{ih} but the graph takes {w}x{h}"
                                 + (" (--strict)" if strict else "; re-export the model"))
        logger.warning(f"{path}: metadata says input {iw}x{ih} but the graph takes {w}x{h}; resizing images to {w}x{h}")
        meta = meta.with_res((w, h))
    for out in model.graph.output:
        out_dims = [d.dim_value if d.HasField("dim_value") else None for d in out.type.tensor_type.shape.dim]
        if out.name == "logits" and len(out_dims) == 4 and out_dims[1] is not None and out_dims[1] != meta.num_classes:
            raise ModelFileError(f"{path}: its logits have {out_dims[1]} channels but its metadata names {meta.num_classes} classes; "
                                 "re-export the model")
    return meta


def onnx_meta(path: Path, strict: bool = False) -> tuple[ModelMeta, list[str]]:
    """An ONNX model file's metadata (its outputs as the graph names them) and its output names."""
    model = read_onnx(path)
    meta = meta_from_graph(model, path, strict)
    output_names = [o.name for o in model.graph.output]
    if "logits" in output_names or "labels" in output_names:
        meta = meta.with_(outputs=tuple(n for n in output_names if n in ("logits", "labels")))
    return meta, output_names


class OrtRunner(BaseRunner):
    backend = "onnxruntime"

    def __init__(self, path: Path, meta: ModelMeta, providers: list[str], name: str = "", session_options=None,
                 threads: int | None = None, device_id: int = 0):
        super().__init__(meta, name or f"onnxruntime:{Path(path).name}")
        self.path = Path(path)
        self.device_id = device_id  # cuda:N: the GPU the CUDA and TensorRT providers use
        self.threads = threads
        self.providers = providers
        self.session_options = session_options
        self.session = None
        self.active_providers: list[str] | None = None

    @classmethod
    def from_file(cls, path: str | Path, spec) -> "OrtRunner":
        path = Path(path)
        meta, _ = onnx_meta(path, spec.strict)
        device_id = int(spec.device.split(":")[1]) if spec.device.startswith("cuda:") else 0
        return cls(path, meta, resolve_providers(spec.device, list(spec.providers) if spec.providers else None), threads=spec.threads,
                   device_id=device_id)

    def describe_impl(self) -> dict:
        threads = self.session.get_session_options().intra_op_num_threads if self.session is not None else self.threads
        return {"device": "cuda" if any(p in GPU_PROVIDERS for p in (self.active_providers or self.providers)) else "cpu",
                "providers": self.active_providers or list(self.providers), "threads": threads or None}

    def activate_impl(self) -> None:
        ort = _ort()
        opts = self.session_options or ort.SessionOptions()
        opts.log_severity_level = 3
        if self.threads:
            opts.intra_op_num_threads = int(self.threads)
        providers = [(p, {"device_id": self.device_id}) if p in GPU_PROVIDERS and self.device_id else p for p in self.providers]
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            text = str(exc)
            if "ValidateOpsetForDomain" in text or "opset" in text.lower():
                opset = next((o.version for o in read_onnx(self.path).opset_import if o.domain in ("", "ai.onnx")), "?")
                raise ModelFileError(
                    f"{self.path}: uses ONNX opset {opset}, which onnxruntime {ort.__version__} cannot run; re-export with --opset 17"
                ) from None
            raise ModelFileError(f"{self.path}: onnxruntime cannot load the model: {text.strip().splitlines()[0][:200]}") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.active_providers = self.session.get_providers()
        self.output_names = [o.name for o in self.session.get_outputs()]

    def infer_impl(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return self.named_outputs(self.output_names, self.session.run(None, {self.input_name: x}))

    def deactivate_impl(self) -> None:
        self.session = None
