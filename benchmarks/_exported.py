"""Shared by the latency benchmarks: a freshly initialised checkpoint (weights do not change what a
graph costs), exported by edgeseg, and an ONNX Runtime runner with a fixed thread count."""

from __future__ import annotations

from pathlib import Path

import torch

from edgeseg import __version__
from edgeseg.data.synthetic import Synthetic
from edgeseg.export import OnnxOptions, export_onnx
from edgeseg.models import Checkpoint, ModelConfig, ModelMeta, build_model
from edgeseg.runtime.ort_runner import OrtRunner


def random_checkpoint(path: Path, cfg: ModelConfig, res) -> Path:
    """A checkpoint of ``cfg`` with seed-0 weights, labelled with the synthetic set's classes where they fit."""
    torch.manual_seed(0)
    info = Synthetic("val").info
    n = cfg.num_classes
    names = info.class_names if n == info.num_classes else tuple(f"c{i}" for i in range(n))
    from edgeseg.data.base import default_palette

    palette = info.palette if n == info.num_classes else default_palette(n)
    from dataclasses import replace

    from edgeseg.data.base import DatasetInfo

    meta = ModelMeta(replace(cfg, res=tuple(res)), DatasetInfo("synthetic", names, palette), dataset_kind="synthetic")
    torch.save(Checkpoint(meta, build_model(cfg).state_dict()).to_dict(__version__), path)
    return path


def exported_runner(cfg: ModelConfig, res, folder: Path, name: str, threads: int, options: OnnxOptions | None = None) -> OrtRunner:
    """``cfg`` exported to ``folder/name.onnx`` (with ``options``) and opened (active) on ONNX Runtime CPU with ``threads``."""
    import onnxruntime as ort

    ckpt = random_checkpoint(folder / f"{name}.pt", cfg, res)
    path, _ = export_onnx(ckpt, folder / f"{name}.onnx", options or OnnxOptions())
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    from edgeseg import runtime

    runner = runtime.load(path, device="cpu", backend="onnxruntime")
    runner.session_options = opts
    return runner.activate()


def add_size_options(ap) -> None:
    """--res (network), --native (frame), --threads and --json, as both latency benchmarks take them."""
    ap.add_argument("--res", default="512x256")
    ap.add_argument("--native", default="1024x512")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)


def sizes(args) -> tuple[tuple[int, int], tuple[int, int]]:
    """(network, native) sizes from the options; torch gets ``--threads`` too."""
    torch.set_num_threads(args.threads)
    return tuple(int(v) for v in args.res.split("x")), tuple(int(v) for v in args.native.split("x"))
