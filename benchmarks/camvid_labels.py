"""CamVid: soft vs nearest labels at low training resolution, several seeds.

Trains Lite0 (ImageNet weights) at each --res for each label mode and seed,
then scores the *last* checkpoint (no selection on val) on CamVid val at native
480x360. One JSON line per run goes to --results.

    python benchmarks/camvid_labels.py --res 120x90 --seeds 0,1,2 --epochs 50
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from _camvid import thin_mean

from edgeseg.tasks.evaluate import evaluate_model
from edgeseg.trainer import TrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/camvid")
    ap.add_argument("--res", default="120x90")
    ap.add_argument("--modes", default="soft,nearest")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--model", default="lite0-lraspp")
    ap.add_argument("--kernel", default="area")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--train-limit", type=int, default=None)
    ap.add_argument("--extra", default="", help="extra TrainConfig fields as JSON")
    ap.add_argument("--tag", default="")
    ap.add_argument("--work", default="/tmp/edgeseg-bench")
    ap.add_argument("--results", default="benchmarks/results/camvid_labels.jsonl")
    ap.add_argument("--resume", action="store_true", help="continue each run from its last.pt (train_minutes then counts this part only)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout, force=True)
    w, h = (int(v) for v in args.res.split("x"))
    extra = json.loads(args.extra) if args.extra else {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for mode in args.modes.split(","):
            name = f"{args.model}-{args.res}-{mode}-{args.kernel}-s{seed}{('-' + args.tag) if args.tag else ''}"
            out = Path(args.work) / name
            t0 = time.time()
            cfg = TrainConfig(out=str(out), res=(w, h), dataset="camvid", data=args.data, labels=mode, kernel=args.kernel,
                              model=args.model, pretrained="imagenet", epochs=args.epochs, batch=args.batch, lr=args.lr,
                              seed=seed, val_every=10, progress=False, exist_ok=not args.resume, resume=args.resume, train_limit=args.train_limit, **extra)
            if train(cfg).get("interrupted"):  # stopped (Ctrl-C, SIGTERM): not the protocol's run
                print(f"{name}: interrupted; no row written (continue it with --resume)", flush=True)
                return
            result = evaluate_model(str(out / "last.pt"), progress=False)
            row = {
                "model": args.model, "res": [w, h], "labels": mode, "kernel": args.kernel, "seed": seed,
                "epochs": args.epochs, "batch": args.batch, "lr": args.lr, "train_limit": args.train_limit, "tag": args.tag,
                "extra": extra, "miou": result["miou"], "pixel_acc": result["pixel_acc"], "per_class": result["per_class"],
                "thin_mean": thin_mean(result["per_class"]), "boundary_iou": result["boundary_iou"]["mean"],
                "boundary_per_class": result["boundary_iou"]["per_class"],
                "train_minutes": round((time.time() - t0) / 60, 1), "resumed": args.resume,
                "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
                "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                "command": "python benchmarks/camvid_labels.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in (None, "", False)),
            }
            with open(args.results, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(f"{name}: mIoU {row['miou']:.2f} thin {row['thin_mean']:.2f}", flush=True)


if __name__ == "__main__":
    main()
