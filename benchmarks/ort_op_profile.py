"""Where ONNX Runtime CPU spends a model's time, by operator type (its own profiler), to see what
INT8 speeds up and what it leaves: shares of the summed node time over ``--iters`` runs.

    python benchmarks/ort_op_profile.py MODEL.onnx [MODEL.onnx ...] --threads 1 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import defaultdict

import numpy as np


def profile(path: str, iters: int, threads: int) -> dict:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    with tempfile.TemporaryDirectory() as tmp:
        opts.profile_file_prefix = os.path.join(tmp, "p")
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        x = (np.random.default_rng(0).standard_normal(shape).astype(np.float32) if "float" in inp.type
             else np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8))
        for _ in range(iters):
            sess.run(None, {inp.name: x})
        with open(sess.end_profiling()) as fh:
            events = json.load(fh)
    by_op = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] += e["dur"]
    total = sum(by_op.values())
    return {"model": path, "total_ms_per_run": round(total / iters / 1000, 3),
            "share": {k: round(v / total, 4) for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = [profile(m, args.iters, args.threads) for m in args.models]
    for r in rows:
        top = ", ".join(f"{k} {100 * v:.1f}%" for k, v in list(r["share"].items())[:8])
        print(f"{r['model']}: {r['total_ms_per_run']} ms of node time per run; {top}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"command": " ".join(sys.argv), "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
