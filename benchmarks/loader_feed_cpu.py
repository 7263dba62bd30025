"""The loader feed on the CPU device: `gpu_check.py`'s loader_feed step (the real loader,
TrainingSet, make_loader and prepare_batch as `edgeseg train` runs them) with the worker and the
device augmentation path, so the two can be compared where there is no GPU.

    OMP_NUM_THREADS=1 python benchmarks/loader_feed_cpu.py --json benchmarks/results/loader_feed_cpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_check import loader_feed  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--res", default="512x256")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    res = tuple(int(v) for v in args.res.split("x"))
    result = loader_feed("cpu", res, args.batch, args.steps, args.workers, args.frames, (2048, 1024),
                         sets=("generated-cache", "synthetic"))
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "")
    result.update(command="python " + " ".join(sys.argv), cpu=cpu, torch_threads=1, date=datetime.now(timezone.utc).strftime("%Y-%m-%d"))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["rows"], indent=1))


if __name__ == "__main__":
    main()
