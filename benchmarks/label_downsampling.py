"""Soft-label down-sampling speed: edgeseg vs one-hot + F.interpolate, side by side.

Cityscapes-sized labels (2048x1024, 19 classes, 2% void) are down-sampled to
512x256 (integer ratio 4) and to 600x300 (ratio 3.41) with each kernel. The
labels are street scenes from the synthetic generator rendered at 2048x1024,
their 9 classes spread over the 19 Cityscapes ids. Each round times every
method once, interleaved, so machine noise hits them alike; medians are
reported with the speed-up as a ratio measured in the same run.

Baselines:
  scatter one-hot   a preallocated float one-hot filled by scatter_, then
                    F.interpolate (area, or bilinear with antialias=True):
                    the fastest one-hot path we could write;
  F.one_hot         F.one_hot(label).permute(2, 0, 1).float() + F.interpolate,
                    the usual idiom (as in the paper's public code).
For area at a non-integer ratio F.interpolate uses adaptive average pooling,
which is not the exact box filter: it is timed as the nearest PyTorch equivalent.

    python benchmarks/label_downsampling.py --rounds 15 --json benchmarks/results/label_downsampling.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import datetime, timezone

import numpy as np
import torch
import torch.nn.functional as F

from edgeseg.data import downsample_labels
from edgeseg.data.synthetic import render_scene

C = 19
SIZE = (1024, 2048)  # H, W
TARGETS = {"512x256": (256, 512), "600x300": (300, 600)}
# synthetic classes -> Cityscapes train ids (sky, building, road, sidewalk, vegetation, car, person, pole, traffic sign)
TO_CITYSCAPES = np.array([10, 2, 0, 1, 8, 13, 11, 5, 7] + [255] * 247, dtype=np.uint8)


def labels(n: int) -> list[torch.Tensor]:
    out = []
    for i in range(n):
        _, lab = render_scene(1000 + i, width=SIZE[1], height=SIZE[0])
        out.append(torch.from_numpy(TO_CITYSCAPES[lab]))
    return out


def onehot_scatter(lab: torch.Tensor, size, kernel: str) -> torch.Tensor:
    valid = lab != 255
    oh = torch.zeros(C, *lab.shape)
    oh.scatter_(0, torch.where(valid, lab, 0).long()[None], valid[None].float())
    return _interp(oh, size, kernel)


def onehot_functional(lab: torch.Tensor, size, kernel: str) -> torch.Tensor:
    oh = F.one_hot(torch.where(lab == 255, C, lab).long(), C + 1).permute(2, 0, 1)[:C].float()
    return _interp(oh, size, kernel)


def _interp(oh, size, kernel):
    if kernel == "area":
        return F.interpolate(oh[None], size=size, mode="area")[0]
    return F.interpolate(oh[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    labs = labels(args.images)
    methods = {
        "edgeseg": lambda lab, size, k: downsample_labels(lab, size, C, 255, "soft", k)[0],
        "scatter one-hot + interpolate": onehot_scatter,
        "F.one_hot + interpolate": onehot_functional,
    }
    rows = []
    for res, size in TARGETS.items():
        for kernel in ("area", "bilinear"):
            times = {m: [] for m in methods}
            for r in range(args.rounds + 1):
                for name, fn in methods.items():
                    lab = labs[r % len(labs)]
                    t0 = time.perf_counter()
                    fn(lab, size, kernel)
                    if r:  # first round warms caches and allocators
                        times[name].append(time.perf_counter() - t0)
            med = {m: statistics.median(t) for m, t in times.items()}
            mpix = SIZE[0] * SIZE[1] / 1e6
            row = {"target": res, "kernel": kernel,
                   "median_ms": {m: round(v * 1000, 2) for m, v in med.items()},
                   "mpixel_per_s": {m: round(mpix / v, 1) for m, v in med.items()},
                   "speedup_vs_scatter": round(med["scatter one-hot + interpolate"] / med["edgeseg"], 2),
                   "speedup_vs_F_one_hot": round(med["F.one_hot + interpolate"] / med["edgeseg"], 2)}
            rows.append(row)
            print(f"{res:8s} {kernel:8s} edgeseg {row['median_ms']['edgeseg']:7.1f} ms ({row['mpixel_per_s']['edgeseg']:6.1f} Mpx/s) | "
                  f"scatter one-hot {row['median_ms']['scatter one-hot + interpolate']:7.1f} ms (x{row['speedup_vs_scatter']}) | "
                  f"F.one_hot {row['median_ms']['F.one_hot + interpolate']:7.1f} ms (x{row['speedup_vs_F_one_hot']})", flush=True)
    result = {"input": "2048x1024, 19 classes", "rounds": args.rounds, "threads": args.threads,
              "machine": f"{platform.processor() or platform.machine()}, {platform.system()}, torch {torch.__version__}",
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "rows": rows}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
