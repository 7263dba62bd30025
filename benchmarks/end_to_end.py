"""Native frame to native labels, before and after: today's pre- and post-processing against the
earlier ones they replaced, around the same network call, per engine.

Each model runs in its own worker process (spawned; ``--threads`` for the engine and for
PyTorch). Per iteration a worker times, on the same frame: the earlier pre-processing
(``Preprocess.reference_resize``: the whole frame to float, then the dense resize), today's
(``Preprocess.resize``: the tap-cost window resize), the network on today's input, the earlier
post-processing (``scores_to_labels_reference``: every class plane up-sampled, then the arg-max)
and today's (``native_labels``); the order of old and new alternates between iterations. It
checks that both post-processings give the same labels, and both inputs agree within 1e-5 once
normalised. The workers take turns ``--block`` iterations at a time, in alternating order, so only
one engine's threads run at once and a shared machine slows them alike.

"Before" end to end is pre_old + network + post_old of the same iteration, "after" is
pre_new + network + post_new; p50s of those sums are reported with the p50 of each part.

    python benchmarks/end_to_end.py --model exp/model.onnx --model exp/model.int8.onnx \\
        --model exp/model.xml --model exp/model.int8.xml --threads 2 --iters 60 \\
        --json benchmarks/results/end_to_end_512x256.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from datetime import datetime, timezone

import numpy as np

PARTS = ("pre_old", "pre_new", "network", "post_old", "post_new")


def _frames(meta, data: str | None, n: int):
    from edgeseg.data import DataSource

    ds = DataSource(data=data).open(meta.dataset) if data else DataSource(dataset="synthetic").open()
    return [ds[i % len(ds)].image for i in range(n)], ds.info.name


def _worker(conn, model: str, backend: str | None, precision: str | None, spinning: str | None, threads: int,
            data: str | None, frames_n: int):
    import torch

    torch.set_num_threads(threads)
    from edgeseg import runtime
    from edgeseg.runtime.processing import Preprocess, native_labels, scores_to_labels_reference
    from edgeseg.runtime.spec import RunnerSpec

    try:
        runner = runtime.load(model, RunnerSpec(backend=backend, device="cpu", threads=threads, precision=precision))
    except Exception as exc:  # noqa: BLE001 - said by the parent, which waits for this worker's first message
        conn.send({"error": f"{model}: {exc}"})
        return
    if spinning is not None:
        if runner.backend != "onnxruntime":
            conn.send({"error": f"{model}: --ort-spinning is ONNX Runtime's option, this model runs on {runner.backend}"})
            return
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        runner.session_options = opts
    runner.activate()
    meta = runner.meta
    pre = Preprocess.from_meta(meta)
    if pre.layout != "nchw" or pre.round_uint8:
        conn.send({"error": f"{model}: this benchmark times float-input models (export with --input float)"})
        return
    frames, source = _frames(meta, data, frames_n)
    times = {k: [] for k in PARTS}
    counts = {"label_mismatch": 0, "pixels": 0, "input_max_diff": 0.0}
    conn.send({"ready": True, "backend": runner.backend, "describe": runner.describe(), "spinning": spinning, "frames": source,
               "native": [int(frames[0].shape[1]), int(frames[0].shape[0])], "input": list(meta.input_res)})
    k = 0
    while True:
        ask = conn.recv()
        if ask == "stop":
            break
        for _ in range(ask["n"]):
            frame = frames[k % len(frames)]
            size = [frame.shape[:2]]
            t = {}
            order = (("old", "new") if k % 2 == 0 else ("new", "old"))
            xs = {}
            for which in order:
                t0 = time.perf_counter()
                resized = pre.resize([frame]) if which == "new" else pre.reference_resize([frame])
                xs[which] = pre.normalise(resized).numpy()
                t[f"pre_{which}"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            out = runner.infer(xs["new"])
            t["network"] = time.perf_counter() - t0
            labels = {}
            for which in order:
                t0 = time.perf_counter()
                if which == "new":
                    labels[which] = native_labels(out, size)[0]
                else:
                    labels[which] = scores_to_labels_reference(torch.from_numpy(out["logits"][:1]), size[0])[0]
                t[f"post_{which}"] = time.perf_counter() - t0
            if ask["record"]:
                for p in PARTS:
                    times[p].append(t[p])
                counts["label_mismatch"] += int((labels["new"].to(torch.int64) != labels["old"]).sum())
                counts["pixels"] += int(labels["new"].numel())
                counts["input_max_diff"] = max(counts["input_max_diff"], float(np.abs(xs["new"] - xs["old"]).max()))
            k += 1
        conn.send({"done": ask["n"]})
    conn.send({"times": times, **counts})
    runner.deactivate()


def _p50(v) -> float:
    return round(float(np.percentile(np.asarray(v) * 1000, 50)), 3)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", required=True, help="ONNX or OpenVINO IR model (repeat)")
    ap.add_argument("--backend", action="append", default=None, help="one per --model, or one for all (default: by file type)")
    ap.add_argument("--ov-precision", action="append", default=None,
                    help="OpenVINO precision hint (auto, f32, bf16, f16), one per --model or one for all; default: OpenVINO's own")
    ap.add_argument("--ort-spinning", action="append", default=None, choices=("default", "0", "1"),
                    help="ONNX Runtime's session.intra_op.allow_spinning, one per --model or one for all")
    ap.add_argument("--omp-wait-policy", default=None, choices=("PASSIVE", "ACTIVE"),
                    help="OMP_WAIT_POLICY for the workers' PyTorch (edgeseg eval/predict/bench use PASSIVE beside an "
                         "exported model); default: unset")
    ap.add_argument("--data", default=None, help="data set root for the frames (default: the synthetic set's 1024x512 frames)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=6)
    ap.add_argument("--block", type=int, default=10)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    backends = args.backend or [None]
    if len(backends) == 1:
        backends = backends * len(args.model)
    precisions = [None if p == "auto" else p for p in (args.ov_precision or [None])]
    if len(precisions) == 1:
        precisions = precisions * len(args.model)
    spins = [None if v == "default" else v for v in (args.ort_spinning or [None])]
    if len(spins) == 1:
        spins = spins * len(args.model)
    if len({len(backends), len(precisions), len(spins), len(args.model)}) != 1:
        raise SystemExit("--backend, --ov-precision and --ort-spinning take one value for all models or one per --model")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    if args.omp_wait_policy:
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
    ctx = mp.get_context("spawn")
    workers = []
    for model, backend, precision, spinning in zip(args.model, backends, precisions, spins):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child, model, backend, precision, spinning, args.threads, args.data,
                                                     args.frames), daemon=True)
        proc.start()
        child.close()
        info = parent.recv()
        if "error" in info:
            raise SystemExit(info["error"])
        workers.append((model, proc, parent, info))
    for _, _, conn, _ in workers:
        conn.send({"n": args.warmup, "record": False})
        conn.recv()
    done, turn = 0, 0
    while done < args.iters:
        n = min(args.block, args.iters - done)
        order = workers if turn % 2 == 0 else workers[::-1]
        for _, _, conn, _ in order:
            conn.send({"n": n, "record": True})
            conn.recv()
        done, turn = done + n, turn + 1
    rows = []
    for model, proc, conn, info in workers:
        conn.send("stop")
        res = conn.recv()
        proc.join()
        t = {k: np.asarray(v) for k, v in res["times"].items()}
        before = t["pre_old"] + t["network"] + t["post_old"]
        after = t["pre_new"] + t["network"] + t["post_new"]
        row = {"model": model, "backend": info["backend"], "ran": info["describe"], "ort_spinning": info["spinning"],
               "input": info["input"],
               "native": info["native"], "frames": info["frames"],
               "p50_ms": {k: _p50(v) for k, v in t.items()},
               "end_to_end_p50_ms": {"before": _p50(before), "after": _p50(after)},
               "label_mismatch_pixels": res["label_mismatch"], "pixels_compared": res["pixels"],
               "input_max_abs_diff_normalised": res["input_max_diff"]}
        net = row["p50_ms"]["network"]
        row["end_to_end_over_network"] = {"before": round(row["end_to_end_p50_ms"]["before"] / net, 3),
                                          "after": round(row["end_to_end_p50_ms"]["after"] / net, 3)}
        rows.append(row)
        how = info["backend"] + (f":{info['describe']['precision']}" if info["describe"].get("precision") else "")
        how += f", allow_spinning {info['spinning']}" if info["spinning"] is not None else ""
        print(f"{model} [{how}] {info['input'][0]}x{info['input'][1]} from {info['native'][0]}x{info['native'][1]}: "
              f"network {net:.1f} ms; pre {row['p50_ms']['pre_old']:.1f} -> {row['p50_ms']['pre_new']:.1f}; "
              f"post {row['p50_ms']['post_old']:.1f} -> {row['p50_ms']['post_new']:.1f}; "
              f"end to end {row['end_to_end_p50_ms']['before']:.1f} -> {row['end_to_end_p50_ms']['after']:.1f} ms "
              f"({row['end_to_end_over_network']['before']:.2f}x -> {row['end_to_end_over_network']['after']:.2f}x the network); "
              f"label mismatches {res['label_mismatch']} of {res['pixels']}")
    import platform

    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    result = {"command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]), "cpu": cpu or platform.processor(),
              "threads": args.threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "iters": args.iters, "block": args.block,
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "results": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
