"""``edgeseg export --int8``: calibrate on real training images, write the Q/DQ model that
TensorRT consumes (and ONNX Runtime runs), keep sensitive blocks in float until the mIoU
change is within budget, and write a TensorRT calibration cache for implicit INT8."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from edgeseg.calibration.dataset import (
    build_calibration_set,
    calibration_set_from_array,
)
from edgeseg.calibration.qdq import CALIB_METHODS, INT8_TARGETS, load_or_compute_ranges
from edgeseg.calibration.sensitivity import SubsetScorer, fallback_search
from edgeseg.calibration.trt_cache import write_trt_cache
from edgeseg.errors import ConfigError
from edgeseg.fileio import write_json_atomic

logger = logging.getLogger(__name__)

DEFAULT_CACHE_VERSION_TAG = 8502  # TensorRT 8.5.2 (JetPack 5.1); builds rewrite the header for their own version


@dataclass(frozen=True)
class Int8Options:
    calib_method: str = "entropy"
    calib_images: int = 300
    calib_seed: int = 0
    calib_split: str = "train"
    calib_array: str | None = None  # pre-processed inputs (.npy) instead of data set images
    budget: float = 0.5  # mIoU points INT8 may lose against FP32
    fallback: bool = True
    sensitivity_images: int = 100  # val images scoring each variant; fewer make the mIoU change too noisy to steer by
    target: str = "tensorrt"  # tensorrt: Q/DQ on operator inputs (TensorRT's placement); cpu: ONNX Runtime's layout

    def check(self) -> None:
        if self.calib_method not in CALIB_METHODS:
            raise ConfigError(f"--calib-method: expected one of {', '.join(CALIB_METHODS)}; got '{self.calib_method}'")
        if self.target not in INT8_TARGETS:
            raise ConfigError(f"--int8-target: expected one of {', '.join(INT8_TARGETS)}; got '{self.target}'")
        if self.budget < 0:
            raise ConfigError(f"--int8-budget {self.budget}: must be zero or positive (mIoU points)")
        if self.sensitivity_images < 1:
            raise ConfigError("--sensitivity-images: must be at least 1")


def export_int8(onnx_path: Path, meta, out_dir: Path, options: Int8Options, dataset=None, data=None, val_split: str = "val",
                saved_root=None, progress: bool = True) -> dict:
    from edgeseg.data import resolve_dataset

    options.check()
    cache_dir = out_dir / "calibration"
    if options.calib_array:
        calib = calibration_set_from_array(Path(options.calib_array), meta)
    else:
        train_ds = calibration_dataset(meta, options, dataset, data, saved_root)
        calib = build_calibration_set(meta, train_ds, options.calib_images, options.calib_seed, progress,
                                      warn=logger.warning)
    ranges, key = load_or_compute_ranges(onnx_path, calib, options.calib_method, cache_dir, options.target)
    val_ds = resolve_dataset(meta.dataset, dataset, data, val_split, False, saved_root)
    indices = list(range(min(options.sensitivity_images, len(val_ds))))
    scorer = SubsetScorer(onnx_path, val_ds, indices)
    qdq_path = out_dir / "model.int8.onnx"
    result = fallback_search(onnx_path, qdq_path, ranges, options.calib_method, scorer, options.budget,
                             analyse=options.fallback, progress=progress, target=options.target)
    _stamp_metadata(qdq_path, meta, options, calib.sha256, result.float_blocks)
    trt_cache = None
    if options.target == "tensorrt":  # TensorRT's implicit INT8 reads symmetric scales; the CPU ranges are not that
        trt_cache = write_trt_cache(ranges, out_dir / "calibration.cache", DEFAULT_CACHE_VERSION_TAG)
        write_json_atomic(out_dir / "calibration.cache.json", {
            "key": key, "calibration_sha256": calib.sha256, "method": options.calib_method, "onnx": onnx_path.name,
            "header_version": DEFAULT_CACHE_VERSION_TAG, "tensors": len(ranges),
        })
    report = {
        "model": str(qdq_path),
        "fp32_model": str(onnx_path),
        "options": asdict(options),
        "calibration_sha256": calib.sha256,
        "calibration_images": len(calib),
        "cache_key": key,
        "fp32_miou_subset": result.fp32_miou,
        "subset_images": len(indices),
        "subset": {"split": val_split, "images": [val_ds.sample_name(i) for i in indices]},  # the images that decided
        "full_int8": result.full_int8,
        "float_blocks": result.float_blocks,
        "final": result.final,
        "within_budget": result.within_budget,
        "sensitivity": result.sensitivity,
        "target": options.target,
        "trt_calibration_cache": str(trt_cache) if trt_cache else None,
    }
    if result.float_blocks:
        report["latency"] = _fallback_latency(onnx_path, qdq_path, ranges, options.calib_method, out_dir, options.target)
        lat = report["latency"]
        logger.info(f"kept {len(result.float_blocks)} block(s) in float ({', '.join(result.float_blocks)}); ONNX Runtime CPU p50: "
            f"FP32 {lat['fp32_ms']:.1f} ms, full INT8 {lat['int8_full_ms']:.1f} ms, with fallback {lat['int8_fallback_ms']:.1f} ms")
    write_json_atomic(out_dir / "int8_report.json", report)
    logger.info(f"wrote {qdq_path} ({options.target} placement), " + (f"{trt_cache} and " if trt_cache else "")
                + f"{out_dir / 'int8_report.json'}")
    return report


def calibration_dataset(meta, options: Int8Options, dataset, data, saved_root):
    from edgeseg.data import resolve_dataset

    try:
        return resolve_dataset(meta.dataset, dataset, data, options.calib_split, False, saved_root)
    except ConfigError as exc:
        raise ConfigError(f"--int8 needs calibration images ({exc}); give --dataset/--data (its {options.calib_split} split is used) "
                          "or --calib-array FILE.npy") from None


def _stamp_metadata(path: Path, meta, options: Int8Options, calib_sha: str, float_blocks) -> None:
    import onnx

    model = onnx.load(str(path))
    activations = "uint8 asymmetric per-tensor, op inputs and outputs" if options.target == "cpu" else "int8 symmetric per-tensor"
    extra = {**meta.extra, "quantization": {"format": "QDQ", "target": options.target, "activations": activations,
                                            "weights": "int8 symmetric per-channel", "calib_method": options.calib_method,
                                            "calibration_sha256": calib_sha, "float_blocks": list(float_blocks)}}
    onnx.helper.set_model_props(model, meta.with_(extra=extra).to_props())
    onnx.save(model, str(path))


def _fallback_latency(fp32: Path, fallback: Path, ranges, method, out_dir: Path, target: str = "tensorrt") -> dict:
    """ONNX Runtime CPU p50 of FP32, full INT8 and the fallback model, timed side by side."""
    import tempfile

    import numpy as np

    from edgeseg.calibration.qdq import quantize_qdq
    from edgeseg.runtime.ort_runner import OrtRunner
    from edgeseg.runtime.timing import latency_stats, machine, time_interleaved

    with tempfile.TemporaryDirectory(prefix="edgeseg-lat-") as tmp:
        full = Path(tmp) / "full.onnx"
        quantize_qdq(fp32, full, ranges, method, target=target)
        runners = [OrtRunner.from_file(p, device="cpu").activate() for p in (fp32, full, fallback)]
        try:
            x = np.zeros(runners[0].input_shape(1), dtype=runners[0].input_dtype())
            times = time_interleaved([lambda r=r: r.infer(x) for r in runners], iters=20, warmup=3)
        finally:
            for r in runners:
                r.deactivate()
    p50 = [latency_stats(t, 1)["p50_ms"] for t in times]
    return {"fp32_ms": p50[0], "int8_full_ms": p50[1], "int8_fallback_ms": p50[2], "machine": machine()}
