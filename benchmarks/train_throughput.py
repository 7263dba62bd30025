"""Training throughput at 512x256: soft labels vs nearest, side by side in one run.

Each round trains ``--steps`` optimiser steps with soft labels, then the same
with nearest labels (same model, data and augmentation), on the synthetic set
(1024x512 -> 512x256). Images per second include data preparation (scene
generation, augmentation, label down-sampling) and the training step. The
data-only cost of each label mode is timed separately on the same samples.

    python benchmarks/train_throughput.py --rounds 4 --json benchmarks/results/train_throughput.json
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

from edgeseg.data.synthetic import Synthetic
from edgeseg.data.transforms import Augment, TrainTransform
from edgeseg.models import ModelConfig, build_model
from edgeseg.runtime.processing import Preprocess
from edgeseg.trainer.losses import compute_loss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--model", default="lite0-lraspp")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", default="off", choices=["off", "bf16", "fp16"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    ds = Synthetic("train")
    res = (512, 256)
    tfs = {mode: TrainTransform(res, ds.info, mode, "area", Augment()) for mode in ("soft", "nearest")}
    model = build_model(ModelConfig(args.model, ds.info.num_classes)).to(device).to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    norm = Preprocess(res).normalise
    amp = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    per_image = {m: [] for m in tfs}
    data_ms = {m: [] for m in tfs}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    k = 0
    for r in range(args.rounds + 1):
        for mode, tf in tfs.items():
            t0 = time.perf_counter()
            n = 0
            for _ in range(args.steps):
                rng = np.random.default_rng(k)
                samples = [ds[(k * args.batch + i) % len(ds)] for i in range(args.batch)]
                td = time.perf_counter()
                items = [tf(s, rng) for s in samples]
                data_ms[mode].append((time.perf_counter() - td) * 1000 / args.batch)
                x = norm(torch.stack([it[0] for it in items]).to(device)).contiguous(memory_format=torch.channels_last)
                target = {key: torch.stack([it[1][key] for it in items]).to(device) for key in items[0][1]}
                with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                    logits = model(x)
                loss = compute_loss(logits, target)
                opt.zero_grad()
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                n += args.batch
            if device.type == "cuda":
                torch.cuda.synchronize()
            if r:  # round 0 warms up
                per_image[mode].append((time.perf_counter() - t0) / n)
            k += 1
    ips = {m: 1.0 / statistics.median(v) for m, v in per_image.items()}
    result = {
        "res": list(res), "batch": args.batch, "model": args.model, "device": str(device), "amp": args.amp,
        "rounds": args.rounds, "steps_per_round": args.steps, "threads": torch.get_num_threads(),
        "img_per_s": {m: round(v, 3) for m, v in ips.items()},
        "soft_cost_vs_nearest": round(ips["nearest"] / ips["soft"] - 1, 4),
        "data_ms_per_image_median": {m: round(statistics.median(v), 2) for m, v in data_ms.items()},
        "peak_gpu_mem_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.type == "cuda" else None,
        "machine": (torch.cuda.get_device_name() if device.type == "cuda" else f"{platform.processor() or platform.machine()}, {platform.system()}")
        + f", torch {torch.__version__}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
