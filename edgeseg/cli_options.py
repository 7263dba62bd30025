"""Command-line options made from edgeseg's records, and the option types every command shares.

``record_options(Cls)`` adds one click option per field of a frozen record (a ``TrainConfig``,
a ``RunnerSpec``, export options ...) from the field's declaration (edgeseg.records.opt): its
help, choices, name and default. ``take(Cls, kwargs)`` takes those values back out of a command's
arguments and makes the record, which checks them, so an option cannot drift from the record it
sets. Numbers typed on the command line pass through ``Number``, which refuses NaN and infinities
and bounds every count, so no option reaches an allocation or a loop unbounded.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from pathlib import Path

import click
from click.core import ParameterSource

from edgeseg.limits import size_problem
from edgeseg.records import check_needs, flag_of

# --------------------------------------------------------------------------- option types


class Resolution(click.ParamType):
    """``WxH`` -> (width, height), bounded like every size (edgeseg.limits)."""

    name = "WxH"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(value))
        if not m:
            self.fail(f"expected WxH with positive integers, e.g. 512x256; got '{value}'", param, ctx)
        w, h = int(m.group(1)), int(m.group(2))
        problem = size_problem(w, h)
        if problem:
            self.fail(problem, param, ctx)
        return w, h


class Number(click.ParamType):
    """A finite int or float within ``[low, high]`` (``low_open``: above ``low``)."""

    def __init__(self, kind=int, low=None, high=None, low_open: bool = False):
        self.kind, self.low, self.high, self.low_open = kind, low, high, low_open
        self.name = "integer" if kind is int else "float"

    def convert(self, value, param, ctx):
        if isinstance(value, self.kind) and not isinstance(value, bool):
            v = value
        else:
            try:
                v = self.kind(str(value).strip())
            except ValueError:
                self.fail(f"expected {'a whole number' if self.kind is int else 'a number'}, got '{value}'", param, ctx)
        if isinstance(v, float) and not math.isfinite(v):
            self.fail(f"{value}: expected a finite number", param, ctx)
        from edgeseg.records import _in_bounds, bounds_text

        if not _in_bounds(v, self.low, self.high, self.low_open):
            self.fail(f"{value}: expected {bounds_text(self.low, self.high, self.low_open, self.kind is int)}", param, ctx)
        return v


class NonEmptyPath(click.Path):
    """A path that is not the empty string (which would mean the current folder)."""

    def __init__(self, **kw):
        super().__init__(path_type=Path, **kw)

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("expected a path, got an empty string", param, ctx)
        return super().convert(value, param, ctx)


class OutputPath(NonEmptyPath):
    """A path edgeseg writes (``kind`` "file" or "folder"), checked when the option is read, before
    any work: not a folder where a file is meant (or the other way round), not under a file, in a
    folder that takes a new file. ``Command`` below also refuses an output that is one of the
    command's inputs or another of its outputs."""

    def __init__(self, kind: str, path_type=Path, probe: bool = True, report: str | None = None):
        super().__init__()
        self.kind, self.out_type, self.probe, self.report = kind, path_type, probe, report

    def convert(self, value, param, ctx):
        from edgeseg.fileio import output_path_problem, replace_problem

        path = super().convert(value, param, ctx)
        if value == "-":  # the shell's word for standard output: never a file named '-' written without a word
            self.fail(f"'-' (standard output) is not taken here; give a {self.kind} path (./- for a file of that name)", param, ctx)
        problem = output_path_problem(path, self.kind, self.probe)
        if problem is None and self.report is not None:  # a report replaces only a report of its kind
            problem = replace_problem(path, self.report)
        if problem is not None:
            self.fail(problem, param, ctx)
        return self.out_type(path)


RES = Resolution()
PATH = NonEmptyPath()
OUT_FILE = OutputPath("file")
OUT_JSON = OutputPath("file", report="json")
OUT_PNG = OutputPath("file", report="png")
OUT_DIR = OutputPath("folder")
COUNT = Number(int, 1, 10**9)  # images, iterations: at least one, bounded


def count(low: int = 1, high: int = 10**9) -> Number:
    return Number(int, low, high)


# --------------------------------------------------------------------------- commands


class InputText(click.types.StringParamType):
    """A text that may name a file or folder the command reads (``--data``, ``--teacher``, predict's
    inputs, which may also be URLs or camera numbers): no output of the command may be it."""


INPUT_TEXT = InputText()


def _paths(value) -> list[Path]:
    values = value if isinstance(value, (tuple, list)) else (value,)
    return [Path(v) for v in values if v is not None and str(v).strip()]


def check_distinct_paths(ctx: click.Context) -> None:
    """Before any work: no output of the command is one of its inputs (``--json model.pt`` would
    replace the model) or another of its outputs (``--plot x --json x``)."""
    from edgeseg.fileio import same_path

    outputs, inputs = [], []
    for p in ctx.command.params:
        flag = p.opts[0] if isinstance(p, click.Option) else f"one of the {p.name.upper()}"
        value = ctx.params.get(p.name)
        if isinstance(p.type, OutputPath):
            outputs += [(flag, path) for path in _paths(value)]
        elif isinstance(p.type, (click.Path, InputText)):
            inputs += [(flag, path) for path in _paths(value) if path.exists()]
    for i, (flag, path) in enumerate(outputs):
        for other, used in inputs + outputs[:i]:
            if same_path(path, used):
                raise click.BadParameter(f"'{path}' is also {other}; give {flag} a path of its own",
                                         param_hint=flag)


def new_output_folders(ctx: click.Context) -> list[Path]:
    """The highest missing folder of each output path of the command (the command may make it)."""
    made = []
    for p in ctx.command.params:
        if isinstance(p.type, OutputPath):
            for path in _paths(ctx.params.get(p.name)):
                folder = path.absolute() if p.type.kind == "folder" else path.absolute().parent
                if not folder.exists():
                    while not folder.parent.exists():
                        folder = folder.parent
                    made.append(folder)
    return made


def remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` and the folders under it where nothing was written; anything with a file stays."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir() and not p.is_symlink()), key=lambda p: len(p.parts), reverse=True):
        try:
            sub.rmdir()
        except OSError:
            pass
    try:
        folder.rmdir()
    except OSError:
        pass


class Needs(click.Option):
    """An option that means something only with another: ``needs`` is that parameter's name, and
    ``when`` (default: truthy) says whether its value meets the need, ``what`` says it in words. Given
    other than its default without it, the command is refused by name (never the option ignored):
    the command-line twin of ``opt(needs=...)`` for options that are not record fields."""

    def __init__(self, *args, needs: str, when=bool, what: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.needs, self.when, self.what = needs, when, what


def check_needs_options(ctx: click.Context) -> None:
    params = {p.name: p for p in ctx.command.params}
    for p in ctx.command.params:
        if isinstance(p, Needs) and ctx.get_parameter_source(p.name) not in (None, ParameterSource.DEFAULT) \
                and not p.when(ctx.params.get(p.needs)):
            need = params[p.needs]
            # worded as the records' refusals are (records.check_needs): "--x: applies only with ..."
            if isinstance(need, click.Option) and p.when(need.get_default(ctx)):  # met unless that option is given: --exist-ok with data cache --verify
                raise click.UsageError(f"{p.opts[0]}: has no effect with {need.opts[0]}; leave one of them out", ctx)
            if p.what:
                raise click.UsageError(f"{p.opts[0]}: applies only with {p.what}; leave {p.opts[0]} out", ctx)
            what = need.opts[0] if isinstance(need, click.Option) else need.name.upper()
            raise click.UsageError(f"{p.opts[0]}: applies only with {what}; add it or leave {p.opts[0]} out", ctx)


def refuse_repeated_options(command: click.Command, ctx: click.Context, args: list[str]) -> None:
    """An option that takes one value given more than once (``--res 48x36 ... --res 24x18``, ``--verify
    --no-verify``) is refused by name: click would keep the last without a word."""
    try:
        _, _, order = command.make_parser(ctx).parse_args(args=list(args))
    except click.UsageError:
        return  # the parse proper says what is wrong
    counts: dict[int, int] = {}
    for param in order:
        counts[id(param)] = counts.get(id(param), 0) + 1
    for param in command.params:
        if isinstance(param, click.Option) and not param.multiple and not param.count and counts.get(id(param), 0) > 1:
            raise click.UsageError(f"{param.opts[0]}: given {counts[id(param)]} times; give it once", ctx)


class Command(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not ctx.resilient_parsing:
            refuse_repeated_options(self, ctx, args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        check_needs_options(ctx)
        check_distinct_paths(ctx)
        made = new_output_folders(ctx)
        try:
            return super().invoke(ctx)
        except BaseException:
            for folder in made:  # a refused or failed command leaves no empty output folder behind
                remove_if_empty(folder)
            raise


class Group(click.Group):
    command_class = Command
    group_class = type  # sub-groups are Groups too


# --------------------------------------------------------------------------- options from records


def _base_type(tp):
    """The type inside ``X | None``."""
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", typing.Union)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return tp


def _param_type(f, tp, meta):
    tp = _base_type(tp)
    args = typing.get_args(tp)
    if meta.get("parse") is not None:
        return click.STRING
    if meta.get("output") is not None:  # a path the command writes: checked as an output
        return OutputPath(meta["output"], path_type=str)
    if meta.get("input"):
        return INPUT_TEXT
    if typing.get_origin(tp) is tuple and args == (int, int):
        return RES
    if tp is int:
        return Number(int, meta.get("low"), meta.get("high"), meta.get("low_open", False))
    if tp is float:
        return Number(float, meta.get("low"), meta.get("high"), meta.get("low_open", False))
    return click.STRING


def _default_text(value) -> str | None:
    if value is None or value == ():
        return None
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}x{value[1]}"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def record_options(cls, exclude=(), param_prefix: str = "", overrides: dict | None = None):
    """A decorator adding one click option per field of record ``cls`` (fields declared with
    ``cli=False`` and those in ``exclude`` are left out); ``overrides`` maps field names to
    replacement option keywords (e.g. another default)."""
    hints = typing.get_type_hints(cls)
    overrides = overrides or {}

    def deco(fn):
        for f in reversed(dataclasses.fields(cls)):
            meta = f.metadata
            if not meta or not meta.get("cli", True) or f.name in exclude:
                continue
            flag, name = flag_of(f), param_prefix + f.name
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            default = meta.get("cli_default", default)
            help_text = meta.get("help", "")
            metavar = meta.get("metavar")
            if meta.get("choices") is not None:
                metavar = metavar or "[" + "|".join(map(str, meta["choices"])) + "]"
            kw = dict(help=help_text)
            if _base_type(hints[f.name]) is bool:
                kw.update(is_flag=True, default=False)
            elif meta.get("multiple"):
                kw.update(multiple=True, type=INPUT_TEXT if meta.get("input") else click.STRING, metavar=metavar)
            else:
                shown = _default_text(default)
                kw.update(type=_param_type(f, hints[f.name], meta), default=shown if shown is not None else None,
                          show_default=shown is not None, metavar=metavar)
            kw.update(overrides.get(f.name, {}))
            fn = click.option(flag, name, **kw)(fn)
        return fn

    return deco


def take(cls, kwargs: dict, param_prefix: str = "", ctx: click.Context | None = None, **fixed):
    """Pop ``cls``'s option values out of a command's ``kwargs`` and make the record (which checks
    them); ``fixed`` sets fields the command decides. Returns the record and the names of the
    fields given on the command line."""
    hints = typing.get_type_hints(cls)
    values, given = {}, set()
    for f in dataclasses.fields(cls):
        key = param_prefix + f.name
        if key not in kwargs:
            continue
        raw = kwargs.pop(key)
        if ctx is not None and ctx.get_parameter_source(key) == ParameterSource.COMMANDLINE:
            given.add(f.name)
        values[f.name] = _value(f, hints[f.name], raw)
    values.update(fixed)
    record = cls(**values)
    if given and not getattr(record, "resume", False):  # (a resume checks its needs once merged with the run)
        check_needs(record, given=given)  # an option typed at its default still needs what it needs
    return record, given


def _value(f, tp, raw):
    meta = f.metadata
    base = _base_type(tp)
    if base is bool:
        return (not raw) if meta.get("invert") else bool(raw)
    parse = meta.get("parse")
    if meta.get("multiple"):
        return tuple(parse(v) if parse else v for v in raw)
    if raw is None:
        return None
    if parse is not None:
        return parse(raw)
    if typing.get_origin(base) is tuple and not isinstance(raw, tuple):
        return tuple(v.strip() for v in str(raw).split(",") if v.strip())
    return raw


# --------------------------------------------------------------------------- shared option groups


def runner_options(multi: bool = False, exclude=()):
    """How a model runs (RunnerSpec), handed to the command as ``spec``; with ``multi`` as
    ``specs``, one per --model (--backend and --ov-precision then take comma-separated values)."""
    from edgeseg.runtime.spec import RunnerSpec

    each = " Comma-separated: one for all models or one per --model (auto: the model's own)." if multi else ""
    overrides = {"backend": {"help": "Backend for ONNX models: onnxruntime (default) or openvino (needs: pip install "
                             f'"edgeseg[openvino]"); .xml files run on openvino.{each}'},
                 "precision": {"type": click.STRING, "help": "OpenVINO inference precision: auto, f32, bf16, f16 [default: auto, which "
                               f"may run FP32 models in bf16 on CPUs with native bf16]; the precision that ran is reported.{each}"}}

    def deco(fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            ctx = click.get_current_context()
            if not multi:
                spec, _ = take(RunnerSpec, kwargs, ctx=ctx)
                return fn(*args, spec=spec, **kwargs)
            backends = _csv(kwargs.pop("backend")) or [None]
            precisions = _csv(kwargs.pop("precision")) or [None]
            n = max(len(backends), len(precisions))
            if len(backends) not in (1, n) or len(precisions) not in (1, n):
                raise click.BadParameter(f"--backend gives {len(backends)} values and --ov-precision {len(precisions)}; "
                                         "give one value or one per --model", param_hint="--backend")
            base, _ = take(RunnerSpec, kwargs, ctx=ctx)
            specs = [base.with_(backend=backends[k % len(backends)], precision=precisions[k % len(precisions)]) for k in range(n)]
            return fn(*args, specs=specs, **kwargs)

        return record_options(RunnerSpec, exclude=exclude, overrides=overrides)(wrapper)

    return deco


def _csv(value):
    return [v.strip() or None for v in value.split(",")] if value else None


def data_options(default_split: str = "val"):
    """--dataset/--data/--split/--skip-bad (a DataSource), handed to the command as ``source``."""
    from edgeseg.data import DATASETS, DataSource

    def deco(fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            source, _ = take(DataSource, kwargs)
            return fn(*args, source=source, **kwargs)

        overrides = {"dataset": {"type": click.Choice(list(DATASETS))}, "split": {"default": default_split}}
        return record_options(DataSource, overrides=overrides)(wrapper)

    return deco
