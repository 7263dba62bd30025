"""CPU INT8 side by side: PyTorch, ONNX Runtime and OpenVINO, FP32 and both INT8 placements.

For each checkpoint given, exports with edgeseg (``export_model``: FP32 ONNX, INT8 Q/DQ with the
TensorRT placement in one folder and the CPU placement in another, OpenVINO IR of each, every
artefact passing its own parity gate or recorded as refused), then:

- latency: every engine in its own worker process (``edgeseg bench``'s isolation), taking turns
  ``--block`` iterations at a time in alternating order; p50/p90 model-only and end to end, and
  p50 ratios to ONNX Runtime FP32 from the same run;
- quality: each exported engine against the checkpoint on the whole val split of the
  checkpoint's data set at native resolution (mIoU, its change with a 95% bootstrap interval,
  pixel agreement);
- with ``--in-process-too``: the same engines timed in one process, interleaved, to show what
  competing thread pools do to the ratios.

    python benchmarks/cpu_int8.py --checkpoint runs/quickstart/last.pt --checkpoint camvid240/last.pt \\
        --data ../shared/data/camvid --json benchmarks/results/cpu_int8.json
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from edgeseg.errors import CheckFailed
from edgeseg.export import OnnxOptions
from edgeseg.export.int8 import Int8Options
from edgeseg.data import DataSource
from edgeseg.export.formats import ExportOptions, Request
from edgeseg.runtime import load
from edgeseg.runtime.spec import RunnerSpec
from edgeseg.tasks.bench import bench
from edgeseg.tasks.export import export_model
from edgeseg.tasks.parity import compare_runners

# (label, folder, file, engine options); folders: "trt" holds the TensorRT placement, "cpu" the CPU one.
ENGINES = [
    ("torch FP32", None, None, RunnerSpec(device="cpu")),
    ("onnxruntime FP32", "trt", "model.onnx", RunnerSpec(device="cpu")),
    ("onnxruntime INT8 (TensorRT placement)", "trt", "model.int8.onnx", RunnerSpec(device="cpu")),
    ("onnxruntime INT8 (CPU placement)", "cpu", "model.int8.onnx", RunnerSpec(device="cpu")),
    ("openvino FP32 (f32)", "trt", "model.xml", RunnerSpec(device="cpu", precision="f32")),
    ("openvino FP32 (default hint)", "trt", "model.xml", RunnerSpec(device="cpu")),
    ("openvino INT8 (TensorRT placement)", "trt", "model.int8.xml", RunnerSpec(device="cpu")),
    ("openvino INT8 (CPU placement)", "cpu", "model.int8.xml", RunnerSpec(device="cpu")),
]
BASELINE = "onnxruntime FP32"


def export_all(ckpt: Path, work: Path, data: str | None, budget: float, calib_images: int, sensitivity_images: int, method: str) -> dict:
    """Both placements exported with their gates; a refused artefact is recorded, not fatal."""
    refused = {}
    for target in ("trt", "cpu"):
        t0 = time.time()
        opts = Int8Options(target="tensorrt" if target == "trt" else "cpu", budget=budget, calib_images=calib_images,
                           sensitivity_images=sensitivity_images, calib_method=method)
        shutil.rmtree(work / target, ignore_errors=True)  # nothing from an earlier run is measured as this one's
        try:
            export_model(Request(ckpt, work / target, ExportOptions(formats=("int8", "openvino")), OnnxOptions(), opts),
                         DataSource(data=data), progress=False)
        except CheckFailed as exc:
            refused[target] = str(exc)
            logging.warning(f"{target}: {exc}")
        logging.info(f"exported {target} placement in {time.time() - t0:.0f} s")
    return refused


def engine_files(ckpt: Path, work: Path) -> list[tuple[str, Path, RunnerSpec]]:
    out = []
    for label, folder, name, eng in ENGINES:
        path = ckpt if folder is None else work / folder / name
        if path.is_file():
            out.append((label, path, eng))
        else:
            logging.warning(f"{label}: {path} was not written (refused by its gate); left out")
    return out


def quality(engines, ckpt: Path, data: str | None) -> dict:
    ref = load(ckpt, device="cpu")
    ds = DataSource(data=data).open(ref.meta.dataset, ref.meta.dataset_root)
    rows = {}
    for label, path, eng in engines:
        if path == ckpt:
            continue
        runner = load(path, eng)
        report = compare_runners(runner, load(ckpt, device="cpu"), ds, progress=False)
        p = report["parity"]
        rows[label] = {"miou": p["model_miou"], "checkpoint_miou": p["reference_miou"], "delta_miou": p["delta_miou"],
                       "delta_miou_interval": p["delta_miou_interval"], "pixel_agreement": p["pixel_agreement"],
                       "precision": getattr(runner, "precision_report", None)}
        logging.info(f"{label}: mIoU {p['model_miou']:.2f} (delta {p['delta_miou']:+.2f}, 95% {p['delta_miou_interval']}), "
                     f"agreement {p['pixel_agreement']:.3f}%")
    return {"dataset": ds.info.name, "images": len(ds), **{"rows": rows}}


def latency(engines, iters: int, warmup: int, block: int, isolate: bool, data: str | None) -> dict:
    result = bench([str(p) for _, p, _ in engines], [e for _, _, e in engines], DataSource(data=data), iters=iters, warmup=warmup,
                   progress=False, isolate=isolate, block=block if isolate else None)
    labels = [label for label, _, _ in engines]
    base = result["results"][labels.index(BASELINE)]["model_only"]["p50_ms"]
    rows = {}
    for label, r in zip(labels, result["results"]):
        rows[label] = {"p50_ms": r["model_only"]["p50_ms"], "p90_ms": r["model_only"]["p90_ms"],
                       "e2e_p50_ms": r["end_to_end"]["p50_ms"], "e2e_p90_ms": r["end_to_end"]["p90_ms"],
                       "ratio_p50_to_ort_fp32": round(r["model_only"]["p50_ms"] / base, 3), "precision": r["ran"].get("precision_report")}
    return {"isolation": result["isolation"], "machine": result["machine"], "iters": iters, "warmup": warmup, "rows": rows}


def without_sample_names(report: dict) -> dict:
    """An INT8 report for the repository: the count of the images that decided, not their names
    (results files keep nothing of a data set but scores)."""
    subset = dict(report.get("subset", {}))
    if "images" in subset:
        subset["images_count"] = len(subset.pop("images"))
    return {**report, "subset": subset}


def table(entry: dict) -> str:
    lat, q = entry["latency"]["rows"], entry.get("quality", {}).get("rows", {})
    lines = ["| engine | p50 ms | p90 ms | ratio to ORT FP32 | e2e p50 ms | mIoU | change (95%) | agreement % |",
             "|---|---|---|---|---|---|---|---|"]
    for label, r in lat.items():
        qr = q.get(label)
        qs = (f"{qr['miou']:.2f} | {qr['delta_miou']:+.2f} ({qr['delta_miou_interval'][0]:+.2f}..{qr['delta_miou_interval'][1]:+.2f}) | "
              f"{qr['pixel_agreement']:.2f}") if qr else "| |"
        lines.append(f"| {label} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['ratio_p50_to_ort_fp32']:.2f} | {r['e2e_p50_ms']:.1f} | {qs} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", action="append", required=True, help="Trained checkpoint (repeatable).")
    ap.add_argument("--data", action="append", default=None,
                    help="Data root per --checkpoint, in order ('-' for the checkpoint's own or the embedded synthetic set).")
    ap.add_argument("--work", default="/tmp/edgeseg-cpu-int8")
    ap.add_argument("--budget", type=float, default=0.5)
    ap.add_argument("--calib-images", type=int, default=Int8Options.calib_images)
    ap.add_argument("--calib-method", default=Int8Options.calib_method)
    ap.add_argument("--sensitivity-images", type=int, default=Int8Options.sensitivity_images)
    ap.add_argument("--iters", type=int, default=120)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--block", type=int, default=40)
    ap.add_argument("--in-process-too", action="store_true")
    ap.add_argument("--skip-export", action="store_true", help="Reuse the exports already in --work.")
    ap.add_argument("--export-only", action="store_true", help="Export, then stop (measure later, on a quiet machine, with --skip-export).")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout, force=True)
    datas = args.data or ["-"] * len(args.checkpoint)
    if len(datas) != len(args.checkpoint):
        ap.error("give one --data per --checkpoint (or none)")
    entries = []
    for k, (ckpt, data) in enumerate(zip(args.checkpoint, datas)):
        ckpt, data = Path(ckpt), None if data == "-" else data
        work = Path(args.work) / f"{k}-{ckpt.parent.name}"
        work.mkdir(parents=True, exist_ok=True)
        refused_path = work / "refused.json"
        if not args.skip_export:
            refused = export_all(ckpt, work, data, args.budget, args.calib_images, args.sensitivity_images, args.calib_method)
            refused_path.write_text(json.dumps(refused))
        refused = json.loads(refused_path.read_text()) if refused_path.is_file() else {}
        if args.export_only:
            continue
        engines = engine_files(ckpt, work)
        meta = load(ckpt).meta
        entry = {"checkpoint": str(ckpt), "res": list(meta.res), "dataset": meta.dataset, "refused": refused,
                 "int8_reports": {t: without_sample_names(json.loads((work / t / "int8_report.json").read_text()))
                                  for t in ("trt", "cpu") if (work / t / "int8_report.json").is_file()}}
        entry["latency"] = latency(engines, args.iters, args.warmup, args.block, True, data)
        if args.in_process_too:
            entry["latency_in_process"] = latency(engines, args.iters, args.warmup, args.block, False, data)
        entry["quality"] = quality(engines, ckpt, data)
        print(f"\n{ckpt} ({meta.res[0]}x{meta.res[1]}, {meta.dataset})\n{table(entry)}\n", flush=True)
        entries.append(entry)
    out = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "command": " ".join(sys.argv), "entries": entries}
    if args.json:
        from edgeseg.fileio import write_json_atomic

        write_json_atomic(args.json, out)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
