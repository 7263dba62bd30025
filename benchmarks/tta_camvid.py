"""Flip test-time augmentation on trained CamVid checkpoints: val mIoU at native resolution with
and without ``--tta flip`` (the same eval path as ``edgeseg eval``), per checkpoint.

    python benchmarks/tta_camvid.py --data ../shared/data/camvid --json benchmarks/results/tta_camvid.jsonl CKPT [CKPT ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _camvid import thin_mean

from edgeseg.data import DataSource
from edgeseg.runtime.spec import RunnerSpec
from edgeseg.tasks.evaluate import evaluate_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--data", default="../shared/data/camvid")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    for ckpt in args.checkpoints:
        row = {"checkpoint": ckpt, "run": Path(ckpt).parent.name}
        for tta in ("none", "flip"):
            r = evaluate_model(ckpt, RunnerSpec(device="cpu", tta=tta), DataSource("camvid", args.data, "val"), progress=False)
            pc = r["per_class"]
            row[tta] = {"miou": r["miou"], "thin": round(thin_mean(pc), 4), "pole": pc["Pole"], "per_class": pc}
        row["delta_miou"] = round(row["flip"]["miou"] - row["none"]["miou"], 4)
        row["delta_thin"] = round(row["flip"]["thin"] - row["none"]["thin"], 4)
        print(f"{row['run']}: mIoU {row['none']['miou']:.2f} -> {row['flip']['miou']:.2f} ({row['delta_miou']:+.2f}), "
              f"thin {row['none']['thin']:.2f} -> {row['flip']['thin']:.2f}, Pole {row['none']['pole']:.2f} -> {row['flip']['pole']:.2f}", flush=True)
        if args.json:
            with open(args.json, "a") as fh:
                fh.write(json.dumps({**row, "command": " ".join(sys.argv)}) + "\n")


if __name__ == "__main__":
    main()
