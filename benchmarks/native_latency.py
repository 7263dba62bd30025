"""ONNX Runtime CPU latency from the native frame to native labels, for today's model
(network at --res, logits up-sampled bilinearly to the frame and arg-maxed outside the graph)
and the --upscale / --refine variants, timed side by side in one process, interleaved.

Weights do not change the time of these graphs, so the models are freshly built (no training).
Each variant is exported with edgeseg's own exporter and run through edgeseg's pre- and
post-processing, exactly as `edgeseg eval` / `bench` / `predict` run them.

    python benchmarks/native_latency.py --res 512x256 --native 1024x512 --classes 19 --json benchmarks/results/native_latency_512x256.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from _exported import add_size_options, exported_runner, sizes

from edgeseg.models import ModelConfig
from edgeseg.runtime.processing import Preprocess, native_labels
from edgeseg.runtime.timing import latency_stats, time_interleaved

VARIANTS = {  # name: (upscale, refine)
    "today (bilinear up-sampling outside the graph)": (1, "none"),
    "--upscale 2": (2, "none"),
    "--upscale 4": (4, "none"),
    "--refine guided": (1, "guided"),
    "--upscale 2 --refine guided": (2, "guided"),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--classes", type=int, default=19)
    ap.add_argument("--model", default="lite0-lraspp")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names from the list above")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    add_size_options(ap)
    args = ap.parse_args()
    res, native = sizes(args)
    frame = np.random.default_rng(0).integers(0, 256, (native[1], native[0], 3), dtype=np.uint8)
    chosen = [v for v in args.variants.split(",") if v]
    runners, calls = [], []
    with tempfile.TemporaryDirectory(prefix="edgeseg-native-") as tmp:
        for i, name in enumerate(chosen):
            upscale, refine = VARIANTS[name]
            cfg = ModelConfig(args.model, args.classes, upscale=upscale, refine=refine, res=res,
                              native_res=native if refine != "none" else None)
            runner = exported_runner(cfg, res, Path(tmp), f"m{i}", args.threads)
            pre = Preprocess.from_meta(runner.meta)
            runners.append(runner)
            calls.append(lambda r=runner, p=pre: native_labels(r.infer(p([frame])), [frame.shape[:2]]))
        times = time_interleaved(calls, args.iters, args.warmup)
        for r in runners:
            r.deactivate()
    rows = [{"variant": name, "end_to_end": latency_stats(t, 1)} for name, t in zip(chosen, times)]
    base = rows[0]["end_to_end"]["p50_ms"]
    for row in rows:
        row["p50_ratio_to_first"] = round(row["end_to_end"]["p50_ms"] / base, 3)
        print(f"{row['variant']:45s} p50 {row['end_to_end']['p50_ms']:8.2f} ms  p90 {row['end_to_end']['p90_ms']:8.2f} ms  "
              f"ratio {row['p50_ratio_to_first']:.3f}")
    result = {"res": list(res), "native": list(native), "classes": args.classes, "model": args.model, "iters": args.iters,
              "rows": rows, "threads": args.threads,
              "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "command": "python " + " ".join(sys.argv)}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
