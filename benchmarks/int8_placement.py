"""Why a Q/DQ placement loses accuracy: every layer quantised (no float fallback), each placement
(TensorRT: int8 symmetric on operator inputs; CPU: uint8 asymmetric on inputs and outputs) with each
range method, including entropy with onnxruntime's default 128 histogram bins (edgeseg uses 2048).

For each variant: mIoU on the whole val split at native resolution against the FP32 ONNX model,
its 95% bootstrap interval, pixel agreement, and the classes that lose most.

    python benchmarks/int8_placement.py --model camvid240/last.pt --data ../shared/data/camvid \\
        --json benchmarks/results/int8_placement_camvid_240x180.json
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from edgeseg.calibration.dataset import build_calibration_set
from edgeseg.calibration.qdq import compute_ranges, quantize_qdq
from edgeseg.data import build_dataset
from edgeseg.export import OnnxOptions, export_onnx
from edgeseg import runtime
from edgeseg.runtime.timing import machine
from edgeseg.tasks.parity import compare_runners

VARIANTS = [  # (target, method, entropy bins)
    ("tensorrt", "entropy", 2048), ("tensorrt", "minmax", None), ("tensorrt", "entropy", 128), ("tensorrt", "percentile", None),
    ("cpu", "entropy", 2048), ("cpu", "minmax", None), ("cpu", "entropy", 128), ("cpu", "percentile", None),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", default="../shared/data/camvid")
    ap.add_argument("--calib-images", type=int, default=300)
    ap.add_argument("--work", default="/tmp/edgeseg-int8-placement")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stdout, force=True)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    fp32, meta = export_onnx(args.model, work / "model.onnx", OnnxOptions())
    calib = build_calibration_set(meta, build_dataset(meta.dataset, args.data, "train"), args.calib_images, 0, False)
    val = build_dataset(meta.dataset, args.data, "val")
    ranges_cache, rows = {}, []
    for target, method, bins in VARIANTS:
        t0 = time.time()
        key = (target == "tensorrt", method, bins)
        if key not in ranges_cache:
            ranges_cache[key] = compute_ranges(fp32, calib, method, symmetric=target == "tensorrt", entropy_bins=bins or 2048)
        name = f"{target}-{method}" + (f"-{bins}bins" if bins else "")
        path = work / f"{name}.onnx"
        quantize_qdq(fp32, path, ranges_cache[key], method, target=target)
        p = compare_runners(runtime.load(path, device="cpu"), runtime.load(fp32, device="cpu"), val, progress=False)["parity"]
        worst = sorted(((d, c) for c, d in p["per_class_delta"].items() if d is not None))[:3]
        row = {"target": target, "method": method, "entropy_bins": bins, "fp32_miou": p["reference_miou"], "int8_miou": p["model_miou"],
               "delta_miou": p["delta_miou"], "delta_miou_interval": p["delta_miou_interval"], "pixel_agreement": p["pixel_agreement"],
               "worst_classes": {c: d for d, c in worst}, "seconds": round(time.time() - t0)}
        rows.append(row)
        print(f"{name:28s} mIoU {row['int8_miou']:.2f} vs {row['fp32_miou']:.2f} (delta {row['delta_miou']:+.2f}, 95% "
              f"{row['delta_miou_interval'][0]:+.2f}..{row['delta_miou_interval'][1]:+.2f}), agreement {row['pixel_agreement']:.2f}%, "
              f"worst {', '.join(f'{c} {d:+.1f}' for d, c in worst)}", flush=True)
    out = {"model": args.model, "input": f"{meta.res[0]}x{meta.res[1]}", "val_images": len(val), "calib_images": len(calib),
           "rows": rows, "machine": machine(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "command": " ".join(sys.argv)}
    if args.json:
        from edgeseg.fileio import write_json_atomic

        write_json_atomic(args.json, out)


if __name__ == "__main__":
    main()
