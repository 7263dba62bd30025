"""The ``edgeseg`` command line: thin wrappers over public Python functions.

Every user mistake becomes one line on stderr and exit code 2; a failed check
(parity, INT8 budget) exits 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path

import click

from edgeseg import __version__
from edgeseg.errors import EdgesegError

# --------------------------------------------------------------------------- option types


class Resolution(click.ParamType):
    """``WxH`` -> (width, height)."""

    name = "WxH"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(value))
        if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
            self.fail(f"expected WxH with positive integers, e.g. 512x256; got '{value}'", param, ctx)
        return int(m.group(1)), int(m.group(2))


RES = Resolution()


def dataset_options(default_split: str = "val", data_required: bool = False):
    """--dataset/--data/--split/--skip-bad, shared by every command that reads a data set."""

    def deco(fn):
        from edgeseg.data import DATASETS

        fn = click.option("--skip-bad", is_flag=True, help="Skip unreadable or inconsistent samples and report how many.")(fn)
        fn = click.option("--split", default=default_split, show_default=True, help="Data set split.")(fn)
        fn = click.option(
            "--data", "data", type=click.Path(path_type=Path), default=None,
            help="Data set root folder (not needed for synthetic).",
        )(fn)
        fn = click.option(
            "--dataset", type=click.Choice(list(DATASETS)), default=None,
            help="Data set kind [default: synthetic, or the model's training data set where known].",
        )(fn)
        return fn

    return deco


def json_option(fn):
    return click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Also write the result as JSON to this file.")(fn)


def write_json(path: Path | None, obj) -> None:
    if path is None:
        return
    from edgeseg.fileio import write_json_atomic

    write_json_atomic(path, obj)
    click.echo(f"wrote {path}", err=True)


# --------------------------------------------------------------------------- the group


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgeseg")
def cli():
    """Train compact segmentation models at low resolution with soft labels, export them to
    ONNX and TensorRT, and check that every backend still segments like the trained model."""


@cli.group()
def labels():
    """Label diagnostics."""


@labels.command("check")
@dataset_options(default_split="val")
@click.option("--res", type=RES, default="512x256", show_default=True, help="Training resolution to assess.")
@click.option(
    "--modes", default="soft-area,soft-bilinear,nearest,onehot-bilinear", show_default=True,
    help="Comma-separated label modes to compare.",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N samples.")
@json_option
def labels_check(dataset, data, split, skip_bad, res, modes, limit, json_path):
    """How much label information survives down-sampling to --res, per label mode.

    Each label is down-sampled to --res, its class masses up-sampled back
    (bilinear) and arg-maxed; mIoU* against the native label is an upper bound
    for a model trained on those targets.
    """
    from edgeseg.data import build_dataset
    from edgeseg.data.label_check import CHECK_MODES, check_labels
    from edgeseg.errors import ConfigError
    from edgeseg.metrics import format_table

    chosen = [m.strip() for m in modes.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in CHECK_MODES]
    if unknown or not chosen:
        raise ConfigError(f"--modes: unknown mode(s) {unknown}; expected a comma-separated subset of {', '.join(CHECK_MODES)}")
    ds = build_dataset(dataset or "synthetic", data, split, skip_bad)
    if limit:
        ds = ds.subset(range(min(limit, len(ds))))
    result = check_labels(ds, res, chosen)
    rows = {name: {m: result["modes"][m]["per_class"][name] for m in chosen} for name in ds.info.class_names}
    rows["mIoU*"] = {m: result["modes"][m]["miou"] for m in chosen}
    click.echo(f"label fidelity at {res[0]}x{res[1]} on {ds.info.name}/{split} ({len(ds)} images"
               + (f", {ds.skipped} skipped" if ds.skipped else "") + "): IoU % after down- and up-sampling")
    click.echo(format_table(rows, chosen))
    write_json(json_path, result)


# --------------------------------------------------------------------------- entry point


def main(argv=None) -> None:
    try:
        rv = cli.main(args=argv, prog_name="edgeseg", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(130)
    except click.exceptions.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        click.echo(f"error: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except EdgesegError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)
