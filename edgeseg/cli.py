"""The ``edgeseg`` command line: thin wrappers over public Python functions.

Options that set a record (TrainConfig, RunnerSpec, DataSource, the export options) are made
from its fields (edgeseg.cli_options); the rest are declared here with bounded types. Every
user mistake becomes one line on stderr and exit code 2; a failed check (parity, INT8 budget)
exits 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.core import ParameterSource

from edgeseg import __version__
from edgeseg.cli_options import COUNT, INPUT_TEXT, OUT_DIR, OUT_JSON, OUT_PNG, PATH, RES, Group, Needs, OutputPath, Number, count, data_options, record_options, runner_options, take
from edgeseg.errors import EdgesegError, os_error_line
from edgeseg.progress import configure_logging, end_line, one_line
from edgeseg.trainer.config import TrainConfig


def quiet_option(fn):
    return click.option("--quiet", is_flag=True, help="No progress bars.")(fn)


def json_option(fn):
    return click.option("--json", "json_path", type=OUT_JSON, default=None, help="Also write the result as JSON to this file.")(fn)


def plot_option(fn):
    return click.option("--plot", "plot_path", type=OUT_PNG, default=None, help='Also draw the result to this PNG (needs: pip install "edgeseg[plot]").')(fn)


def _check_plot(path: Path | None) -> None:
    """Before any work: the plotting package is there and the path is a .png."""
    if path is None:
        return
    if path.suffix.lower() != ".png":
        raise click.BadParameter(f"expected a .png file, got '{path}'", param_hint="--plot")
    from edgeseg.optional import require

    require("matplotlib", "--plot")


def write_json(path: Path | None, obj: dict) -> None:
    """A --json report, marked as one (so that the next run may replace it, and nothing else)."""
    if path is None:
        return
    from edgeseg.fileio import report_json, write_json_atomic

    write_json_atomic(path, report_json(obj, click.get_current_context().command_path))
    click.echo(f"wrote {path}", err=True)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgeseg")
def cli():
    """Train compact segmentation models at low resolution with soft labels, export them to
    ONNX and TensorRT, and check that every backend still segments like the trained model."""


def _csv_set(text) -> set[str]:
    return {part.strip() for part in str(text or "").split(",")}


@cli.group()
def labels():
    """Label diagnostics."""


@labels.command("check")
@data_options(default_split="val")
@click.option("--res", type=RES, default="512x256", show_default=True, help="Training resolution to assess.")
@click.option("--modes", default="soft-area,soft-bilinear,nearest,onehot-bilinear", show_default=True, help="Comma-separated label modes to compare.")
@click.option("--limit", type=COUNT, default=None, help="Use only the first N samples.")
@click.option("--dup-stride", type=count(2, 256), default=16, show_default=True, help="Block size r for the dupsample modes.", cls=Needs,
              needs="modes", when=lambda modes: bool({"dupsample", "stride-bilinear"} & _csv_set(modes)),
              what="--modes dupsample or stride-bilinear")
@click.option("--dup-channels", type=count(1, 4096), default=64, show_default=True, help="C' for the dupsample modes (W fitted on the train split).",
              cls=Needs, needs="modes", when=lambda modes: "dupsample" in _csv_set(modes), what="--modes dupsample")
@json_option
@plot_option
@click.option("--plot-index", type=count(0), default=0, show_default=True, help="The image --plot draws.", cls=Needs, needs="plot_path")
@quiet_option
def labels_check(source, res, modes, limit, dup_stride, dup_channels, json_path, plot_path, plot_index, quiet):
    """How much label information survives down-sampling to --res, per label mode.

    Each label is down-sampled to --res, its class masses up-sampled back (bilinear) and
    arg-maxed; mIoU* against the native label is an upper bound for a model trained on those targets.
    """
    from edgeseg.tasks.labels_check import check_labels_job, format_check

    _check_plot(plot_path)
    result, ds, dup = check_labels_job(source, res, modes, limit, dup_stride, dup_channels, progress=not quiet,
                                       plot_index=plot_index if plot_path is not None else None)
    click.echo(format_check(result, ds, source.split))
    if plot_path is not None:
        from edgeseg.tasks.labels_check import plot_kept

        click.echo(f"wrote {plot_kept(ds, res, list(result['modes']), plot_index, plot_path, dup)}", err=True)
    write_json(json_path, result)


@cli.group(name="data")
def data_group():
    """Data set tools."""


@data_group.command("cache")
@data_options(default_split="train")
@click.option("--out", "out_dir", type=OutputPath("folder", probe=False), required=True,  # --verify only reads it
              help="Folder for the decoded cache (one per split).")
@click.option("--verify", is_flag=True, help="Check the cache in --out against the data set as it is now (every source file's size, "
              "time and SHA-256) instead of building it.")
@click.option("--exist-ok", is_flag=True, cls=Needs, needs="verify", when=lambda verify: not verify,
              help="Replace a cache of another data set, split or folder in --out (rebuilding the same one needs no flag).")
@quiet_option
def data_cache(source, out_dir, verify, exist_ok, quiet):
    """Decode a data set split once into raw arrays that training reads memory-mapped (--cache);
    a cache whose sources changed, of another version, or truncated is refused, never read."""
    from edgeseg.data.cache import build_cache, check_cache

    ds = source.open()
    if verify:
        check_cache(ds, out_dir, verify_hashes=True, option="--out", progress=not quiet)
        click.echo(f"{out_dir}: holds {ds.info.name}/{ds.split} ({len(ds)} samples) as its files are now")
        return 0
    manifest = build_cache(ds, out_dir, progress=not quiet, replace=exist_ok)
    size = sum(f["size"] for rec in manifest["samples"] for f in rec["files"].values())
    click.echo(f"cached {len(ds)} samples of {ds.info.name}/{ds.split} in {out_dir} ({size / 2**20:.0f} MiB); train with --cache {out_dir}")
    return 0


@cli.command()
@record_options(TrainConfig)
def train(**kwargs):
    """Train a compact model at low resolution with soft labels.

    With no options: lite0-lraspp on the embedded synthetic scenes at 512x256, a few minutes on
    a CPU. Run under 'torchrun --nproc_per_node N' for DistributedDataParallel (NCCL on GPU,
    gloo on CPU). Ctrl-C saves last.pt; --resume continues exactly where it stopped, with the
    run's own options for those left out.
    """
    from edgeseg.trainer import train as run_train

    if kwargs["resume"] and kwargs["out"] is None:
        raise click.BadParameter("give the run folder to resume, e.g. --out runs/train", param_hint="--resume")
    if kwargs["out"] is None:
        kwargs["out"] = str(_next_run_dir(Path("runs") / "train"))
    cfg, given = take(TrainConfig, kwargs, ctx=click.get_current_context())
    result = run_train(cfg, given=given)
    if result.get("interrupted"):
        return 130
    if result["is_main"]:
        click.echo(f"best val mIoU {result['best_miou']:.2f}; checkpoints in {result['out']} (best.pt, last.pt)")
    return 0


def _next_run_dir(base: Path) -> Path:
    """runs/train, runs/train2, runs/train3 ...: the first that does not exist yet."""
    if not base.exists():
        return base
    n = 2
    while Path(f"{base}{n}").exists():
        n += 1
    return Path(f"{base}{n}")


@cli.command(name="eval")
@click.option("--model", "model_path", type=PATH, required=True,
              help="Checkpoint (.pt), ONNX model (.onnx), TensorRT engine (.engine) or OpenVINO IR (.xml).")
@data_options(default_split="val")
@click.option("--reference", type=PATH, default=None, help="Also run this model (e.g. best.pt) and report parity: pixel agreement and mIoU change.")
@click.option("--batch", type=count(1, 1024), default=1, show_default=True)
@click.option("--limit", type=COUNT, default=None, help="Evaluate the first N images only.")
@click.option("--boundary-band", type=Number(float, 0.0, 0.5), default=0.02, show_default=True,
              help="Boundary IoU's band width as a share of the image diagonal (Cheng et al. 2021); 0 leaves it out.",
              cls=Needs, needs="reference", when=lambda reference: reference is None)  # parity scores mIoU only
@runner_options()
@json_option
@plot_option
@quiet_option
def eval_cmd(model_path, source, reference, batch, limit, boundary_band, spec, json_path, plot_path, quiet):
    """mIoU, per-class IoU, boundary IoU and pixel accuracy at native resolution, with any backend."""
    from edgeseg.tasks.evaluate import evaluate_model, format_eval

    _check_plot(plot_path)
    result = evaluate_model(model_path, spec, source, reference, batch, limit, progress=not quiet, boundary=boundary_band or None)
    click.echo(format_eval(result))
    write_json(json_path, result)
    if plot_path is not None:
        from edgeseg.tasks.plots import plot_eval

        click.echo(f"wrote {plot_eval(result, plot_path)}", err=True)
    return 0


def _format_flags(fn):
    """One flag per export format that is asked for by name (the rows of edgeseg.export.formats)."""
    from edgeseg.export.formats import FLAGS, FORMATS

    for name, flag in reversed(list(FLAGS.items())):
        fn = click.option(flag, f"format_{name}", is_flag=True, help=FORMATS[name].help)(fn)
    return fn


def export_options(fn):
    from edgeseg.export.formats import ExportOptions
    from edgeseg.export.int8 import Int8Options
    from edgeseg.export.onnx_export import OnnxOptions
    from edgeseg.export.trt_build import TrtOptions

    for cls, prefix in ((TrtOptions, "trt_"), (Int8Options, "int8_"), (OnnxOptions, "onnx_"), (ExportOptions, "job_")):
        fn = record_options(cls, param_prefix=prefix)(fn)
    return fn


@cli.command()
@click.option("--model", "checkpoint", type=PATH, required=True, help="Checkpoint to export (e.g. runs/train/best.pt).")
@click.option("--out", "out_dir", type=OUT_DIR, default=None, help="Output folder [default: the checkpoint's folder].")
@_format_flags
@click.option("--fp16", is_flag=True, help="With --trt: FP16 engine; with --trt --int8: float layers may run in FP16 (TensorRT < 11).")
@export_options
@data_options(default_split="val")
@quiet_option
def export(checkpoint, out_dir, fp16, source, quiet, **kwargs):
    """Export a checkpoint to ONNX (and INT8, OpenVINO IR, TensorRT) and prove parity on real images.

    Writes model.onnx and parity.json; --int8 adds model.int8.onnx, int8_report.json and a
    TensorRT calibration cache; --openvino adds OpenVINO IR of each (model.xml, model.int8.xml);
    --trt adds model.engine and model.engine.json. Each file takes its name only after its check
    passes; a check that misses its threshold exits with code 1 and keeps the previous file.
    """
    from edgeseg.export.formats import FLAGS, ExportOptions, Request, refuse_unused_options
    from edgeseg.export.int8 import Int8Options
    from edgeseg.export.onnx_export import OnnxOptions
    from edgeseg.export.trt_build import TrtOptions
    from edgeseg.tasks.export import export_model

    wanted = tuple(name for name in FLAGS if kwargs.pop(f"format_{name}"))
    int8, ctx = "int8" in wanted, click.get_current_context()
    precision = "int8" if int8 else ("fp16" if fp16 else "fp32")
    job, job_given = take(ExportOptions, kwargs, "job_", ctx=ctx, formats=wanted)
    onnx, _ = take(OnnxOptions, kwargs, "onnx_", ctx=ctx)
    int8_opts, int8_given = take(Int8Options, kwargs, "int8_", ctx=ctx)
    trt_opts, trt_given = take(TrtOptions, kwargs, "trt_", ctx=ctx, precision=precision, fp16_fallback=bool(int8 and fp16))
    refuse_unused_options(wanted, fp16, (job, job_given), (int8_opts, int8_given), (trt_opts, trt_given), source)
    request = Request(checkpoint, out_dir if out_dir is not None else checkpoint.parent, job, onnx,
                      int8_opts if int8 else None, trt_opts if "tensorrt" in wanted else None)
    export_model(request, source, progress=not quiet)
    return 0


@cli.command()
@click.option("--model", "models", type=PATH, multiple=True, required=True, help="Model file; repeat to time several side by side in one run.")
@click.option("--batch", type=count(1, 1024), default=1, show_default=True)
@click.option("--iters", type=count(1, 1_000_000), default=50, show_default=True)
@click.option("--warmup", type=count(0, 1_000_000), default=10, show_default=True)
@click.option("--in-process", is_flag=True, help="Time several models in this process instead of a worker process each "
              "(their thread pools then compete and distort the ratios).")
@click.option("--block", type=count(1, 1_000_000), default=None, help="Iterations each worker runs per turn [default: 10].")
@data_options(default_split="val")
@runner_options(multi=True, exclude=("strict", "scales", "tta"))
@json_option
@quiet_option
def bench(models, batch, iters, warmup, in_process, block, source, specs, json_path, quiet):
    """Latency p50/p90/p99 and throughput, model only and end to end, with the end-to-end time split
    into pre-processing, network and post-processing.

    Several models take turns, each in its own worker process, so that one engine's threads
    do not slow the next; ratios are to the first model."""
    from edgeseg.tasks.bench import bench as run_bench
    from edgeseg.tasks.bench import format_bench

    if in_process and len(models) == 1:
        raise click.BadParameter("applies only to several --model (one model runs in this process anyway); leave it out",
                                 param_hint="--in-process")
    named = any(click.get_current_context().get_parameter_source(n) == ParameterSource.COMMANDLINE for n in ("dataset", "data", "split", "skip_bad"))
    result = run_bench(list(models), specs, source, batch, iters, warmup, progress=not quiet, isolate=False if in_process else None, block=block,
                       named=named)
    click.echo(format_bench(result))
    if result["images_note"]:
        click.echo(f"note: end to end from synthetic images: {result['images_note']}", err=True)
    write_json(json_path, result)
    return 0


def _any_video(inputs) -> bool:
    from edgeseg.tasks.video import names_video

    return any(names_video(i) for i in inputs or ())


VIDEO_ONLY = dict(cls=Needs, needs="inputs", when=_any_video, what="a video input (file, camera or stream URL)")


@cli.command()
@click.option("--model", "model_path", type=PATH, required=True)
@click.argument("inputs", nargs=-1, type=INPUT_TEXT)
@click.option("--out", "out_dir", type=OUT_DIR, required=True, help="Folder for <name>_label.png and <name>_overlay.png.")
@runner_options(exclude=("scales", "tta"))
@click.option("--alpha", type=Number(float, 0.0, 1.0), default=0.5, show_default=True, help="Overlay opacity.")
@click.option("--every", type=count(1, 100_000), default=1, show_default=True, help="Video: segment every Nth frame.", **VIDEO_ONLY)
@click.option("--labels", "labels", is_flag=True, help="Video: also write a label PNG per frame.", **VIDEO_ONLY)
@click.option("--exist-ok", is_flag=True, help="Replace outputs that exist (label and overlay PNGs, overlay videos and their label PNGs).")
@quiet_option
def predict(model_path, inputs, out_dir, spec, alpha, every, labels, exist_ok, quiet):
    """Segment images and folders (label and overlay PNGs), or a video file, camera index (0) or
    stream URL (rtsp://, http://) into an overlay video; video needs: pip install "edgeseg[video]"."""
    from edgeseg.tasks.predict import predict as run_predict

    result = run_predict(model_path, inputs, out_dir, spec, alpha, progress=not quiet, every=every, labels=labels, exist_ok=exist_ok)
    if result["outputs"]:
        click.echo(f"wrote {result['outputs']} label and overlay pairs to {result['out']}")
    for v in result["videos"]:
        t = v["seconds"]
        click.echo(f"wrote {v['video']} ({v['frames']} frames, {v['codec']}, {v['fps']} frames/s; decode {t['decode']:.1f} s, "
                   f"infer {t['infer']:.1f} s, encode {t['encode']:.1f} s of {t['wall']:.1f} s)"
                   + (" - interrupted, the video holds the frames so far" if v["interrupted"] else ""))
    return 0


@cli.command()
@click.option("--model", "model_path", type=PATH, required=True, help="Teacher: checkpoint or ONNX model with logits.")
@click.option("--images", "images", type=PATH, multiple=True, required=True, help="Image files or folders (repeatable).")
@click.option("--out", "out_dir", type=OUT_DIR, required=True, help="Output folder data set (images/, masks/, classes.json).")
@click.option("--threshold", type=Number(float, 0.0, 1.0), default=0.9, show_default=True, help="Minimum class probability; below it the pixel is void.")
@click.option("--soft", is_flag=True, help="Also write top-2 soft labels (soft/<name>.png, 4 bytes a pixel).")
@runner_options(exclude=("strict", "tta"))
@click.option("--exist-ok", is_flag=True, help="Overwrite labels already in --out.")
@quiet_option
def autolabel(model_path, images, out_dir, threshold, soft, spec, exist_ok, quiet):
    """Teacher predictions to a folder data set that 'edgeseg train' can use (alone or via --extra-data)."""
    from edgeseg.tasks.autolabel import autolabel as run_autolabel

    r = run_autolabel(model_path, list(images), out_dir, threshold, spec, soft, exist_ok, progress=not quiet)
    click.echo(f"labelled {r['images']} images into {r['out']}: {100 * r['labelled_fraction']:.1f}% of pixels at p >= {threshold}"
               + (" (plus top-2 soft labels)" if soft else ""))
    return 0


@cli.command()
@click.option("--classes", type=count(1, 254), default=19, show_default=True, help="Classes for the parameter count.")
def models(classes):
    """The registered architectures, with parameter counts."""
    from edgeseg.models import DEFAULT_MODEL, MODELS, ModelConfig, build_model

    for name, builder in MODELS.items():
        n = sum(p.numel() for p in build_model(ModelConfig(name, classes)).parameters())
        doc = (builder.__doc__ or "").strip().splitlines()[0] if builder.__doc__ else ""
        click.echo(f"{name:18s} {n / 1e6:6.2f} M params  {doc}" + ("  [default]" if name == DEFAULT_MODEL else ""))
    return 0


# --------------------------------------------------------------------------- entry point


def main(argv=None) -> None:
    configure_logging()
    try:
        try:
            rv = cli.main(args=argv, prog_name="edgeseg", standalone_mode=False)
        finally:
            end_line()  # a bar's line left open on a terminal ends before the error
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(130)
    except click.exceptions.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        click.echo(one_line(f"error: {exc.format_message()}{hint}"), err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(one_line(f"error: {exc.format_message()}"), err=True)
        sys.exit(exc.exit_code)
    except EdgesegError as exc:
        click.echo(one_line(f"error: {exc}"), err=True)
        sys.exit(exc.exit_code)
    except OSError as exc:  # a file that cannot be read or written: permissions, a full disk, a file in the way
        click.echo(one_line(f"error: {os_error_line(exc)}"), err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)
