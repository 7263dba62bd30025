"""The training data path, stage by stage: CPU milliseconds per sample (process time, one thread)
and samples per second per core, today's tap-cost path against the earlier dense one
(``TrainTransform.reference``), interleaved sample by sample in one run.

    OMP_NUM_THREADS=1 python benchmarks/data_path.py --json benchmarks/results/data_path.json

Sets: CamVid (480x360 frames, from ../shared/data/camvid when it is there) at 120x90 and 240x180,
with and without --upscale 2 targets; and a generated set of 2048x1024 PNG pairs (the synthetic
scenes drawn at that size, 19-class label PNGs; written once to --work) at 512x256, soft and
nearest, decoded from PNG and from the decoded cache (edgeseg data cache).
Stages: decode (image and label read), window (the window's taps), image (crop and resize of
the image, jitter), label (its resampling; soft targets in the sparse form a worker hands over),
collate (a batch of 8 stacked), and the whole transform as a loader worker calls it. The
reference path is timed whole (decode, transform, collate). Making sparse soft targets dense
happens on the training device (its cost there is given as "dense on the trainer").
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeseg.data import build_dataset  # noqa: E402
from edgeseg.data.transforms import Augment, TrainTransform, apply_jitter  # noqa: E402
from edgeseg.data.window import axis_taps, downsample_window_labels, nearest_index, nearest_window_labels, resize_window_image  # noqa: E402

BATCH = 8


def generated_set(root: Path, n: int, size=(2048, 1024)) -> Path:
    """``n`` 2048x1024 PNG pairs (synthetic scenes, labels spread over 19 ids) in the folder layout, made once."""
    from PIL import Image

    from edgeseg.data.synthetic import render_scene

    if (root / "classes.json").is_file() and len(list((root / "train" / "images").glob("*.png"))) >= n:
        return root
    for i in range(n):
        img, lab = render_scene(1000 + i, *size)
        spread = np.where(lab < 9, lab * 2 + (np.arange(size[0])[None, :] >= size[0] // 2), 255).astype(np.uint8)  # 18 ids + void
        (root / "train" / "images").mkdir(parents=True, exist_ok=True)
        (root / "train" / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / "train" / "images" / f"f{i:03d}.png")
        Image.fromarray(spread).save(root / "train" / "masks" / f"f{i:03d}.png")
    (root / "classes.json").write_text(json.dumps({"names": [f"c{k}" for k in range(19)], "ignore_index": 255}))
    return root


def cpu_ms(fn):
    t0 = time.process_time()
    out = fn()
    return out, (time.process_time() - t0) * 1000


def stages_new(tf: TrainTransform, sample, plan) -> dict:
    """The tap-cost path, stage by stage (the same calls TrainTransform.apply makes)."""
    image, label = torch.as_tensor(sample.image), torch.as_tensor(sample.label)
    H, W = label.shape
    t = {}
    (ys, xs), t["window"] = cpu_ms(lambda: (axis_taps(H, plan.y0, plan.height, tf.h, tf.kernel),
                                             axis_taps(W, plan.x0, plan.width, tf.w, tf.kernel, plan.flip)))
    img, t["image"] = cpu_ms(lambda: apply_jitter(resize_window_image(image, ys, xs), plan.jitter))

    def labels():
        if tf.label_mode == "nearest":
            return nearest_window_labels(label, nearest_index(H, plan.y0, plan.height, tf.th),
                                         nearest_index(W, plan.x0, plan.width, tf.tw, plan.flip))
        ty = axis_taps(H, plan.y0, plan.height, tf.th, tf.kernel)
        tx = axis_taps(W, plan.x0, plan.width, tf.tw, tf.kernel, plan.flip)
        return downsample_window_labels(label, ty, tx, tf.info.num_classes, tf.info.ignore_index, sparse=True)

    _, t["label"] = cpu_ms(labels)
    return t


def run_config(name: str, ds, res, target_res, mode: str, samples: int, seed: int = 0) -> dict:
    tf = TrainTransform(res, ds.info, mode, "area", Augment(), target_res=target_res)
    rows = {"new": [], "reference": []}
    batch_new, batch_ref = [], []
    for k in range(samples):
        i = k % len(ds)
        sample, decode = cpu_ms(lambda: ds[i])
        rng_seed = [seed, 0, k]
        for path in ("new", "reference") if k % 2 == 0 else ("reference", "new"):  # interleaved, alternating order
            if path == "new":
                plan = tf.plan(*sample.label.shape, np.random.default_rng(rng_seed))
                t = stages_new(tf, sample, plan)
                out, t["transform"] = cpu_ms(lambda: tf(sample, np.random.default_rng(rng_seed), sparse=True))  # as a worker does
                batch_new.append(out)
            else:
                out, total = cpu_ms(lambda: tf.reference(sample, np.random.default_rng(rng_seed)))
                t = {"transform": total}
                batch_ref.append(out)
            t["decode"] = decode
            rows[path].append(t)
        for path, batch in (("new", batch_new), ("reference", batch_ref)):
            if len(batch) == BATCH:
                from edgeseg.trainer.data import collate

                _, ms = cpu_ms(lambda: collate(batch))
                rows[path][-1]["collate_batch"] = ms
                batch.clear()
    out = {"config": name, "res": list(res), "target_res": list(target_res or res), "labels": mode, "samples": samples}
    for path, ts in rows.items():
        keys = sorted({k for t in ts for k in t})
        means = {k: round(float(np.mean([t[k] for t in ts if k in t])), 3) for k in keys}
        if "collate_batch" in means:
            means["collate"] = round(means.pop("collate_batch") / BATCH, 3)
        total = means["decode"] + means["transform"] + means.get("collate", 0.0)
        out[path] = {"cpu_ms_per_sample": means, "total_ms": round(total, 2), "samples_per_s_per_core": round(1000 / total, 1)}
    out["speedup_transform"] = round(out["reference"]["cpu_ms_per_sample"]["transform"] / out["new"]["cpu_ms_per_sample"]["transform"], 2)
    out["speedup_total"] = round(out["reference"]["total_ms"] / out["new"]["total_ms"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--camvid", default=str(ROOT.parent / "shared" / "data" / "camvid"))
    ap.add_argument("--work", default="/tmp/edgeseg-data-path")
    ap.add_argument("--samples", type=int, default=24)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    configs = []
    if Path(args.camvid, "train").is_dir():
        cam = build_dataset("camvid", args.camvid, "train")
        configs += [("camvid 480x360 -> 120x90", cam, (120, 90), None, "soft"),
                    ("camvid 480x360 -> 120x90, targets 240x180 (--upscale 2)", cam, (120, 90), (240, 180), "soft"),
                    ("camvid 480x360 -> 240x180", cam, (240, 180), None, "soft"),
                    ("camvid 480x360 -> 240x180, targets 480x360 (--upscale 2)", cam, (240, 180), (480, 360), "soft")]
    big_root = generated_set(Path(args.work) / "png2048", args.samples)
    big = build_dataset("folder", big_root, "train")
    configs += [("2048x1024 PNG -> 512x256, soft", big, (512, 256), None, "soft"),
                ("2048x1024 PNG -> 512x256, nearest", big, (512, 256), None, "nearest"),
                ("2048x1024 PNG -> 512x256, targets 1024x512 (--upscale 2)", big, (512, 256), (1024, 512), "soft")]
    cached = _cached(big, Path(args.work) / "png2048-cache")
    if cached is not None:
        configs += [("2048x1024 decoded cache -> 512x256, soft", cached, (512, 256), None, "soft")]
    rows = []
    for name, ds, res, target, mode in configs:
        row = run_config(name, ds, res, target, mode, args.samples)
        rows.append(row)
        n, r = row["new"], row["reference"]
        print(f"{name}: new {n['total_ms']:.1f} ms/sample ({n['samples_per_s_per_core']}/s), reference {r['total_ms']:.1f} ms "
              f"({r['samples_per_s_per_core']}/s); transform x{row['speedup_transform']}, total x{row['speedup_total']}; "
              f"new stages {n['cpu_ms_per_sample']}", flush=True)
    result = {"rows": rows, "machine": f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}",
              "cpu": _cpu_model(), "torch": torch.__version__, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "command": "python " + " ".join(sys.argv)}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}")


def _cached(ds, cache_dir: Path):
    """The generated set read through its decoded cache (built here when missing), or None before the cache exists."""
    try:
        from edgeseg.data.cache import build_cache, cached_dataset
    except ImportError:
        return None
    from edgeseg.errors import DataError

    try:
        return cached_dataset(ds, cache_dir)
    except DataError:  # missing, or made for another --samples: this benchmark's own folder, made again
        import shutil

        shutil.rmtree(cache_dir, ignore_errors=True)
        build_cache(ds, cache_dir, progress=False)
        return cached_dataset(ds, cache_dir)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
