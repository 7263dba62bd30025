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
from edgeseg.records import check_fields, opt

logger = logging.getLogger(__name__)

DEFAULT_CACHE_VERSION_TAG = 8502  # TensorRT 8.5.2 (JetPack 5.1); builds rewrite the header for their own version


@dataclass(frozen=True)
class Int8Options:
    calib_method: str = opt("entropy", choices=CALIB_METHODS, help="How activation ranges are chosen.")
    calib_images: int = opt(300, excludes="calib_array", low=10, high=100_000, help="Calibration images (at least 10; 100+ advised).")
    calib_seed: int = opt(0, excludes="calib_array", low=0, high=2**32 - 1, help="Seed of the calibration images' choice.")
    calib_split: str = opt("train", excludes="calib_array", help="Split the calibration images come from.")
    calib_array: str | None = opt(None, input=True, help="Pre-processed calibration inputs (.npy) instead of images.")
    budget: float = opt(0.5, low=0.0, high=100.0, flag="--int8-budget", help="mIoU points INT8 may lose against FP32.")
    fallback: bool = opt(True, flag="--no-fallback", invert=True, help="Quantise every layer; no float fallback of sensitive blocks.")
    sensitivity_images: int = opt(100, low=1, high=1_000_000, help="Val images for the INT8 sensitivity search (fewer make the mIoU "
                                                                  "change too noisy to steer by).")
    target: str = opt("tensorrt", choices=INT8_TARGETS, flag="--int8-target",
                      help="Where the INT8 model runs: tensorrt (Q/DQ on operator inputs) or cpu (ONNX Runtime / OpenVINO integer kernels).")

    def __post_init__(self):
        check_fields(self)
        if self.calib_array is not None and not str(self.calib_array).strip():
            raise ConfigError("--calib-array: expected a .npy file, got an empty string")


def export_int8(onnx_path: Path, meta, out_dir: Path, options: Int8Options, source=None, saved_root=None, progress: bool = True,
                cache_dir: Path | None = None, final_dir: Path | None = None) -> dict:
    """model.int8.onnx, its calibration caches and int8_report.json into ``out_dir`` (``final_dir``:
    where they will live, as the report names them; ``cache_dir``: the activation-range cache),
    calibrated on ``source``'s ``--calib-split`` and scored on its split (a DataSource)."""
    from edgeseg.data import DataSource

    source = source or DataSource()
    final_dir = final_dir or out_dir
    cache_dir = cache_dir or final_dir / "calibration"
    if options.calib_array:
        calib = calibration_set_from_array(Path(options.calib_array), meta)
    else:
        train_ds = calibration_dataset(meta, options, source, saved_root)
        calib = build_calibration_set(meta, train_ds, options.calib_images, options.calib_seed, progress,
                                      warn=logger.warning)
    ranges, key = load_or_compute_ranges(onnx_path, calib, options.calib_method, cache_dir, options.target)
    val_split = source.split
    val_ds = source.open(meta.dataset, saved_root)
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
        "model": str(final_dir / qdq_path.name),
        "fp32_model": str(final_dir / onnx_path.name),
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
        "trt_calibration_cache": str(final_dir / trt_cache.name) if trt_cache else None,
    }
    if result.float_blocks:
        report["latency"] = _fallback_latency(onnx_path, qdq_path, ranges, options.calib_method, out_dir, options.target)
        lat = report["latency"]
        logger.info(f"kept {len(result.float_blocks)} block(s) in float ({', '.join(result.float_blocks)}); ONNX Runtime CPU p50: "
            f"FP32 {lat['fp32_ms']:.1f} ms, full INT8 {lat['int8_full_ms']:.1f} ms, with fallback {lat['int8_fallback_ms']:.1f} ms")
    write_json_atomic(out_dir / "int8_report.json", report)
    logger.info(f"wrote {final_dir / qdq_path.name} ({options.target} placement), " + (f"{final_dir / trt_cache.name} and " if trt_cache else "")
                + f"{final_dir / 'int8_report.json'}")
    return report


def calibration_dataset(meta, options: Int8Options, source, saved_root):
    try:
        return source.open(meta.dataset, saved_root, split=options.calib_split)
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
    from edgeseg.runtime.timing import latency_stats, machine, time_interleaved

    with tempfile.TemporaryDirectory(prefix="edgeseg-lat-") as tmp:
        full = Path(tmp) / "full.onnx"
        quantize_qdq(fp32, full, ranges, method, target=target)
        from edgeseg import runtime

        runners = [runtime.load(p, device="cpu", backend="onnxruntime").activate() for p in (fp32, full, fallback)]
        try:
            x = np.zeros(runners[0].input_shape(1), dtype=runners[0].input_dtype())
            times = time_interleaved([lambda r=r: r.infer(x) for r in runners], iters=20, warmup=3)
        finally:
            for r in runners:
                r.deactivate()
    p50 = [latency_stats(t, 1)["p50_ms"] for t in times]
    return {"fp32_ms": p50[0], "int8_full_ms": p50[1], "int8_fallback_ms": p50[2], "machine": machine()}
