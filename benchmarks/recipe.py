"""The README's training recipe as one command: trains exactly what the README recommends at a
resolution (and, where the recipe distils from a teacher and none is given, that teacher first),
evaluates the result at native resolution, and prints the final checkpoint's path on its last line.

    python benchmarks/recipe.py --res 120x90 --seed 0 --data ../shared/data/camvid --out runs/recipe-120x90-s0
    python benchmarks/recipe.py --res 240x180 --seed 1 --data DIR --out DIR --teacher runs/teacher/last.pt

The options are the README's (RESULTS.md says how each was chosen); --dataset takes any data set
kind edgeseg reads (camvid by default).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeseg.data import DataSource  # noqa: E402
from edgeseg.tasks.evaluate import evaluate_model  # noqa: E402
from edgeseg.trainer import TrainConfig, train  # noqa: E402

# The recipe per training resolution: TrainConfig fields. Changed only with RESULTS.md's evidence.
RECIPES = {
    (120, 90): dict(model="lite0-fpn", upscale=2, class_weights="sqrt", epochs=50),
    (240, 180): dict(model="lite0-fpn", upscale=2, class_weights="sqrt", epochs=50),
}
# The teacher the recipe distils from (trained at the data set's native resolution) and how; None: no teacher.
TEACHER = None
DISTILL = {}


def teacher_config(data: str, dataset: str, out: Path, seed: int, native: tuple[int, int]) -> TrainConfig:
    return TrainConfig(out=str(out), res=native, dataset=dataset, data=data, seed=seed, pretrained="imagenet", progress=False,
                       exist_ok=True, val_every=10, **TEACHER)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--res", required=True, choices=[f"{w}x{h}" for w, h in RECIPES])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", required=True)
    ap.add_argument("--dataset", default="camvid")
    ap.add_argument("--out", required=True)
    ap.add_argument("--teacher", default=None, help="A teacher checkpoint (or teacher-label folder) for recipes that distil.")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    res = tuple(int(v) for v in args.res.split("x"))
    out = Path(args.out)
    t0 = time.time()
    extra = {}
    if TEACHER is not None:
        teacher = args.teacher
        if teacher is None:
            from edgeseg.data import build_dataset
            from edgeseg.data.base import image_size

            ds = build_dataset(args.dataset, args.data, "train")
            native = image_size(ds.sample_files(0)[0])
            tcfg = teacher_config(args.data, args.dataset, out / "teacher", args.seed, native)
            print(f"training the recipe's teacher at {native[0]}x{native[1]} into {tcfg.out}", flush=True)
            if train(tcfg).get("interrupted"):
                raise SystemExit(f"the teacher's training was interrupted; continue it with: edgeseg train --out {tcfg.out} --resume")
            teacher = str(Path(tcfg.out) / "last.pt")
        extra = dict(teacher=teacher, **DISTILL)
    cfg = TrainConfig(out=str(out / "student"), res=res, dataset=args.dataset, data=args.data, seed=args.seed, pretrained="imagenet",
                      device=args.device, progress=False, exist_ok=True, val_every=10, **RECIPES[res], **extra)
    if train(cfg).get("interrupted"):  # no score and no path of a model the recipe did not finish
        raise SystemExit(f"the recipe's training was interrupted; continue it with: edgeseg train --out {cfg.out} --resume")
    last = Path(cfg.out) / "last.pt"
    result = evaluate_model(last, source=DataSource(args.dataset, args.data, "val"), progress=False)
    summary = {"res": list(res), "seed": args.seed, "miou": result["miou"], "boundary_iou": result["boundary_iou"]["mean"],
               "per_class": result["per_class"], "minutes": round((time.time() - t0) / 60, 1), "config": cfg.to_dict()}
    (out / "recipe.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"mIoU {result['miou']:.2f}, boundary IoU {summary['boundary_iou']:.2f} on {args.dataset} val at native resolution")
    print(last)


if __name__ == "__main__":
    main()
