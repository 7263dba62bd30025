"""The prepared GPU check: one run on a machine with one NVIDIA GPU writes one JSON.

For the GPU machines this project can borrow: PyTorch with CUDA, onnx and onnxruntime (CPU),
no TensorRT, no onnxruntime-gpu, no package registry. Run from the repository root (edgeseg need
not be installed):

    PYTHONPATH=. python benchmarks/gpu_check.py --json gpu_check.json          # about 5 minutes
    python benchmarks/gpu_check.py --dry-run --json /tmp/gpu_check.json        # CPU, tiny sizes: CI runs this

Steps, each recorded with its result or the reason it was skipped or failed (one failing step
does not stop the others):
1. training throughput and peak GPU memory at 512x256, batch 16, on synthetic data:
   FP32, AMP bf16 and AMP fp16, each in NCHW and channels_last;
2. eval parity of one model on CUDA against the CPU (pixel agreement on synthetic val images);
3. one DistributedDataParallel step in one process over NCCL;
4. training fed by the real loader (TrainingSet, make_loader): the generated 2048x1024 PNG set
   at 512x256 (decoded from PNG and from its decoded cache) and the synthetic set, with
   --augment-on worker and device: images/s, loader wait per step, GPU utilisation;
5. where `tensorrt` imports: `pytest -m gpu`, FP16 and INT8 engine builds with their parity
   against the checkpoint and their latency;
6. the README's CamVid recipe models (lite0-fpn, --upscale 2, soft targets at twice the input
   resolution) at 120x90 and 240x180, batch 8: optimiser steps per second in FP32 and AMP bf16,
   and the minutes a recipe run would take at that rate (367 training images per epoch; data
   loading not included: CamVid is not on the GPU machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402


def step(results: dict, name: str, fn, *args, **kw):
    """Run one check; record its result, or why it failed, under ``name``."""
    t0 = time.perf_counter()
    try:
        results[name] = {"status": "ok", **fn(*args, **kw)}
    except SkipStep as exc:
        results[name] = {"status": "skipped", "reason": str(exc)}
    except Exception as exc:  # a broken step is a finding, not the end of the check
        results[name] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:500],
                         "where": traceback.format_exc().strip().splitlines()[-3:]}
    results[name]["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"{name}: {results[name]['status']} ({results[name]['seconds']} s)", flush=True)


class SkipStep(Exception):
    pass


def _model(num_classes: int, res, name: str = "lite0-lraspp"):
    from edgeseg.models import ModelConfig, build_model

    torch.manual_seed(0)
    return build_model(ModelConfig(name, num_classes, res=tuple(res)))


def _batch(n: int, res, num_classes: int, device):
    w, h = res
    x = torch.randn(n, 3, h, w, device=device)
    mass = torch.rand(n, num_classes, h, w, device=device)
    valid = mass.sum(1)
    return x, {"mass": mass, "valid": valid}


def _timed_steps(model, x, target, dev, dtype, memory, steps: int, warmup: int, lr: float) -> dict:
    """``warmup`` then ``steps`` optimisation steps (forward, soft CE, backward, AdamW) on one batch:
    images/s, the last loss and the peak GPU memory of the timed steps."""
    from edgeseg.trainer.epoch import train_one_epoch
    from edgeseg.trainer.schedule import LRSchedule

    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    sched = LRSchedule(opt, lr, steps + warmup, "poly", 0)
    scaler = torch.amp.GradScaler(dev.type, enabled=dtype == torch.float16)
    kw = dict(device=dev, normalise=lambda t: t.contiguous(memory_format=memory), autocast_dtype=dtype if dev.type == "cuda" else None)
    train_one_epoch(model, [(x, target)] * warmup, opt, sched, scaler, **kw)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    stats = train_one_epoch(model, [(x, target)] * steps, opt, sched, scaler, **kw)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return {"img_per_s": round(x.shape[0] * steps / (time.perf_counter() - t0), 2), "loss": round(stats["loss"], 4),
            "peak_mem_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if dev.type == "cuda" else None}


DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def train_throughput(device: str, res, batch: int, steps: int, warmup: int, modes) -> dict:
    """Images/s and peak memory of optimisation steps (forward, soft CE, backward, AdamW)."""
    dev = torch.device(device)
    rows = []
    for amp, channels_last in modes:
        if amp == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
            rows.append({"amp": amp, "channels_last": channels_last, "skipped": "bf16 not supported"})
            continue
        model = _model(9, res).to(dev)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        x, target = _batch(batch, res, 9, dev)
        memory = torch.channels_last if channels_last else torch.contiguous_format
        rows.append({"amp": amp, "channels_last": channels_last,
                     **_timed_steps(model, x, target, dev, DTYPES[amp], memory, steps, warmup, 1e-3)})
        del model
    return {"res": list(res), "batch": batch, "steps": steps, "rows": rows}


def loader_feed(device: str, res, batch: int, steps: int, workers: int, frames: int, frame_size, sets=("generated-png", "generated-cache", "synthetic"),
                modes=("worker", "device")) -> dict:
    """Training steps fed by the real loader (TrainingSet, make_loader, prepare_batch, as `edgeseg train` runs them):
    images/s, the loader wait per step (the time the training process waited for the next batch) and the GPU's
    utilisation, for each data set and --augment-on mode."""
    from data_path import generated_set

    from edgeseg.data import build_dataset
    from edgeseg.data.cache import build_cache, cached_dataset
    from edgeseg.data.synthetic import Synthetic
    from edgeseg.data.transforms import Augment, TrainTransform
    from edgeseg.trainer.data import TrainingSet, make_loader, prepare_batch
    from edgeseg.trainer.losses import compute_loss

    dev = torch.device(device)
    work = Path(tempfile.mkdtemp(prefix="edgeseg-feed-"))
    png = build_dataset("folder", generated_set(work / "png", frames, frame_size), "train")
    datasets = {"generated-png": png, "synthetic": Synthetic("train")}
    if "generated-cache" in sets:
        build_cache(png, work / "cache", progress=False)
        datasets["generated-cache"] = cached_dataset(png, work / "cache")
    rows = []
    for name in sets:
        ds = datasets[name]
        for mode in modes:
            transform = TrainTransform(tuple(res), ds.info, "soft", "area", Augment())
            loader = make_loader(TrainingSet(ds, transform, 0, on_device=mode == "device"), batch, workers, 0, 0, 0, 1, 0, pin=dev.type == "cuda")
            model = _model(ds.info.num_classes, res).to(dev).to(memory_format=torch.channels_last)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            waits, utils, n, t0, done = [], [], 0, None, 0
            while done < steps:
                end = time.perf_counter()
                for b in loader:
                    waits.append(time.perf_counter() - end)
                    x, target = prepare_batch(b, transform, dev, mode == "device")
                    loss = compute_loss(model(((x - 127.0) / 128.0).contiguous(memory_format=torch.channels_last)), target)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if dev.type == "cuda":
                        torch.cuda.synchronize()
                        utils.append(_gpu_utilisation())
                    done += 1
                    if done == 3:  # the first batches include worker start-up
                        t0, n, waits = time.perf_counter(), 0, []
                    elif t0 is not None:
                        n += x.shape[0]
                    end = time.perf_counter()
                    if done >= steps:
                        break
            elapsed = time.perf_counter() - t0
            valid = [u for u in utils[3:] if u is not None]
            rows.append({"data": name, "augment_on": mode, "img_per_s": round(n / elapsed, 1), "loader_wait_ms_per_step": round(1000 * sum(waits) / max(len(waits), 1), 2),
                         "wait_share": round(sum(waits) / elapsed, 3), "gpu_util_pct": round(sum(valid) / len(valid), 1) if valid else None,
                         "frame": list(ds[0].label.shape[::-1])})
            print(f"  {name} {mode}: {rows[-1]['img_per_s']} img/s, loader wait {rows[-1]['loader_wait_ms_per_step']} ms/step", flush=True)
    return {"res": list(res), "batch": batch, "steps": steps, "workers": workers, "rows": rows}


def _gpu_utilisation():
    try:
        return float(torch.cuda.utilization())
    except Exception:  # noqa: BLE001 - pynvml missing or the driver refuses: not a finding of the check
        return None


RECIPES = (((120, 90), 40), ((240, 180), 30))  # (training res, epochs) of the README's CamVid recipe
CAMVID_TRAIN_IMAGES, CAMVID_CLASSES = 367, 11


def recipe_throughput(device: str, recipes, batch: int, steps: int, warmup: int) -> dict:
    """Training steps of the recipe models (FPN decoder, 2x up-sampler, soft targets at the output
    resolution) and the minutes per recipe run they imply."""
    from edgeseg.models import ModelConfig, build_model

    dev = torch.device(device)
    rows = []
    for res, epochs in recipes:
        for amp in ("fp32", "bf16"):
            if amp == "bf16" and (dev.type != "cuda" or not torch.cuda.is_bf16_supported()):
                continue
            torch.manual_seed(0)
            model = build_model(ModelConfig("lite0-fpn", CAMVID_CLASSES, res=tuple(res), upscale=2)).to(dev)
            x, _ = _batch(batch, res, CAMVID_CLASSES, dev)
            _, target = _batch(batch, (2 * res[0], 2 * res[1]), CAMVID_CLASSES, dev)
            r = _timed_steps(model, x, target, dev, DTYPES[amp], torch.contiguous_format, steps, warmup, 2e-3)
            rows.append({"res": list(res), "epochs": epochs, "amp": amp, **r,
                         "minutes_per_run_compute_only": round(CAMVID_TRAIN_IMAGES * epochs / r["img_per_s"] / 60, 2)})
            del model
    return {"model": "lite0-fpn --upscale 2", "batch": batch, "steps": steps, "rows": rows}


def eval_parity(device: str, res, n_images: int) -> dict:
    """The same model through the eval path on ``device`` and on the CPU: pixel agreement."""
    from edgeseg.data.synthetic import Synthetic
    from edgeseg.models import ModelConfig, ModelMeta
    from edgeseg.runtime.torch_runner import TorchRunner
    from edgeseg.tasks.parity import compare_runners

    ds = Synthetic("val")
    model = _model(ds.info.num_classes, res).eval()
    meta = ModelMeta(ModelConfig("lite0-lraspp", ds.info.num_classes, res=tuple(res)), ds.info, dataset_kind="synthetic")
    import copy

    a = TorchRunner(model, meta, device, name=f"torch:{device}")
    b = TorchRunner(copy.deepcopy(model), meta, "cpu", name="torch:cpu")
    with a, b:
        report = compare_runners(a, b, ds, indices=list(range(n_images)), progress=False)
    p = report["parity"]
    return {"device": device, "n_images": n_images, "pixel_agreement": p["pixel_agreement"], "delta_miou": p["delta_miou"],
            "max_abs_logit_diff": p["max_abs_logit_diff"]}


def ddp_step(backend: str, device: str, res) -> dict:
    """One optimisation step of a DistributedDataParallel model in a one-process group."""
    import torch.distributed as dist

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29517")
    if backend == "nccl" and not torch.cuda.is_available():
        raise SkipStep("NCCL needs CUDA")
    dist.init_process_group(backend, rank=0, world_size=1)
    try:
        dev = torch.device(device)
        model = torch.nn.parallel.DistributedDataParallel(_model(9, res).to(dev), device_ids=[dev.index or 0] if dev.type == "cuda" else None)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        x, target = _batch(2, res, 9, dev)
        from edgeseg.trainer.losses import compute_loss

        loss = compute_loss(model(x), target)
        loss.backward()
        opt.step()
        return {"backend": backend, "loss": round(float(loss.detach()), 4)}
    finally:
        dist.destroy_process_group()


def tensorrt_checks(res, dry_run: bool) -> dict:
    """pytest -m gpu, then FP16 and INT8 engines: parity against the checkpoint and latency."""
    from edgeseg.optional import available

    if not available("tensorrt"):
        raise SkipStep("tensorrt does not import here")
    out = {}
    test = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    out["pytest_gpu"] = {"returncode": test.returncode, "tail": test.stdout.strip().splitlines()[-3:]}
    from _exported import random_checkpoint

    from edgeseg.data.synthetic import Synthetic
    from edgeseg.export.formats import ExportOptions, Request
    from edgeseg.export.int8 import Int8Options
    from edgeseg.export.trt_build import TrtOptions
    from edgeseg.models import ModelConfig
    from edgeseg.runtime.spec import RunnerSpec
    from edgeseg.tasks.bench import bench
    from edgeseg.tasks.export import export_model

    info = Synthetic("val").info
    with tempfile.TemporaryDirectory(prefix="edgeseg-gpu-") as tmp:
        ckpt = random_checkpoint(Path(tmp) / "model.pt", ModelConfig("lite0-lraspp", info.num_classes, res=tuple(res)), res)
        for precision in ("fp16", "int8"):
            d = Path(tmp) / precision
            int8 = Int8Options(calib_images=16 if dry_run else 100, sensitivity_images=8, budget=100.0) if precision == "int8" else None
            job = ExportOptions(verify_images=8, device="cuda", formats=("tensorrt",) + (("int8",) if int8 else ()))
            r = export_model(Request(ckpt, d, job, int8=int8, trt=TrtOptions(precision=precision)), progress=False)
            lat = bench([ckpt, d / "model.engine"], RunnerSpec(device="cuda"), iters=30, warmup=5, progress=False)
            engine = r["formats"]["tensorrt"]["parity"].get("parity.engine.json", {})
            out[precision] = {"parity": {k: engine.get(k) for k in ("pixel_agreement", "delta_miou")},
                              "latency_ms": {row["backend"]: row["model_only"]["p50_ms"] for row in lat["results"]}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default="gpu_check.json")
    ap.add_argument("--dry-run", action="store_true", help="CPU only, tiny sizes: every step that needs no GPU")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    if not args.dry_run and not cuda:
        sys.exit("error: no CUDA device visible to PyTorch; use --dry-run to check the script on a CPU")
    device = "cuda" if not args.dry_run else "cpu"
    res = (512, 256) if not args.dry_run else (64, 32)
    batch, steps, warmup = (16, 20, 5) if not args.dry_run else (2, 2, 1)
    modes = [(amp, cl) for amp in ("fp32", "bf16", "fp16") for cl in (False, True)]
    result = {
        "dry_run": args.dry_run, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"gpu": torch.cuda.get_device_name() if cuda else None, "torch": torch.__version__, "cuda": torch.version.cuda,
                    "python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "command": "python " + " ".join(sys.argv),
    }
    step(result, "train_throughput", train_throughput, device, res, batch, steps, warmup, modes if not args.dry_run else modes[:2])
    feed = dict(workers=min(8, max((os.cpu_count() or 2) - 1, 1)), frames=24, frame_size=(2048, 1024), steps=40) if not args.dry_run else \
        dict(workers=0, frames=3, frame_size=(128, 64), steps=4, sets=("generated-png", "generated-cache"))
    step(result, "loader_feed", loader_feed, device, res, batch, **feed)
    step(result, "eval_parity_cuda_vs_cpu", eval_parity, device, res, 8 if not args.dry_run else 2)
    step(result, "ddp_one_process", ddp_step, "nccl" if not args.dry_run else "gloo", device, res)
    step(result, "tensorrt", tensorrt_checks, res, args.dry_run)
    recipes = RECIPES if not args.dry_run else (((24, 18), 1),)
    step(result, "recipe_throughput", recipe_throughput, device, recipes, 8 if not args.dry_run else 2, steps, warmup)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json}")
    failed = [k for k, v in result.items() if isinstance(v, dict) and v.get("status") == "failed"]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
