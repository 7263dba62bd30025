"""INT8 on CamVid val: FP32 ONNX vs Q/DQ INT8 for each calibration method, with and without
the sensitivity-driven float fallback, all on ONNX Runtime CPU (the same Q/DQ model that
TensorRT consumes).

For each variant: mIoU on the whole val split at native resolution, its change against
FP32, pixel agreement with FP32, the blocks kept in float, and the ONNX Runtime CPU p50
latency relative to FP32 (timed side by side, interleaved).

    python benchmarks/int8_camvid.py --model /path/to/camvid/last.pt --json benchmarks/results/int8_camvid.json
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from edgeseg import runtime
from edgeseg.data import DataSource, build_dataset
from edgeseg.export import OnnxOptions, export_onnx
from edgeseg.export.int8 import Int8Options, export_int8
from edgeseg.runtime.spec import RunnerSpec
from edgeseg.tasks.bench import bench
from edgeseg.tasks.parity import compare_runners


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="CamVid-trained checkpoint")
    ap.add_argument("--data", default="../shared/data/camvid")
    ap.add_argument("--methods", default="minmax,entropy,percentile")
    ap.add_argument("--calib-images", type=int, default=300)
    ap.add_argument("--budget", type=float, default=0.5)
    ap.add_argument("--work", default="/tmp/edgeseg-int8")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout, force=True)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    fp32, meta = export_onnx(args.model, work / "model.onnx", OnnxOptions())
    val = build_dataset("camvid", args.data, "val")
    rows = []
    for method in args.methods.split(","):
        for fallback in (False, True):
            out = work / f"{method}-{'fallback' if fallback else 'full'}"
            out.mkdir(exist_ok=True)
            shutil.copy(fp32, out / "model.onnx")
            t0 = time.time()
            report = export_int8(out / "model.onnx", meta, out, Int8Options(calib_method=method, calib_images=args.calib_images,
                                 budget=args.budget, fallback=fallback), DataSource("camvid", args.data), progress=False)
            parity = compare_runners(runtime.load(out / "model.int8.onnx", device="cpu"), runtime.load(fp32, device="cpu"),
                                     val, progress=False)["parity"]
            lat = bench([fp32, out / "model.int8.onnx"], RunnerSpec(device="cpu"), iters=30, warmup=5, progress=False)
            p50 = [r["model_only"]["p50_ms"] for r in lat["results"]]
            row = {
                "method": method, "fallback": fallback, "float_blocks": report["float_blocks"],
                "fp32_miou": parity["reference_miou"], "int8_miou": parity["model_miou"], "delta_miou": parity["delta_miou"],
                "pixel_agreement": parity["pixel_agreement"], "per_class_delta": parity["per_class_delta"],
                "fp32_p50_ms": p50[0], "int8_p50_ms": p50[1], "latency_ratio": round(p50[1] / p50[0], 3),
                "subset_full_int8": report["full_int8"], "minutes": round((time.time() - t0) / 60, 1),
            }
            rows.append(row)
            print(f"{method:10s} fallback={fallback!s:5s}: mIoU {row['int8_miou']:.2f} vs FP32 {row['fp32_miou']:.2f} "
                  f"(delta {row['delta_miou']:+.2f}), agreement {row['pixel_agreement']:.2f}%, "
                  f"float blocks {len(row['float_blocks'])}, latency x{row['latency_ratio']}", flush=True)
    result = {
        "model": args.model, "input": f"{meta.res[0]}x{meta.res[1]}", "val_images": len(val), "calib_images": args.calib_images,
        "budget": args.budget, "rows": rows,
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}, torch threads {torch.get_num_threads()}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "command": f"python benchmarks/int8_camvid.py --model {args.model} --calib-images {args.calib_images} --budget {args.budget}",
    }
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
