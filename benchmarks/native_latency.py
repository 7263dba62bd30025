"""ONNX Runtime CPU latency from the native frame to native labels, for today's model
(network at --res, logits up-sampled bilinearly to the frame and arg-maxed outside the graph)
and the --upscale / --refine variants, timed side by side in one process, interleaved.

A variant is a string of edgeseg options: `--model`, `--upscale`, `--refine`, `--model-opt
KEY=VALUE` (training options that shape the graph) and `--output logits|labels`, `--output-size
native` (export options); the empty string is today's default model. Weights do not change the
time of these graphs, so the models are freshly built (no training). Each variant is exported
with edgeseg's own exporter and run through edgeseg's pre- and post-processing, exactly as
`edgeseg eval` / `bench` / `predict` run them.

    python benchmarks/native_latency.py --res 512x256 --native 1024x512 --classes 19 --json benchmarks/results/native_latency_512x256.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from _exported import add_size_options, exported_runner, sizes

from edgeseg.export import OnnxOptions
from edgeseg.models import ModelConfig
from edgeseg.runtime.processing import Preprocess, native_labels
from edgeseg.runtime.timing import latency_stats, time_interleaved

VARIANTS = (
    "",
    "--output labels --output-size native",
    "--upscale 2 --output labels",
    "--upscale 4",
    "--refine guided --output labels",
    "--refine guided --model-opt guide_channels=1 --output labels",
    "--refine guided --model-opt guide_channels=1 --model-opt guide_kernel=3 --output labels",
    "--upscale 2 --refine guided --model-opt guide_channels=1 --model-opt guide_kernel=3 --output labels",
)


def parse_variant(spec: str, model: str, classes: int, res, native) -> tuple[ModelConfig, OnnxOptions]:
    """One variant string -> the model config to build and the export options."""
    words = shlex.split(spec)
    if len(words) % 2:
        raise SystemExit(f"variant '{spec}': expected OPTION VALUE pairs")
    upscale, refine, options, output, output_size = 1, "none", {}, "logits", None
    for opt, value in zip(words[::2], words[1::2]):
        if opt == "--model":
            model = value
        elif opt == "--upscale":
            upscale = int(value)
        elif opt == "--refine":
            refine = value
        elif opt == "--model-opt":
            key, _, v = value.partition("=")
            options[key] = int(v)
        elif opt == "--output":
            output = value
        elif opt == "--output-size" and value == "native":
            output_size = tuple(native)
        else:
            raise SystemExit(f"variant '{spec}': unknown option {opt} {value}")
    cfg = ModelConfig(model, classes, upscale=upscale, refine=refine, res=tuple(res), options=options,
                      native_res=tuple(native) if refine != "none" else None)
    return cfg, OnnxOptions(output=output, output_size=output_size)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--classes", type=int, default=19)
    ap.add_argument("--model", default="lite0-lraspp", help="the model of every variant that names none")
    ap.add_argument("--variants", default="|".join(VARIANTS), help="variants separated by '|' (see the list above)")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    add_size_options(ap)
    args = ap.parse_args()
    res, native = sizes(args)
    frame = np.random.default_rng(0).integers(0, 256, (native[1], native[0], 3), dtype=np.uint8)
    chosen = [v.strip() for v in args.variants.split("|")]
    runners, calls = [], []
    with tempfile.TemporaryDirectory(prefix="edgeseg-native-") as tmp:
        for i, spec in enumerate(chosen):
            cfg, onnx_options = parse_variant(spec, args.model, args.classes, res, native)
            runner = exported_runner(cfg, res, Path(tmp), f"m{i}", args.threads, onnx_options)
            pre = Preprocess.from_meta(runner.meta)
            runners.append(runner)
            calls.append(lambda r=runner, p=pre: native_labels(r.infer(p([frame])), [frame.shape[:2]]))
        times = time_interleaved(calls, args.iters, args.warmup)
        for r in runners:
            r.deactivate()
    rows = [{"variant": spec or "(defaults)", "end_to_end": latency_stats(t, 1)} for spec, t in zip(chosen, times)]
    base = rows[0]["end_to_end"]["p50_ms"]
    for row in rows:
        row["p50_ratio_to_first"] = round(row["end_to_end"]["p50_ms"] / base, 3)
        print(f"{row['variant']:90s} p50 {row['end_to_end']['p50_ms']:8.2f} ms  p90 {row['end_to_end']['p90_ms']:8.2f} ms  "
              f"ratio {row['p50_ratio_to_first']:.3f}")
    result = {"res": list(res), "native": list(native), "classes": args.classes, "model": args.model, "iters": args.iters,
              "rows": rows, "threads": args.threads,
              "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "command": "python " + shlex.join(sys.argv)}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
