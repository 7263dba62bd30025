"""Does a trained CamVid model hold evidence for the rare classes? A diagnostic, not a method.

For each checkpoint, on CamVid val at native resolution (the eval path's pre-processing, scores
up-sampled bilinearly): the predicted probability of Pole on pixels labelled Pole, and mIoU when
the arg-max is taken over logits shifted by -tau * log(prior), the prior being each class's
share of the training labels (tau = 0: the plain model). A model that holds the evidence but
under-commits gains from a shift; one that does not localise the class gains nothing.

    python benchmarks/prior_shift.py --data ../shared/data/camvid --json benchmarks/results/prior_shift.jsonl CKPT [CKPT ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from _camvid import thin_mean

from edgeseg import runtime
from edgeseg.data import build_dataset
from edgeseg.data.label_stats import class_pixel_counts
from edgeseg.metrics import ConfusionMatrix
from edgeseg.runtime.processing import Preprocess, channel_argmax, upsample_scores

TAUS = (0.0, 0.25, 0.5, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--data", default="../shared/data/camvid")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    train_ds = build_dataset("camvid", args.data, "train")
    counts = class_pixel_counts(train_ds, progress=False).astype(np.float64)
    log_prior = torch.tensor(np.log(np.maximum(counts, 1) / counts.sum()), dtype=torch.float32).view(1, -1, 1, 1)
    val = build_dataset("camvid", args.data, "val")
    names = list(val.info.class_names)
    pole = names.index("Pole")
    for ckpt in args.checkpoints:
        runner = runtime.load(ckpt, device="cpu").activate()
        pre = Preprocess.from_meta(runner.meta)
        cms = {t: ConfusionMatrix(len(names)) for t in TAUS}
        pole_prob = []
        with runner:
            for i in range(len(val)):
                s = val[i]
                logits = torch.from_numpy(runner.infer(pre([s.image]))["logits"])
                logits = upsample_scores(logits, s.label.shape)  # as the eval path does
                label = torch.from_numpy(s.label)
                pole_prob.append(logits.softmax(1)[0, pole][label == pole].numpy())
                for t in TAUS:
                    cms[t].update(label, channel_argmax(logits - t * log_prior)[0])
        p = np.concatenate(pole_prob)
        row = {"checkpoint": ckpt, "run": Path(ckpt).parent.name,
               "pole_prob_on_pole": {"mean": float(p.mean()), "p50": float(np.median(p)), "p90": float(np.quantile(p, 0.9)),
                                     "share_above_0.2": float((p > 0.2).mean())},
               "shift": {}}
        for t in TAUS:
            sm = cms[t].summary(names)
            row["shift"][str(t)] = {"miou": sm["miou"], "thin": thin_mean(sm["per_class"]),
                                    "pole": sm["per_class"]["Pole"], "per_class": sm["per_class"]}
        print(f"{row['run']}: P(Pole) on Pole pixels mean {p.mean():.3f}, p90 {np.quantile(p, 0.9):.3f}; "
              + ", ".join(f"tau {t}: mIoU {row['shift'][str(t)]['miou']:.2f} Pole {row['shift'][str(t)]['pole']:.2f}" for t in TAUS),
              flush=True)
        if args.json:
            with open(args.json, "a") as fh:
                fh.write(json.dumps({**row, "command": "python benchmarks/prior_shift.py " + " ".join(sys.argv[1:])}) + "\n")


if __name__ == "__main__":
    main()
