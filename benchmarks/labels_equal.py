"""Native labels from today's post-processing against the earlier one, over a whole data split.

For each model (a checkpoint or an exported file; ``--tta flip`` adds that variant of each
checkpoint), every val image runs once through the model and its outputs go through both
post-processings: ``native_labels`` (the low-resolution arg-max with the full interpolation
only where neighbours disagree) and ``scores_to_labels_reference`` (every class plane
up-sampled, then the arg-max). Counts differing pixels, and of those how many are ties of the
interpolated scores to float32 precision (the only allowed difference: within NEAR of their
magnitude, where the order of float32 operations decides) and how many exact ties. Also the share of 2x2 blocks that needed
the full interpolation.

    python benchmarks/labels_equal.py --data ../shared/data/camvid --model run120/last.pt --tta flip \\
        --json benchmarks/results/labels_equal_camvid.json
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone

import numpy as np
import torch
import torch.nn.functional as F

from edgeseg import runtime
from edgeseg.data import DataSource
from edgeseg.runtime.processing import NEAR, Preprocess, native_labels, scores_to_labels_reference
from edgeseg.runtime.spec import RunnerSpec


def compare(model: str, spec: RunnerSpec, ds) -> dict:
    runner = runtime.load(model, spec)
    meta = runner.meta
    pre = Preprocess.from_meta(meta)
    differ = ties = exact = pixels = mixed_blocks = blocks = 0
    out_size = None
    with runner:
        for i in range(len(ds)):
            image = ds[i].image
            size = image.shape[:2]
            out = runner.infer(pre([image]))
            new = native_labels(out, [size])[0].to(torch.int64)
            logits = torch.from_numpy(out["logits"][:1]).float()
            out_size = list(logits.shape[-2:])
            ref = scores_to_labels_reference(logits, size)[0]
            d = new != ref
            pixels += new.numel()
            if bool(d.any()):
                up = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)[0]
                y, x = torch.nonzero(d, as_tuple=True)
                differ += int(d.sum())
                a, b = up[new[y, x], y, x], up[ref[y, x], y, x]
                exact += int((a == b).sum())
                ties += int(((a - b).abs() <= NEAR * up[:, y, x].abs().amax(0)).sum())
            low = logits[0].max(0).indices.numpy()
            lp = np.pad(low, ((0, 1), (0, 1)), mode="edge")
            c = lp[:-1, :-1]
            mixed_blocks += int(((c != lp[1:, :-1]) | (c != lp[:-1, 1:]) | (c != lp[1:, 1:])).sum())
            blocks += low.size
    return {"model": model, "tta": spec.tta, "kind": _kind(meta), "scores_hw": out_size, "images": len(ds),
            "pixels": pixels, "differing_pixels": differ, "of_which_float32_ties": ties, "of_which_exact_ties": exact,
            "mixed_block_share": round(mixed_blocks / max(blocks, 1), 4)}


def _kind(meta) -> str:
    cfg = meta.model
    parts = [cfg.name]
    if getattr(cfg, "upscale", 1) and cfg.upscale > 1:
        parts.append(f"upscale {cfg.upscale}")
    if getattr(cfg, "refine", "none") not in (None, "none"):
        parts.append(f"refine {cfg.refine}")
    return ", ".join(parts) + f" at {meta.res[0]}x{meta.res[1]}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--tta", choices=("none", "flip"), default="none", help="flip: also each checkpoint with --tta flip")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for model in args.model:
        ds = None
        for tta in ("none", "flip") if args.tta == "flip" and model.endswith(".pt") else ("none",):
            spec = RunnerSpec(device="cpu", threads=args.threads, tta=tta)
            if ds is None:
                ds = DataSource(data=args.data, split=args.split).open(runtime.load(model, spec).meta.dataset)
            row = compare(model, spec, ds)
            rows.append(row)
            print(f"{model} ({row['kind']}, tta {tta}): {row['differing_pixels']} of {row['pixels']} pixels differ, "
                  f"{row['of_which_float32_ties']} of them float32 ties ({row['of_which_exact_ties']} exact); {100 * row['mixed_block_share']:.2f}% of 2x2 blocks mixed")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
                       "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "results": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
