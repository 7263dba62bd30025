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
from _exported import add_size_options, exported_runner, sizes
from PIL import Image

from edgeseg.data.synthetic import Synthetic
from edgeseg.models import ModelConfig
from edgeseg.runtime.processing import Preprocess, native_labels
from edgeseg.tasks.video import predict_video


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    add_size_options(ap)
    args = ap.parse_args()
    res, native = sizes(args)
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
        runner = exported_runner(ModelConfig("lite0-lraspp", ds.info.num_classes, res=res), res, tmp, "m", args.threads)
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
