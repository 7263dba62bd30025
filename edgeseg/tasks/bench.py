"""``edgeseg bench``: latency percentiles and throughput, model only and end to end.

Several models are timed in one run, taking turns, so a shared, noisy machine slows
them alike and their ratio stays meaningful. Each runs in its own worker process:
engines timed in one process distort each other (their thread pools compete).
"""

from __future__ import annotations

import os
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
          dataset=None, data=None, progress: bool = True, engines=None, isolate: bool | None = None, block: int = 10) -> dict:
    """Time ``models`` side by side: each model alone, then end to end from native images.

    ``engines``: one runtime.EngineOptions for all models, or one per model. ``isolate`` runs each
    model in its own worker process (default: when there are several); the workers take turns,
    ``block`` iterations at a time, in alternating order, so only one engine's threads run at once.
    In one process, engines' thread pools compete: a pool left spinning by one model slows the next.
    """
    from edgeseg import runtime

    models = [str(m) for m in models]
    engines = _per_model(engines, len(models))
    if block < 1:
        from edgeseg.errors import ConfigError

        raise ConfigError(f"--block: expected a positive number of iterations; got {block}")
    # Loaded here (not activated) so that a bad file or option fails before any worker starts.
    runners = [runtime.load(m, device=device, providers=providers, **e.kwargs()) for m, e in zip(models, engines)]
    images, source = _bench_images(runners[0].meta, dataset, data, batch)
    sizes = [im.shape[:2] for im in images]
    isolate = len(models) > 1 if isolate is None else isolate
    specs = [{"model": m, "device": device, "providers": providers, "engine": e.kwargs(), "backend": r.backend}
             for m, e, r in zip(models, engines, runners)]
    if isolate:
        infos, model_t, e2e_t = _time_isolated(specs, images, iters, warmup, block, progress)
    else:
        infos, model_t, e2e_t = _time_in_process(runners, images, iters, warmup, progress)
    rows = []
    for k, (m, r, info) in enumerate(zip(models, runners, infos)):
        rows.append({
            "model": m, "backend": r.backend, **info,
            "input": f"{r.meta.res[0]}x{r.meta.res[1]} {r.meta.input_layout}",
            "model_only": latency_stats(model_t[k], batch), "end_to_end": latency_stats(e2e_t[k], batch),
        })
    result = {
        "batch": batch, "iters": iters, "warmup": warmup, "images_from": source,
        "native_size": [int(sizes[0][1]), int(sizes[0][0])],
        "isolation": f"a worker process per model, {block} iterations a turn" if isolate else "one process, iterations interleaved",
        "machine": machine(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "results": rows,
    }
    if len(rows) > 1:
        base = rows[0]["model_only"]["p50_ms"]
        for r in rows:
            r["p50_ratio_to_first"] = round(r["model_only"]["p50_ms"] / base, 3)
        # keyed by file; the same file timed on several backends gets its position too
        seen = [r["model"] for r in rows]
        result["p50_ratio_to_first"] = {(r["model"] if seen.count(r["model"]) == 1 else f"{r['model']} #{k + 1}"): r["p50_ratio_to_first"]
                                        for k, r in enumerate(rows)}
    return result


def _per_model(engines, n: int) -> list:
    from edgeseg.errors import ConfigError
    from edgeseg.runtime import EngineOptions

    if engines is None:
        return [EngineOptions()] * n
    if isinstance(engines, EngineOptions):
        return [engines] * n
    engines = list(engines)
    if len(engines) == 1:
        return engines * n
    if len(engines) != n:
        raise ConfigError(f"--backend/--ov-precision: give one value for all models or one per --model ({n}); got {len(engines)}")
    return engines


def _runner_info(r) -> dict:
    info = {"providers": getattr(r, "active_providers", None), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default")}
    if getattr(r, "precision_report", None):
        info["precision"] = r.precision_report
    if getattr(r, "threads", None):
        info["threads"] = r.threads
    return info


def _calls(r, images, sizes):
    pre = Preprocess.from_meta(r.meta)
    x = pre(images)
    return [lambda: r.infer(x), lambda: native_labels(r.infer(pre(images)), sizes)]


def _time_in_process(runners, images, iters, warmup, progress):
    from edgeseg.progress import Progress

    sizes = [im.shape[:2] for im in images]
    for r in runners:
        r.activate()
    try:
        calls = [c for r in runners for c in _calls(r, images, sizes)]  # per model: the model alone, then end to end
        bar = Progress(warmup + iters, "bench", "round", enabled=progress)
        times = time_interleaved(calls, iters, warmup, on_round=bar.update)
        bar.close()
        infos = [_runner_info(r) for r in runners]
    finally:
        for r in runners:
            r.deactivate()
    return infos, times[0::2], times[1::2]


def _time_isolated(specs, images, iters, warmup, block, progress):
    import multiprocessing as mp

    from edgeseg.progress import Progress

    import signal

    ctx = mp.get_context("spawn")  # a fresh interpreter: no thread pool or allocator state inherited
    workers = []
    try:
        for spec in specs:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, spec, images), daemon=True)
            # Workers start with Ctrl-C ignored (inherited): the parent alone handles it and stops them.
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            env = _worker_env(spec["backend"])
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                proc.start()
            finally:
                signal.signal(signal.SIGINT, previous)
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            child.close()
            proc.model = spec["model"]
            workers.append((proc, parent))
        infos = [_receive(proc, conn) for proc, conn in workers]
        model_t, e2e_t = [[] for _ in specs], [[] for _ in specs]
        bar = Progress(len(specs) * (warmup + iters), "bench", "run", enabled=progress)
        for proc, conn in workers:
            if warmup:
                _ask(proc, conn, warmup)
                bar.update(warmup)
        done, turn = 0, 0
        while done < iters:
            n = min(block, iters - done)
            order = list(range(len(workers)))
            for k in (order if turn % 2 == 0 else order[::-1]):  # alternate who goes first
                proc, conn = workers[k]
                m, e = _ask(proc, conn, n)
                model_t[k] += m
                e2e_t[k] += e
                bar.update(n)
            done += n
            turn += 1
        bar.close()
        return infos, model_t, e2e_t
    finally:
        for proc, conn in workers:
            try:
                conn.send(("stop", 0))
            except (BrokenPipeError, OSError):
                pass
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()


def _worker_env(backend: str) -> dict:
    """Environment of a worker running ``backend``.

    edgeseg's pre- and post-processing run on PyTorch, whose OpenMP threads spin after each
    parallel region and take the cores from another engine's threads: with them waiting
    passively, ONNX Runtime FP32 ran 27% faster on the 2-core reference machine and PyTorch
    itself 55% slower (benchmarks/RESULTS.md section 19). So a worker running another engine
    gets OMP_WAIT_POLICY=PASSIVE, a PyTorch worker keeps the default, and a value the user set wins.
    """
    if backend == "torch" or "OMP_WAIT_POLICY" in os.environ:
        return {}
    return {"OMP_WAIT_POLICY": "PASSIVE"}


def _ask(proc, conn, n: int):
    """Have a worker time ``n`` rounds; its times."""
    try:
        conn.send(("run", n))
    except (BrokenPipeError, ConnectionResetError):
        _died(proc)
    return _receive(proc, conn)


def _died(proc):
    from edgeseg.errors import CheckFailed

    proc.join(timeout=5)
    raise CheckFailed(f"{proc.model}: its bench worker process died (exit code {proc.exitcode}); the engine crashed running it")


def _receive(proc, conn):
    """A worker's reply; its error re-raised here (one line for a user's mistake)."""
    if not conn.poll(3600):
        raise RuntimeError(f"bench worker {proc.pid} did not answer within an hour")
    try:
        kind, payload = conn.recv()
    except (EOFError, ConnectionResetError):
        _died(proc)
    if kind == "error":
        from edgeseg import errors

        cls_name, message = payload
        cls = getattr(errors, cls_name, None)
        if isinstance(cls, type) and issubclass(cls, errors.EdgesegError):
            raise cls(message)
        raise RuntimeError(f"bench worker failed:\n{message}")
    return payload


def _worker(conn, spec, images) -> None:
    """One model in its own process: load, then time ``n`` rounds (model alone, end to end) on request."""
    import traceback

    from edgeseg import runtime
    from edgeseg.errors import EdgesegError

    try:
        r = runtime.load(spec["model"], device=spec["device"], providers=spec["providers"], **spec["engine"]).activate()
        sizes = [im.shape[:2] for im in images]
        calls = _calls(r, images, sizes)
        conn.send(("ok", _runner_info(r)))
        while True:
            cmd, n = conn.recv()
            if cmd == "stop":
                break
            conn.send(("ok", time_interleaved(calls, n, 0)))
        r.deactivate()
    except EdgesegError as exc:
        conn.send(("error", (type(exc).__name__, str(exc))))
    except (EOFError, KeyboardInterrupt):
        pass
    except Exception:  # a bug: its traceback goes to the parent
        conn.send(("error", ("", traceback.format_exc())))
    finally:
        conn.close()


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
        backend = r["backend"]
        if r.get("precision"):  # what OpenVINO ran: its inference precision, and int8 where convolutions ran in it
            convs = r["precision"]["convolutions"]
            backend += f":{r['precision']['inference_precision']}" + ("+i8" if any(k in ("i8", "u8") for k in convs) else "")
        lines.append(f"{name[-40:]:40s} {backend:12s} {m['p50_ms']:9.2f} {m['p90_ms']:9.2f} {m['p99_ms']:9.2f} "
                     f"{m['throughput_ips']:8.1f} {e['p50_ms']:9.2f} {e['throughput_ips']:10.1f}")
    if "p50_ratio_to_first" in result:
        first = result["results"][0]["model_only"]["p50_ms"]
        lines.append("p50 latency relative to the first model: "
                     + ", ".join(f"{name} {r['model_only']['p50_ms'] / first:.3f}x" for r, name in zip(result["results"], names)))
    return "\n".join(lines)
