"""``edgeseg bench``: latency percentiles and throughput, model only and end to end.

Several models are timed in one run, taking turns, so a shared, noisy machine slows
them alike and their ratio stays meaningful. Each runs in its own worker process:
engines timed in one process distort each other (their thread pools compete).
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

from edgeseg.data import DataSource
from edgeseg.errors import ConfigError, DataError
from edgeseg.runtime.processing import Preprocess, native_labels
from edgeseg.runtime.spec import RunnerSpec
from edgeseg.runtime.timing import latency_stats, machine, time_interleaved

STAGES = ("pre", "network", "post")  # the parts of an end-to-end call, timed inside it
DEFAULT_BLOCK = 10  # iterations a worker runs per turn


def _bench_images(meta, source: DataSource, batch, named: bool = False):
    """Real native images for end-to-end timing: the given data set (its errors are the user's),
    else the model's own where it can be opened, else synthetic street scenes. Returns the
    images, where they came from, and why synthetic scenes stood in (None when they did not)."""
    from edgeseg.data.synthetic import Synthetic

    why = None
    if named or source != DataSource():  # a data set, root, split or --skip-bad named (even at its default): what it opens is what was asked for
        ds = source.open(meta.dataset, meta.dataset_root)
    else:
        try:
            ds = source.open(meta.dataset, meta.dataset_root)
        except (ConfigError, DataError) as exc:
            why = f"the model's data set cannot be opened ({exc}); give --dataset/--data to time on yours"
            ds = Synthetic("val")
    return [ds[i % len(ds)].image for i in range(batch)], ds.info.name, why


def bench(models, specs=None, source: DataSource = DataSource(), batch: int = 1, iters: int = 50, warmup: int = 10, progress: bool = True,
          isolate: bool | None = None, block: int | None = None, named: bool = False) -> dict:
    """Time ``models`` side by side: each model alone, then end to end from native images, with the
    end-to-end time split into pre-processing, network and post-processing.

    ``specs``: one RunnerSpec for all models, or one per model. ``isolate`` runs each model in its own
    worker process (default: when there are several); the workers take turns, ``block`` (default
    10) iterations at a time, in alternating order, so only one engine's threads run at once.
    In one process, engines' thread pools compete: a pool left spinning by one model slows the next.
    ``named``: the data source was given on the command line (at its default or not), so it is used or refused, never replaced.
    """
    from edgeseg import runtime

    models = [str(m) for m in models]
    specs = threads_where_honoured(models, _per_model(specs, len(models)))
    isolate = len(models) > 1 if isolate is None else isolate
    if block is not None and not isolate:
        raise ConfigError("--block: applies only when models run in worker processes (several --model, without --in-process); "
                          "leave --block out")
    block = DEFAULT_BLOCK if block is None else block
    if block < 1:
        raise ConfigError(f"--block: expected a positive number of iterations; got {block}")
    # Loaded here (not activated) so that a bad file or option fails before any worker starts.
    runners = [runtime.load(m, spec) for m, spec in zip(models, specs)]
    images, image_source, why = _bench_images(runners[0].meta, source, batch, named)
    jobs = [{"model": m, "spec": spec, "backend": r.backend} for m, spec, r in zip(models, specs, runners)]
    if isolate:
        infos, times = _time_isolated(jobs, images, iters, warmup, block, progress)
    else:
        infos, times = _time_in_process(runners, images, iters, warmup, progress)
    rows = []
    for m, r, info, t in zip(models, runners, infos, times):
        rows.append({
            "model": m, "backend": r.backend, "ran": info,
            "input": f"{r.meta.input_res[0]}x{r.meta.input_res[1]} {r.meta.input_layout}",
            "model_only": latency_stats(t["model"], batch), "end_to_end": latency_stats(t["e2e"], batch),
            "breakdown_p50_ms": {k: latency_stats(t[k], batch)["p50_ms"] for k in STAGES},
        })
    result = {
        "batch": batch, "iters": iters, "warmup": warmup, "images_from": image_source, "images_note": why,
        "native_size": [int(images[0].shape[1]), int(images[0].shape[0])],
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


def threads_where_honoured(models, specs) -> list:
    """Side by side, one --threads is for the models whose backend takes it (not a TensorRT
    engine's); given with no such model it stays, to be refused by name."""
    from edgeseg import runtime
    from edgeseg.errors import EdgesegError

    def honours(model, spec) -> bool:
        try:
            return "threads" in runtime.backend_for(model, spec.backend).options
        except EdgesegError:  # an unknown file type: refused by runtime.load, by name
            return True

    honoured = [honours(m, s) for m, s in zip(models, specs)]
    if not any(honoured):
        return list(specs)
    return [s if ok or s.threads is None else s.with_(threads=None) for s, ok in zip(specs, honoured)]


def _per_model(specs, n: int) -> list:
    if specs is None:
        return [RunnerSpec()] * n
    if isinstance(specs, RunnerSpec):
        return [specs] * n
    specs = list(specs)
    if len(specs) == 1:
        return specs * n
    if len(specs) != n:
        raise ConfigError(f"--backend/--ov-precision: give one value for all models or one per --model ({n}); got {len(specs)}")
    return specs


def _runner_info(r) -> dict:
    return {**r.describe(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default")}


class _Calls:
    """A model's two timed calls: the network alone on a prepared input, and end to end from the
    native images (pre-processing, network, post-processing, each part timed inside the call)."""

    def __init__(self, runner, images):
        self.runner, self.images = runner, images
        self.sizes = [im.shape[:2] for im in images]
        self.pre = Preprocess.from_meta(runner.meta)
        self.x = self.pre(images)
        self.parts = {k: [] for k in STAGES}

    def model(self):
        self.runner.infer(self.x)

    def end_to_end(self):
        t0 = time.perf_counter()
        x = self.pre(self.images)
        t1 = time.perf_counter()
        out = self.runner.infer(x)
        t2 = time.perf_counter()
        native_labels(out, self.sizes)
        t3 = time.perf_counter()
        for k, v in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2)):
            self.parts[k].append(v)

    def take(self, model_t, e2e_t, warmup: int = 0) -> dict:
        """The times of the rounds since the last take (the first ``warmup`` of the parts dropped)."""
        parts = {k: v[warmup:] for k, v in self.parts.items()}
        self.parts = {k: [] for k in STAGES}
        return {"model": model_t, "e2e": e2e_t, **parts}


def _time_in_process(runners, images, iters, warmup, progress):
    from edgeseg.progress import Progress

    for r in runners:
        r.activate()
    try:
        calls = [_Calls(r, images) for r in runners]
        bar = Progress(warmup + iters, "bench", "round", enabled=progress)
        times = time_interleaved([f for c in calls for f in (c.model, c.end_to_end)], iters, warmup, on_round=bar.update)
        bar.close()
        infos = [_runner_info(r) for r in runners]
    finally:
        for r in runners:
            r.deactivate()
    return infos, [c.take(times[2 * k], times[2 * k + 1], warmup) for k, c in enumerate(calls)]


def _time_isolated(jobs, images, iters, warmup, block, progress):
    import multiprocessing as mp
    import signal

    from edgeseg.progress import Progress

    ctx = mp.get_context("spawn")  # a fresh interpreter: no thread pool or allocator state inherited
    workers = []
    try:
        for job in jobs:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, job, images), daemon=True)
            # Workers start with Ctrl-C ignored (inherited): the parent alone handles it and stops them.
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            env = _worker_env(job["backend"])
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
            proc.model = job["model"]
            workers.append((proc, parent))
        infos = [_receive(proc, conn) for proc, conn in workers]
        times = [{"model": [], "e2e": [], **{k: [] for k in STAGES}} for _ in jobs]
        bar = Progress(len(jobs) * (warmup + iters), "bench", "run", enabled=progress)
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
                for key, values in _ask(proc, conn, n).items():
                    times[k][key] += values
                bar.update(n)
            done += n
            turn += 1
        bar.close()
        return infos, times
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
    """Environment of a worker running ``backend``: the OpenMP wait policy its engine wants
    (runtime.registry.omp_wait_policy); a value the user set wins."""
    from edgeseg.runtime.registry import BACKENDS, omp_wait_policy

    policy = omp_wait_policy(BACKENDS[backend])
    if policy is None or "OMP_WAIT_POLICY" in os.environ:
        return {}
    return {"OMP_WAIT_POLICY": policy}


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


def _worker(conn, job, images) -> None:
    """One model in its own process: load, then time ``n`` rounds (model alone, end to end) on request."""
    import traceback

    from edgeseg import runtime
    from edgeseg.errors import EdgesegError

    try:
        r = runtime.load(job["model"], job["spec"]).activate()
        calls = _Calls(r, images)
        conn.send(("ok", _runner_info(r)))
        while True:
            cmd, n = conn.recv()
            if cmd == "stop":
                break
            model_t, e2e_t = time_interleaved([calls.model, calls.end_to_end], n, 0)
            conn.send(("ok", calls.take(model_t, e2e_t)))
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
    head = (f"{'model':40s} {'backend':12s} {'p50 ms':>9s} {'p90 ms':>9s} {'p99 ms':>9s} {'img/s':>8s} {'e2e p50':>9s} {'e2e img/s':>10s}"
            f" {'pre':>7s} {'net':>7s} {'post':>7s}")
    lines = [f"batch {result['batch']}, {result['iters']} iterations after {result['warmup']} warm-up, end to end from "
             f"{result['images_from']} images ({result['native_size'][0]}x{result['native_size'][1]}); {result['machine']}",
             head, "-" * len(head)]
    names = short_names([r["model"] for r in result["results"]])
    for r, name in zip(result["results"], names):
        m, e = r["model_only"], r["end_to_end"]
        backend = r["backend"]
        prec = (r.get("ran") or {}).get("precision_report")
        if prec:  # what OpenVINO ran: its inference precision, and int8 where convolutions ran in it
            backend += f":{prec['inference_precision']}" + ("+i8" if any(k in ("i8", "u8") for k in prec["convolutions"]) else "")
        b = r["breakdown_p50_ms"]
        lines.append(f"{name[-40:]:40s} {backend:12s} {m['p50_ms']:9.2f} {m['p90_ms']:9.2f} {m['p99_ms']:9.2f} "
                     f"{m['throughput_ips']:8.1f} {e['p50_ms']:9.2f} {e['throughput_ips']:10.1f} {b['pre']:7.2f} {b['network']:7.2f} {b['post']:7.2f}")
    for r, name in zip(result["results"], names):
        fixed = (r.get("ran") or {}).get("fixed_batch")
        if fixed and result["batch"] > fixed:  # said, so that a batch figure is never taken for one the model ran
            lines.append(f"note: {name} takes batches of {fixed}: each batch of {result['batch']} ran as {result['batch'] // fixed} calls "
                         "(export with --dynamic-batch to run it whole)")
    if "p50_ratio_to_first" in result:
        first = result["results"][0]["model_only"]["p50_ms"]
        lines.append("p50 latency relative to the first model: "
                     + ", ".join(f"{name} {r['model_only']['p50_ms'] / first:.3f}x" for r, name in zip(result["results"], names)))
    return "\n".join(lines)
