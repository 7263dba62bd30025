"""CamVid: the seed papers' methods against the plain model at the same resolution.

Methods (each trained from ImageNet Lite0 weights with soft labels, scored on
CamVid val at native 480x360 from the *last* checkpoint):

  dupsample        lite0-dupsample (r=16, C'=64) vs lite0-lraspp
  msa              lite0-lraspp-msa, scales {0.5, 1.0} in training and inference
  class-uniform    lite0-lraspp with --class-uniform 0.5
  fewlabel         10% of CamVid train (fixed subset): plain, and with 20 epochs of
                   pixel contrastive pretraining first
  autolabel        10% labels plus auto-labels (threshold 0.9, top-2 soft) of the other
                   90% from the plain 10% model as teacher

The plain full-data baseline is the soft-label row of camvid_labels.py at the same
resolution, epochs and seeds.

    python benchmarks/camvid_methods.py --method dupsample --res 120x90 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from _camvid import thin_mean

from edgeseg.data import build_dataset
from edgeseg.runtime.spec import RunnerSpec
from edgeseg.tasks.evaluate import evaluate_model
from edgeseg.trainer import TrainConfig, train
from edgeseg.trainer.data import fraction_indices


def run(name, cfg_kwargs, args, seed, extra_row=None):
    out = Path(args.work) / name
    t0 = time.time()
    cfg = TrainConfig(out=str(out), dataset="camvid", data=args.data, pretrained="imagenet", seed=seed, val_every=10,
                      progress=False, exist_ok=True, batch=8, lr=2e-3, **cfg_kwargs)
    if train(cfg).get("interrupted"):  # stopped (Ctrl-C, SIGTERM): not the protocol's run, so no row
        raise SystemExit(f"{name}: interrupted; no row written (continue it with --resume)")
    result = evaluate_model(str(out / "last.pt"), progress=False)
    row = {
        "method": args.method, "variant": name.rsplit("-s", 1)[0], "seed": seed, "res": list(cfg.res), "epochs": cfg.epochs,
        "model": cfg.model, "miou": result["miou"], "pixel_acc": result["pixel_acc"], "per_class": result["per_class"],
        "thin_mean": thin_mean(result["per_class"]), "train_minutes": round((time.time() - t0) / 60, 1),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "command": f"python benchmarks/camvid_methods.py --method {args.method} --res {args.res} --seeds {args.seeds} --epochs {args.epochs}",
        **(extra_row or {}),
    }
    with open(args.results, "a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(f"{name}: mIoU {row['miou']:.2f} thin {row['thin_mean']:.2f}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", required=True, choices=["dupsample", "msa", "class-uniform", "fewlabel", "autolabel"])
    ap.add_argument("--data", default="../shared/data/camvid")
    ap.add_argument("--res", default="120x90")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--work", default="/tmp/edgeseg-bench")
    ap.add_argument("--results", default="benchmarks/results/camvid_methods.jsonl")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout, force=True)
    res = tuple(int(v) for v in args.res.split("x"))
    base = {"res": res, "epochs": args.epochs}
    for seed in [int(s) for s in args.seeds.split(",")]:
        tag = f"{args.res}-s{seed}"
        if args.method == "dupsample":
            run(f"dupsample-{tag}", {**base, "model": "lite0-dupsample", "model_options": (("stride", 16), ("channels", 64))}, args, seed)
        elif args.method == "msa":
            run(f"msa-{tag}", {**base, "model": "lite0-lraspp-msa"}, args, seed)
        elif args.method == "class-uniform":
            run(f"class-uniform-{tag}", {**base, "class_uniform": 0.5}, args, seed)
        elif args.method == "fewlabel":
            few = {**base, "train_fraction": 0.1, "epochs": 100}
            run(f"fewlabel-plain-{tag}", few, args, seed)
            run(f"fewlabel-contrastive-{tag}", {**few, "contrastive_epochs": 20}, args, seed)
        else:  # autolabel
            few = {**base, "train_fraction": 0.1, "epochs": 100}
            teacher = Path(args.work) / f"fewlabel-plain-{tag}" / "last.pt"
            if not teacher.is_file():
                teacher = run(f"fewlabel-plain-{tag}", few, args, seed) / "last.pt"
            ds = build_dataset("camvid", args.data, "train")
            keep = set(fraction_indices(len(ds), few["train_fraction"], TrainConfig.subset_seed))
            unlabeled = Path(args.work) / "camvid-unlabeled-90"
            unlabeled.mkdir(parents=True, exist_ok=True)
            for i in range(len(ds)):
                if i not in keep:
                    src = ds.pairs[i][0].resolve()
                    link = unlabeled / src.name
                    if not link.exists():
                        os.symlink(src, link)
            from edgeseg.tasks.autolabel import autolabel

            labels = Path(args.work) / f"autolabels-{tag}"
            summary = autolabel(str(teacher), [unlabeled], labels, threshold=0.9, spec=RunnerSpec(device="cpu"), soft=True, exist_ok=True,
                                progress=False)
            run(f"autolabel-student-{tag}", {**base, "train_fraction": 0.1, "extra_data": (str(labels),)}, args, seed,
                {"autolabel": summary})


if __name__ == "__main__":
    main()
