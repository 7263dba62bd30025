"""``edgeseg export --trt``: an ONNX model to a TensorRT engine plus its fingerprint.

Precision paths:
  fp32              the FP32 ONNX model;
  fp16              the FP16 builder flag (8.5-10.x), or an FP16 ONNX model (11.x, strongly typed);
  int8 explicit     the Q/DQ model (model.int8.onnx); TensorRT >= 10, and required on 11;
  int8 implicit     the FP32 model plus a calibration cache read by a calibrator (8.5-10.x).

``model.engine.json`` records what the engine is bound to (TensorRT version, GPU and
compute capability) so a runner refuses it elsewhere with a message to rebuild.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from edgeseg.errors import ConfigError, ModelFileError
from edgeseg.fileio import sha256_file, write_bytes_atomic, write_json_atomic
from edgeseg.runtime import fingerprint
from edgeseg.runtime.fingerprint import fingerprint_path
from edgeseg.records import check_fields, opt
from edgeseg.runtime.trt_api import TrtApi

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
INT8_MODES = ("auto", "explicit", "implicit")


@dataclass(frozen=True)
class TrtOptions:
    precision: str = opt("fp16", choices=PRECISIONS, cli=False)  # set by --fp16 / --int8
    int8_mode: str = opt("auto", choices=INT8_MODES, help="With --trt --int8: explicit Q/DQ (TensorRT >= 10) or the calibration "
                                                          "cache (8.5-10.x); auto picks by version.")
    workspace_gb: float = opt(2.0, low=0.0, high=1024.0, low_open=True, flag="--workspace", help="TensorRT workspace in GB.")
    timing_cache: str | None = opt(None, output="file", help="TensorRT timing cache file (read and updated).")
    dla_core: int | None = opt(None, low=0, high=15, flag="--dla", help="Build for DLA core N (Jetson), GPU fallback on; needs --fp16 or --int8.")
    fp16_fallback: bool = opt(False, cli=False)  # INT8 engines: let non-quantised layers run in FP16 (weakly typed only; --int8 --fp16)
    max_batch: int = opt(8, low=1, high=4096, help="With --dynamic-batch --trt: the largest batch the engine accepts.")

    def __post_init__(self):
        check_fields(self)
        if self.dla_core is not None and self.precision == "fp32":
            raise ConfigError("--dla runs FP16 or INT8 layers only; add --fp16 or --int8 (in FP32 every layer would fall back to the GPU)")


def _trtexec_command(onnx_path: Path, engine_path: Path, options: TrtOptions, api: TrtApi, calib_cache: Path | None) -> str:
    cmd = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}", f"--memPoolSize=workspace:{int(options.workspace_gb * 1024)}M"]
    if api.has_precision_flags:
        if options.precision == "fp16" or (options.precision == "int8" and options.fp16_fallback):
            cmd.append("--fp16")
        if options.precision == "int8":
            cmd.append("--int8")
    if options.precision == "int8" and options.int8_mode == "implicit" and calib_cache is not None:
        cmd.append(f"--calib={calib_cache}")
    if options.timing_cache:
        cmd.append(f"--timingCacheFile={options.timing_cache}")
    if options.dla_core is not None:
        cmd += [f"--useDLACore={options.dla_core}", "--allowGPUFallback"]
    return " ".join(shlex.quote(c) for c in cmd)


def _make_logger(trt):
    """A TensorRT logger that prints warnings and keeps errors for the one-line report."""

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(str(msg))
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                logger.warning(f"[TensorRT] {msg}")

    return Logger()


def resolve_int8_mode(mode: str, api: TrtApi) -> str:
    if mode == "auto":
        return "explicit" if api.major >= 10 else "implicit"
    if mode == "implicit" and not api.supports_implicit_int8:
        raise ConfigError(f"TensorRT {api.trt.__version__} removed implicit INT8 calibration; use --int8-mode explicit")
    return mode


def build_engine(onnx_path: str | Path, engine_path: str | Path, options: TrtOptions = TrtOptions(), qdq_path: str | Path | None = None,
                 calib_cache: str | Path | None = None, calib_inputs=None, meta=None, calibration_sha256: str | None = None,
) -> dict:
    """Build ``engine_path`` from the FP32 model ``onnx_path`` (or, for explicit INT8, from
    ``qdq_path``); returns the fingerprint written beside the engine."""
    from dataclasses import replace

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    api = TrtApi.load()
    trt = api.trt
    if options.precision == "int8":
        options = replace(options, int8_mode=resolve_int8_mode(options.int8_mode, api))
    parse_path, strongly_typed = _model_to_parse(onnx_path, engine_path, options, api, qdq_path)
    trt_logger = _make_logger(trt)
    builder = trt.Builder(trt_logger)
    network = api.create_network(builder, strongly_typed or api.always_strongly_typed)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse(parse_path.read_bytes(), str(parse_path)):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors)) or "; ".join(trt_logger.errors)
        raise ModelFileError(f"{parse_path}: TensorRT {trt.__version__} cannot parse the model: {errors[:300]}")
    config = builder.create_builder_config()
    api.set_workspace(config, int(options.workspace_gb * (1 << 30)))
    profile = _batch_profile(builder, network, config, options.max_batch)
    calibrator = _set_precision(api, config, options, strongly_typed, calib_cache, calib_inputs, profile)
    if options.dla_core is not None:
        api.set_dla(builder, config, options.dla_core)
    if options.timing_cache:
        cache_file = Path(options.timing_cache)
        api.load_timing_cache(config, cache_file.read_bytes() if cache_file.is_file() else b"")
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ModelFileError(f"TensorRT {trt.__version__} could not build an engine from {parse_path}: {'; '.join(trt_logger.errors)[:300] or 'see the messages above'}")
    write_bytes_atomic(engine_path, bytes(plan))
    if options.timing_cache:
        write_bytes_atomic(Path(options.timing_cache), api.save_timing_cache(config))
    record = _fingerprint(engine_path, parse_path, options, api, strongly_typed, meta, calibration_sha256, calib_cache, calibrator)
    w, h = meta.res if meta is not None else (None, None)
    logger.info(f"wrote {engine_path} (TensorRT {trt.__version__}, {options.precision}"
        + (f" {options.int8_mode}" if options.precision == "int8" else "") + (f", {w}x{h}" if w else "") + ")")
    return {"engine": engine_path, "fingerprint": record}


def _model_to_parse(onnx_path: Path, engine_path: Path, options: TrtOptions, api: TrtApi, qdq_path) -> tuple[Path, bool]:
    """The ONNX model TensorRT parses for ``options`` (FP32, an FP16 copy, or the Q/DQ model), and
    whether the network is strongly typed."""
    trt = api.trt
    parse_path = onnx_path
    strongly_typed = False
    if options.precision == "fp16" and not api.has_precision_flags:
        # TensorRT 11: the precision is the ONNX model's own; convert to FP16 with float32 I/O.
        import onnx

        from edgeseg.export.fp16 import convert_fp16

        parse_path = engine_path.with_name(onnx_path.stem + ".fp16.onnx")
        onnx.save(convert_fp16(onnx.load(str(onnx_path))), str(parse_path))
        logger.info(f"wrote {parse_path} (FP16 ONNX for strongly typed TensorRT {trt.__version__})")
        strongly_typed = True
    if options.precision == "int8" and options.int8_mode == "explicit":
        if qdq_path is None or not _has_qdq(Path(qdq_path)):
            raise ConfigError("explicit INT8 needs a Q/DQ model (model.int8.onnx from 'edgeseg export --int8')")
        parse_path = Path(qdq_path)
    if options.precision == "int8" and options.int8_mode == "implicit" and _has_qdq(onnx_path):
        raise ConfigError(f"{onnx_path}: implicit INT8 builds from the FP32 model, not a Q/DQ model")
    return parse_path, strongly_typed


def _set_precision(api: TrtApi, config, options: TrtOptions, strongly_typed: bool, calib_cache, calib_inputs, profile):
    """The builder's precision flags (and, for implicit INT8, its calibrator, which is returned)."""
    calibrator = None
    if options.precision == "fp16" and api.has_precision_flags and not strongly_typed:
        api.allow_fp16(config)
    elif options.precision == "int8":
        if options.fp16_fallback and api.has_precision_flags:
            api.allow_fp16(config)
        if options.int8_mode == "explicit":
            api.allow_int8(config)
        else:
            from edgeseg.calibration.trt_cache import make_calibrator

            if calib_cache is None:
                raise ConfigError("--int8-mode implicit needs a calibration cache (written by 'edgeseg export --int8')")
            from edgeseg.runtime.trt_runner import TrtRunner

            calibrator = make_calibrator(api, Path(calib_cache), inputs=calib_inputs, device=TrtRunner.default_device)
            api.set_calibrator(config, calibrator, profile)
    return calibrator


def _fingerprint(engine_path: Path, parse_path: Path, options: TrtOptions, api: TrtApi, strongly_typed: bool, meta, calibration_sha256,
                 calib_cache, calibrator) -> dict:
    """``<engine>.json``: what the engine is bound to and was built from."""
    trt = api.trt
    record = {
        "format": "edgeseg-engine-v1",
        "tensorrt": trt.__version__,
        **fingerprint.gpu_info(),
        "precision": options.precision,
        "int8_mode": options.int8_mode if options.precision == "int8" else None,
        "strongly_typed": bool(strongly_typed or api.always_strongly_typed),
        "input_shape": list(meta.input_shape(1)) if meta is not None else None,
        "engine_sha256": sha256_file(engine_path),
        "onnx": parse_path.name,
        "onnx_sha256": sha256_file(parse_path),
        "calibration_sha256": calibration_sha256,
        "build_options": asdict(options),
        "trtexec": _trtexec_command(parse_path, engine_path, options, api, Path(calib_cache) if calib_cache else None),
        "built": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "meta": meta.to_props() if meta is not None else {},
    }
    if calibrator is not None:
        record["calibration_batches_on_device"] = calibrator.batches_served
    write_json_atomic(fingerprint_path(engine_path), record)
    return record


def _batch_profile(builder, network, config, max_batch: int):
    """An optimisation profile over batches 1..max_batch when the input batch is dynamic."""
    dynamic = []
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = tuple(tensor.shape)
        if any(d < 0 for d in shape[1:]):
            raise ModelFileError(f"input '{tensor.name}' has a dynamic size {shape}; edgeseg engines take a fixed image size")
        if shape and shape[0] < 0:
            dynamic.append((tensor.name, shape))
    if not dynamic:
        return None
    profile = builder.create_optimization_profile()
    for name, shape in dynamic:
        rest = tuple(shape[1:])
        profile.set_shape(name, (1,) + rest, (1,) + rest, (max_batch,) + rest)
    config.add_optimization_profile(profile)
    return profile


def _has_qdq(path: Path) -> bool:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
