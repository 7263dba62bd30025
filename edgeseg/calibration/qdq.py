"""Activation ranges and explicit quantization (Q/DQ) with onnxruntime.quantization.

The Q/DQ form follows what TensorRT accepts: symmetric int8 activations and
weights (zero point 0), per-channel weights on the output-channel axis, float
biases, a Q/DQ pair on each weight and a dedicated pair per consumer. Q/DQ sit on
the *inputs* of the quantised ops only, as TensorRT recommends: a convolution's
output is not quantised before its ReLU6, whose clipped range is much narrower.
A full-output placement (the CPU target below) does not lose more on a trained model: on
CamVid 240x180, every layer quantised, it lost 0.19-0.37 mIoU against 0.21-0.30 for this
placement (benchmarks/RESULTS.md section 17). Ranges are computed once per (ONNX model,
calibration set, method) and cached; every quantisation variant (fallback search
included) reuses them.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from edgeseg.calibration.dataset import CalibrationSet
from edgeseg.errors import ConfigError
from edgeseg.fileio import is_number, parse_json, sha256_file, write_json_atomic

logger = logging.getLogger(__name__)

CALIB_METHODS = ("minmax", "entropy", "percentile")
INT8_TARGETS = ("tensorrt", "cpu")
# The CPU placement: onnxruntime.quantization's own QDQ layout (uint8 asymmetric activations on op
# inputs *and* outputs, int8 per-channel weights, int32 biases), which ONNX Runtime's CPU provider and
# OpenVINO fuse into integer kernels. Ops it leaves float: the in-graph normalisation, and ops not
# listed here (Sigmoid gates, ArgMax, Cast).
CPU_OP_TYPES = ("Conv", "MatMul", "Gemm", "Add", "Mul", "Concat", "Resize", "AveragePool", "GlobalAveragePool", "MaxPool",
                "Relu", "Clip", "DepthToSpace", "Pad")
CPU_QDQ_OPTIONS = {"ActivationSymmetric": False, "WeightSymmetric": True, "QuantizeBias": True}
# Ops whose inputs get Q/DQ: the weighted ops plus the joins TensorRT fuses around them.
QUANT_OP_TYPES = ("Conv", "Add", "Concat", "Mul", "Resize")
QDQ_OPTIONS = {
    "ActivationSymmetric": True,
    "WeightSymmetric": True,
    "QuantizeBias": False,
    "AddQDQPairToWeight": True,
    "DedicatedQDQPair": True,
    "OpTypesToExcludeOutputQuantization": list(QUANT_OP_TYPES),
}


@contextlib.contextmanager
def _quiet_ort():
    """onnxruntime.quantization's chatter kept out of the output: its records (it logs through the
    root logger) are filtered out, without touching the root logger's level or anyone else's records."""
    import onnxruntime as ort

    def not_onnxruntime(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or "onnxruntime" not in record.pathname

    root = logging.getLogger()
    root.addFilter(not_onnxruntime)
    ort.set_default_logger_severity(3)
    try:
        # The histogram calibrators also print their progress to stdout.
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.removeFilter(not_onnxruntime)
        ort.set_default_logger_severity(2)  # onnxruntime's default (it has no getter to restore from)


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    table = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
    if name not in table:
        raise ConfigError(f"--calib-method: expected one of {', '.join(CALIB_METHODS)}; got '{name}'")
    return table[name]


class _ArrayReader:
    """onnxruntime CalibrationDataReader over pre-processed inputs, one image per call."""

    def __init__(self, name: str, inputs: np.ndarray):
        self.name, self.inputs, self.i = name, inputs, 0

    def get_next(self):
        if self.i >= len(self.inputs):
            return None
        self.i += 1
        return {self.name: self.inputs[self.i - 1 : self.i]}

    def __len__(self):
        return len(self.inputs)


def compute_ranges(onnx_path: Path, calib: CalibrationSet, method: str = "entropy", percentile: float = 99.999,
                   symmetric: bool = True, entropy_bins: int = 2048) -> dict[str, list[float]]:
    """Per-tensor activation ranges ``{name: [min, max]}`` of the FP32 model on the calibration set
    (symmetric about zero for TensorRT's int8, the observed range for the CPU's asymmetric uint8)."""
    import onnx
    from onnxruntime.quantization.calibrate import create_calibrator

    model = onnx.load(str(onnx_path), load_external_data=False)
    input_name = model.graph.input[0].name
    extra = {"symmetric": symmetric}
    if method == "percentile":
        extra["percentile"] = percentile
    if method == "entropy":
        # onnxruntime's defaults (128 bins, 128 quantised bins) leave the KL search a single
        # candidate, the full range; TensorRT's entropy calibration uses 2048 bins.
        extra.update(num_bins=entropy_bins, num_quantized_bins=128)
    with _quiet_ort(), tempfile.TemporaryDirectory(prefix="edgeseg-calib-") as tmp:
        calibrator = create_calibrator(Path(onnx_path), None, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=_method(method), extra_options=extra)
        calibrator.collect_data(_ArrayReader(input_name, calib.inputs))
        data = calibrator.compute_data()
    return {name: [float(np.asarray(t.range_value[0]).ravel()[0]), float(np.asarray(t.range_value[1]).ravel()[0])]
            for name, t in data.data.items()}


def cache_key(onnx_sha256: str, calib_sha256: str, method: str) -> str:
    import hashlib

    return hashlib.sha256(f"{onnx_sha256}:{calib_sha256}:{method}".encode()).hexdigest()


def _valid_ranges(ranges) -> bool:
    """``{tensor: [min, max]}`` with finite numbers, min <= max (a hand-edited cache may not be)."""
    return isinstance(ranges, dict) and all(
        isinstance(v, list) and len(v) == 2 and all(is_number(x) for x in v) and v[0] <= v[1] for v in ranges.values())


def load_or_compute_ranges(onnx_path: Path, calib: CalibrationSet, method: str, cache_dir: Path, target: str = "tensorrt") -> tuple[dict, str]:
    """Ranges from ``cache_dir`` when its key matches (ONNX model, calibration set, method, target);
    else calibrate, say why, and rewrite the cache. Returns (ranges, key)."""
    onnx_sha = sha256_file(onnx_path)
    key = cache_key(onnx_sha, calib.sha256, method if target == "tensorrt" else f"{method}-{target}")
    path = cache_dir / (f"ranges-{method}.json" if target == "tensorrt" else f"ranges-{method}-{target}.json")
    if path.is_file():
        try:
            cached = parse_json(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            cached = {}
        if not isinstance(cached, dict):
            cached = {}
        if cached.get("key") == key and _valid_ranges(cached.get("ranges")):
            logger.info(f"using cached {method} activation ranges from {path}")
            return cached["ranges"], key
        what = []
        if cached.get("onnx_sha256") != onnx_sha:
            what.append("the ONNX model changed")
        if cached.get("calibration_sha256") != calib.sha256:
            what.append("the calibration set changed")
        logger.info(f"calibration cache {path} is stale ({' and '.join(what) or 'unreadable or damaged'}); recalibrating")
    logger.info(f"calibrating ({method}) on {len(calib)} images")
    ranges = compute_ranges(onnx_path, calib, method, symmetric=target == "tensorrt")
    write_json_atomic(path, {"key": key, "onnx_sha256": onnx_sha, "calibration_sha256": calib.sha256, "method": method, "ranges": ranges})
    write_json_atomic(cache_dir / "manifest.json", calib.manifest)
    return ranges, key


def quantize_qdq(fp32_path: Path, out_path: Path, ranges: dict, method: str, exclude_nodes=(), op_types=None,
                 target: str = "tensorrt") -> None:
    """Write a Q/DQ model of ``fp32_path`` using precomputed ``ranges``, placed for ``target``
    (``tensorrt``: int8 on operator inputs only; ``cpu``: ONNX Runtime's layout); ``exclude_nodes`` stay float."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

    tensors = TensorsData(_method(method), {k: TensorData(lowest=np.float32(v[0]), highest=np.float32(v[1])) for k, v in ranges.items()})
    with _quiet_ort():
        model = load_model_with_shape_infer(Path(fp32_path))
        exclude = list(exclude_nodes) + [n for n in normalisation_nodes(model) if n not in exclude_nodes]
        if target == "cpu":
            quantizer = QDQQuantizer(model, True, False, QuantType.QInt8, QuantType.QUInt8, tensors, [], exclude,
                                     list(op_types or CPU_OP_TYPES), dict(CPU_QDQ_OPTIONS))
        else:
            quantizer = QDQQuantizer(model, True, False, QuantType.QInt8, QuantType.QInt8, tensors, [], exclude,
                                     list(op_types or QUANT_OP_TYPES), dict(QDQ_OPTIONS))
        quantizer.quantize_model()
        quantizer.model.save_model_to_file(str(out_path), False)


# What a uint8-input graph does before the network: uint8 -> float, NHWC -> NCHW, (x - mean) / std.
_PREAMBLE_OPS = ("Cast", "Transpose", "Sub", "Mul", "Div")


def normalisation_nodes(model) -> list[str]:
    """The in-graph input normalisation (the chain of Cast/Transpose/Sub/Mul/Div from the graph input):
    it stays float, so no Q/DQ lands on its constant mean and scale (TensorRT would quantise them as weights)."""
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    names, tensor = [], model.graph.input[0].name
    while len(consumers.get(tensor, [])) == 1 and consumers[tensor][0].op_type in _PREAMBLE_OPS:
        node = consumers[tensor][0]
        names.append(node.name)
        tensor = node.output[0]
    return names
