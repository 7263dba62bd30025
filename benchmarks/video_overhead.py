"""What the video path adds to inference: per-frame time of `edgeseg predict` on a clip
(decode, infer, overlay, encode, in overlapping threads) against inference alone on the same
frames already in memory (pre-processing, the model, labels at native size), both with ONNX
Runtime, rounds interleaved.

    python benchmarks/video_overhead.py --res 512x256 --native 1024x512 --frames 30 --rounds 3 --json benchmarks/results/video_overhead.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

from edgeseg import __version__
from edgeseg.data.synthetic import Synthetic
from edgeseg.export import OnnxOptions, export_onnx
from edgeseg.models import Checkpoint, ModelCard, ModelConfig, build_model
from edgeseg.runtime.ort_runner import OrtRunner
from edgeseg.runtime.processing import Preprocess, native_labels
from edgeseg.tasks.video import predict_video


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--res", default="512x256")
    ap.add_argument("--native", default="1024x512")
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    res = tuple(int(v) for v in args.res.split("x"))
    native = tuple(int(v) for v in args.native.split("x"))
    torch.set_num_threads(args.threads)
    ds = Synthetic("val")
    frames = [np.array(Image.fromarray(ds[i % len(ds)].image).resize(native)) for i in range(args.frames)]
    with tempfile.TemporaryDirectory(prefix="edgeseg-video-") as tmp:
        tmp = Path(tmp)
        clip = tmp / "clip.mp4"
        with av.open(str(clip), "w") as out:
            stream = out.add_stream("libx264", rate=30)
            stream.width, stream.height, stream.pix_fmt = native[0], native[1], "yuv420p"
            for f in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        with av.open(str(clip)) as c:  # what the video path will see, after compression
            decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        torch.manual_seed(0)
        cfg = ModelConfig("lite0-lraspp", ds.info.num_classes, res=res)
        card = ModelCard(cfg, ds.info.class_names, ds.info.palette, res, dataset="synthetic")
        torch.save(Checkpoint(card, build_model(cfg).state_dict()).to_dict(__version__), tmp / "m.pt")
        path, _ = export_onnx(tmp / "m.pt", tmp / "m.onnx", OnnxOptions())
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        runner = OrtRunner.from_file(path, device="cpu", providers=["CPUExecutionProvider"])
        runner.session_options = opts
        runner.activate()
        pre = Preprocess.from_meta(runner.meta)
        alone, video, splits = [], [], []
        for r in range(args.rounds):
            t0 = time.perf_counter()
            for f in decoded:
                native_labels(runner.infer(pre([f])), [f.shape[:2]])
            alone.append((time.perf_counter() - t0) / len(decoded))
            t0 = time.perf_counter()
            result = predict_video(runner, str(clip), tmp / f"out{r}", progress=False)
            video.append((time.perf_counter() - t0) / result["frames"])
            splits.append(result["seconds"])
        runner.deactivate()
    ratio = [v / a for v, a in zip(video, alone)]
    row = {"res": list(res), "native": list(native), "frames": args.frames, "rounds": args.rounds, "threads": args.threads,
           "inference_alone_ms_per_frame": [round(1000 * a, 2) for a in alone],
           "video_path_ms_per_frame": [round(1000 * v, 2) for v in video],
           "ratio": [round(x, 3) for x in ratio], "video_stage_seconds": splits,
           "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, PyAV {av.__version__}",
           "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "command": "python " + " ".join(sys.argv)}
    print(json.dumps({k: row[k] for k in ("inference_alone_ms_per_frame", "video_path_ms_per_frame", "ratio")}))
    if args.json:
        Path(args.json).write_text(json.dumps(row, indent=1) + "\n")


if __name__ == "__main__":
    main()
