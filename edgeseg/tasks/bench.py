"""``edgeseg bench``: latency percentiles and throughput, model only and end to end.

Several models are timed in one run with their iterations interleaved, so a
shared, noisy machine slows them alike and their ratio stays meaningful.
"""

from __future__ import annotations

from datetime import datetime, timezone

from edgeseg.data import resolve_dataset
from edgeseg.runtime.processing import Preprocess, native_labels
from edgeseg.runtime.timing import latency_stats, machine, time_interleaved


def _bench_images(meta, dataset, data, batch):
    """Real native images for end-to-end timing: the model's data set, else synthetic scenes."""
    from edgeseg.data.synthetic import Synthetic

    try:
        ds = resolve_dataset(meta.dataset, dataset, data, "val", False, meta.extra.get("dataset_root"))
    except Exception:  # no data set at hand: synthetic street scenes stand in
        ds = Synthetic("val")
    return [ds[i % len(ds)].image for i in range(batch)], ds.info.name


def bench(models, batch: int = 1, iters: int = 50, warmup: int = 10, device: str = "auto", providers=None,
          dataset=None, data=None, progress: bool = True) -> dict:
    from edgeseg import runtime
    from edgeseg.progress import Progress

    runners = [runtime.load(m, device=device, providers=providers) for m in models]
    images, source = _bench_images(runners[0].meta, dataset, data, batch)
    sizes = [im.shape[:2] for im in images]
    rows = []
    for r in runners:
        r.activate()
    try:
        pres = [Preprocess.from_meta(r.meta) for r in runners]
        inputs = [pre(images) for pre in pres]
        calls = []
        for r, pre, x in zip(runners, pres, inputs):  # per model: the model alone, then end to end
            calls.append(lambda r=r, x=x: r.infer(x))
            calls.append(lambda r=r, pre=pre: native_labels(r.infer(pre(images)), sizes))
        bar = Progress(warmup + iters, "bench", "round", enabled=progress)
        times = time_interleaved(calls, iters, warmup, on_round=bar.update)
        bar.close()
        model_t, e2e_t = times[0::2], times[1::2]
    finally:
        for r in runners:
            r.deactivate()
    for k, (m, r) in enumerate(zip(models, runners)):
        rows.append({
            "model": str(m), "backend": r.backend, "providers": getattr(r, "active_providers", None),
            "input": f"{r.meta.res[0]}x{r.meta.res[1]} {r.meta.input_layout}",
            "model_only": latency_stats(model_t[k], batch), "end_to_end": latency_stats(e2e_t[k], batch),
        })
    result = {
        "batch": batch, "iters": iters, "warmup": warmup, "images_from": source,
        "native_size": [int(sizes[0][1]), int(sizes[0][0])],
        "machine": machine(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "results": rows,
    }
    if len(rows) > 1:
        base = rows[0]["model_only"]["p50_ms"]
        result["p50_ratio_to_first"] = {r["model"]: round(r["model_only"]["p50_ms"] / base, 3) for r in rows}
    return result


def short_names(paths) -> list[str]:
    """The shortest path suffixes that tell the given model files apart (file names where unique)."""
    from pathlib import Path

    parts = [Path(p).parts for p in paths]
    depth = 1
    while True:
        names = [str(Path(*p[-depth:])) for p in parts]
        if len(set(names)) == len(names) or all(depth >= len(p) for p in parts):
            return names
        depth += 1


def format_bench(result: dict) -> str:
    """The bench result as printed: one row per model, then the p50 ratios to the first."""
    head = f"{'model':40s} {'backend':12s} {'p50 ms':>9s} {'p90 ms':>9s} {'p99 ms':>9s} {'img/s':>8s} {'e2e p50':>9s} {'e2e img/s':>10s}"
    lines = [f"batch {result['batch']}, {result['iters']} iterations after {result['warmup']} warm-up, end to end from "
             f"{result['images_from']} images ({result['native_size'][0]}x{result['native_size'][1]}); {result['machine']}",
             head, "-" * len(head)]
    names = short_names([r["model"] for r in result["results"]])
    for r, name in zip(result["results"], names):
        m, e = r["model_only"], r["end_to_end"]
        lines.append(f"{name[-40:]:40s} {r['backend']:12s} {m['p50_ms']:9.2f} {m['p90_ms']:9.2f} {m['p99_ms']:9.2f} "
                     f"{m['throughput_ips']:8.1f} {e['p50_ms']:9.2f} {e['throughput_ips']:10.1f}")
    if "p50_ratio_to_first" in result:
        first = result["results"][0]["model_only"]["p50_ms"]
        lines.append("p50 latency relative to the first model: "
                     + ", ".join(f"{name} {r['model_only']['p50_ms'] / first:.3f}x" for r, name in zip(result["results"], names)))
    return "\n".join(lines)
