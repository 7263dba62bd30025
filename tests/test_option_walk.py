"""Every option of every command, from the click definitions, fed hostile values: NaN, infinities,
negative numbers, 2**70, an empty string and absurd sizes. Each must be one line on stderr with
exit code 2, no traceback and no hang; a numeric or size option must be refused by name, at the
option (not later by some file check). A new option is walked as soon as it exists."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import click
import pytest

from edgeseg.cli import cli
from edgeseg.cli_options import Number, Resolution

NUMERIC = ("nan", "inf", "-inf", "-1", str(2**70), "", "1e400", "0x10", "1e3x")
SIZES = ("100000x100000", "0x0", "16385x1", "nanxnan", "-5x5", "", "512")
TEXT = ("nan", "inf", "-1", str(2**70), "", "100000x100000", "a" * 5000)  # (no NUL: a command line cannot hold one)


def commands(group=cli, path=()):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from commands(cmd, path + (name,))
        else:
            yield path + (name,), cmd


def base_args(path, cmd, tmp: Path) -> list[str]:
    """The least command line that parses, pointing at things that do not exist (so a value that
    gets past every check fails fast on the missing file, never starts real work)."""
    args = list(path)
    names = {o for p in cmd.params if isinstance(p, click.Option) for o in p.opts}
    if "--dataset" in names:
        args += ["--dataset", "folder", "--data", str(tmp / "no-data")]
    for p in cmd.params:
        if isinstance(p, click.Option) and p.required:
            args += [p.opts[0], str(tmp / ("none.pt" if p.opts[0] == "--model" else p.opts[0].strip("-")))]
        elif isinstance(p, click.Argument):
            args += [str(tmp / "none.png")]
    return args


def walked_options():
    for path, cmd in commands():
        for p in cmd.params:
            if not isinstance(p, click.Option) or p.is_flag or isinstance(p.type, click.Choice):
                continue
            yield path, cmd, p


def values_for(p) -> tuple[str, ...]:
    if isinstance(p.type, Number):
        return NUMERIC
    if isinstance(p.type, Resolution):
        return SIZES
    return TEXT


def test_every_numeric_option_is_bounded():
    """No number reaches a command unbounded: every int or float option is a Number (finite, with
    bounds) or a size; the few without an upper bound are checked where they are used."""
    unbounded = []
    for path, _, p in walked_options():
        t = p.type
        if isinstance(t, (click.types.IntParamType, click.types.FloatParamType)) and not isinstance(t, Number):
            unbounded.append(f"{' '.join(path)} {p.opts[0]}: plain {t.name}")
        elif isinstance(t, Number) and t.high is None and p.opts[0] not in ("--threads", "--upscale"):
            unbounded.append(f"{' '.join(path)} {p.opts[0]}: no upper bound")
    assert not unbounded, unbounded


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


@pytest.mark.parametrize("path", sorted({" ".join(p) for p, _ in commands()}))
def test_every_option_refuses_hostile_values_in_one_line(path, cli_run, tmp_path):
    previous = signal.signal(signal.SIGALRM, _alarm)
    findings = []
    try:
        for cpath, cmd, p in walked_options():
            if " ".join(cpath) != path:
                continue
            base = base_args(cpath, cmd, tmp_path)
            for value in values_for(p):
                if p.opts[0] in base:  # a required option: replace its value
                    args = list(base)
                    args[args.index(p.opts[0]) + 1] = value
                else:
                    args = base + [p.opts[0], value]
                signal.alarm(30)
                try:
                    code, _, err = cli_run(*args)
                except _Hang:
                    findings.append(f"{p.opts[0]} {value!r}: still running after 30 s")
                    continue
                except BaseException as exc:  # noqa: BLE001 - an escaped exception is the finding
                    findings.append(f"{p.opts[0]} {value!r}: {type(exc).__name__}: {exc}")
                    continue
                finally:
                    signal.alarm(0)
                lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
                problem = None
                if code != 2:
                    problem = f"exit {code}"
                elif "Traceback" in err or len(lines) != 1 or not lines[0].startswith("error:"):
                    problem = f"not one line: {err.strip()[:300]!r}"
                elif isinstance(p.type, (Number, Resolution)) and not any(o in lines[0] for o in p.opts):
                    problem = f"refused later, not at the option: {lines[0][:200]!r}"
                if problem:
                    findings.append(f"{p.opts[0]} {value!r}: {problem}")
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert not findings, f"edgeseg {path}:\n" + "\n".join(findings)


WRITES = ("--out", "--json", "--plot", "--timing-cache")  # the options through which a command writes


def output_options():
    from edgeseg.cli_options import OutputPath

    for path, cmd in commands():
        for p in cmd.params:
            if isinstance(p, click.Option) and isinstance(p.type, OutputPath):
                yield path, cmd, p


def test_every_option_that_writes_is_checked_as_an_output():
    from edgeseg.cli_options import OutputPath

    plain = [f"{' '.join(path)} {p.opts[0]}" for path, cmd in commands() for p in cmd.params
             if isinstance(p, click.Option) and p.opts[0] in WRITES and not isinstance(p.type, OutputPath)]
    assert not plain and len(list(output_options())) >= 11, plain


def make_null_device(path: Path) -> Path | None:
    """A character device like /dev/null at ``path`` (where this user may make one; None elsewhere):
    an output there must never be replaced by a file."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except OSError:
        return None
    return path


@pytest.mark.parametrize("path", sorted({" ".join(p) for p, _, _ in output_options()}))
def test_outputs_of_the_wrong_kind_or_equal_to_an_input_are_refused_before_any_work(path, cli_run, tmp_path):
    """For every output option of every command: a folder where a file is meant (or the other way
    round), a path under a file, and a path that is also one of the command's inputs or another
    output are each one line naming the option, exit 2, and the path is left as it was."""
    from edgeseg.cli_options import InputText, OutputPath

    findings = []
    (tmp_path / "a-file").write_text("keep")
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-link").symlink_to(tmp_path / "a-file")
    os.mkfifo(tmp_path / "a-pipe")
    device = make_null_device(tmp_path / "a-device")
    for cpath, cmd, p in output_options():
        if " ".join(cpath) != path:
            continue
        base = base_args(cpath, cmd, tmp_path)

        def run(*pairs):
            args = list(base)
            for opt, value in pairs:
                if opt in args:
                    args[args.index(opt) + 1] = value
                elif opt.startswith("-"):
                    args += [opt, value]
                else:  # an argument: replace the placeholder
                    args[args.index(str(tmp_path / "none.png"))] = value
            return cli_run(*args)

        wrong = tmp_path / ("a-folder" if p.type.kind == "file" else "a-file")
        cases = [((p.opts[0], str(wrong)), p.opts[0]), ((p.opts[0], str(tmp_path / "a-file" / "x" / "y.png")), p.opts[0])]
        cases.append(((p.opts[0], "-"), "standard output"))  # never a file named '-' in the working folder
        if p.type.kind == "file":  # what a whole new file renamed over it would destroy: a link (and its target), a pipe
            cases += [((p.opts[0], str(tmp_path / "a-link")), "is a symbolic link"), ((p.opts[0], str(tmp_path / "a-pipe")), "is a named pipe")]
            cases += [((p.opts[0], str(device)), "is a device")] if device else []
        for q in cmd.params:  # the output given as each input and as each other output
            if q is p or not isinstance(q.type, (click.Path, InputText)):
                continue
            if isinstance(q.type, OutputPath) and q.type.kind != p.type.kind:
                continue  # a file output and a folder output cannot name one path: each is refused for its kind

            same = tmp_path / ("same.png" if p.type.kind == "file" else "same-folder")
            if p.type.kind == "folder":
                same.mkdir(exist_ok=True)
            else:
                same.write_text("keep")
            qname = q.opts[0] if isinstance(q, click.Option) else q.name
            cases.append(((p.opts[0], str(same)), "is also"))
            cases[-1] = (cases[-1][0], "is also", (qname, str(same)))
        for case in cases:
            pair, expect, *more = case
            code, _, err = run(pair, *more)
            lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
            said = expect in lines[0] if lines else False
            said = said or (expect == "is also" and p.type.report is not None and "exists and is not" in lines[0])  # refused for its kind first
            if code != 2 or len(lines) != 1 or not said or "Traceback" in err:
                findings.append(f"{pair} {more}: exit {code}: {err.strip()[:200]!r}")
    assert (tmp_path / "a-file").read_text() == "keep" and (tmp_path / "a-link").is_symlink()
    assert stat.S_ISFIFO((tmp_path / "a-pipe").lstat().st_mode)
    assert device is None or stat.S_ISCHR(device.lstat().st_mode)
    assert not (tmp_path / "same.png").exists() or (tmp_path / "same.png").read_text() == "keep"
    assert not findings, f"edgeseg {path}:\n" + "\n".join(findings)


def test_a_report_never_replaces_a_file_it_did_not_write(cli_run, tmp_path):
    """Every --json and --plot of every command: an existing checkpoint, a data set's JSON or label
    PNG there (files of the report's kind that edgeseg did not write as a report) is refused at the
    option and left as it was; a broken link is refused as one."""
    victims = {tmp_path / "last.pt": b"PK\x03\x04 a checkpoint", tmp_path / "classes.json": b'{"names": ["a", "b"]}',
               tmp_path / "mask.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR a label mask"}
    for victim, data in victims.items():
        victim.write_bytes(data)
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    findings, seen = [], 0
    for path, cmd, p in output_options():
        if p.type.report is None:
            continue
        seen += 1
        for target, expect in [(v, "is not") for v in victims] + [(loop, "link to nothing")]:
            code, _, err = cli_run(*base_args(path, cmd, tmp_path), p.opts[0], str(target))
            if code != 2 or expect not in err or err.strip().count("\n"):
                findings.append(f"{' '.join(path)} {p.opts[0]} {target.name}: exit {code}: {err.strip()[:160]!r}")
    assert all(v.read_bytes() == data for v, data in victims.items())
    assert seen >= 5 and not findings, "\n".join(findings)

    from edgeseg.fileio import replace_problem, report_json, write_json_atomic

    write_json_atomic(tmp_path / "r.json", report_json({"miou": 1}, "edgeseg eval"))  # a report written before
    (tmp_path / "r.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR.........\x00\x00\x00\x15tEXtSoftware\x00edgeseg 0.1.0")
    assert replace_problem(tmp_path / "r.json", "json") is None and replace_problem(tmp_path / "r.png", "png") is None
    assert replace_problem(tmp_path / "r.png", "json") and replace_problem(tmp_path / "r.json", "png")
    (tmp_path / "empty").touch()  # mktemp's
    assert replace_problem(tmp_path / "empty", "json") is None and replace_problem(tmp_path / "empty", "png") is None


def test_a_report_written_by_a_command_is_replaced_by_the_next_run(cli_run, tmp_path, folder_dataset):
    """The mark is what the writers write: eval's --json and --plot, run twice to the same paths."""
    import json

    pytest.importorskip("matplotlib")
    from edgeseg.trainer import TrainConfig, train

    train(TrainConfig(out=str(tmp_path / "run"), res=(24, 18), dataset="folder", data=str(folder_dataset), model="tiny", epochs=1,
                      batch=2, progress=False, workers=0, device="cpu", pretrained="none"))
    args = ["eval", "--model", tmp_path / "run" / "last.pt", "--limit", "1", "--quiet", "--json", tmp_path / "r.json",
            "--plot", tmp_path / "r.png"]
    for _ in range(2):
        code, _, err = cli_run(*args)
        assert code == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["edgeseg_report"] == "edgeseg eval"


@pytest.mark.parametrize("path", sorted({" ".join(p) for p, _, _ in output_options()}))
def test_a_refused_command_leaves_no_output_folder_behind(path, cli_run, tmp_path):
    """Every output option of every command, given a path under folders that do not exist, on a
    command that is then refused (its inputs are missing): exit 2 and none of those folders left.
    (A property over all outputs: today every command is refused here before it makes a folder, so
    this does not exercise the cleanup; the next test does.)"""
    findings = []
    for cmd_path, cmd, p in output_options():
        if " ".join(cmd_path) != path:
            continue
        new = tmp_path / f"new{p.opts[0].strip('-')}"
        target = new / "a" / ("b" if p.type.kind == "folder" else "b.json")
        code, _, err = cli_run(*base_args(cmd_path, cmd, tmp_path), p.opts[0], str(target))
        if code != 2 or new.exists():
            findings.append(f"{p.opts[0]}: exit {code}, left {new.exists()}: {err.strip()[:160]!r}")
    assert not findings, f"edgeseg {path}:\n" + "\n".join(findings)


def test_a_command_refused_after_making_its_folder_removes_only_what_is_empty(cli_run, tmp_path):
    """train makes --out before it opens --teacher: refused, the folders it made go; a folder the
    user had, or one holding a file, stays."""
    code, _, err = cli_run("train", "--out", tmp_path / "a" / "b", "--teacher", tmp_path / "none.pt")
    assert code == 2 and "--teacher" in err and not (tmp_path / "a").exists()
    (tmp_path / "mine").mkdir()
    code, _, err = cli_run("train", "--out", tmp_path / "mine" / "run", "--teacher", tmp_path / "none.pt")
    assert code == 2 and (tmp_path / "mine").is_dir() and not (tmp_path / "mine" / "run").exists()

    from edgeseg.cli_options import OUT_DIR, Command

    @click.command(cls=Command)
    @click.option("--out", type=OUT_DIR)
    def writes_then_fails(out):
        (out / "sub").mkdir(parents=True)
        (out / "sub" / "kept.txt").write_text("x")
        (out / "empty").mkdir()
        raise click.ClickException("refused")

    from click.testing import CliRunner

    assert CliRunner().invoke(writes_then_fails, ["--out", str(tmp_path / "w")]).exit_code == 1
    assert (tmp_path / "w" / "sub" / "kept.txt").exists() and not (tmp_path / "w" / "empty").exists()


def _needs_cases():
    """(command, record, field) for every record field behind a command's options that declares ``needs``."""
    import dataclasses

    from edgeseg.export.formats import ExportOptions
    from edgeseg.trainer import TrainConfig

    for command, record in (("train", TrainConfig), ("export", ExportOptions)):
        for f in dataclasses.fields(record):
            if f.metadata.get("needs") and f.metadata.get("cli", True):
                yield command, record, f


def _need_args(fields, need, met: bool) -> list:
    """Command-line words that meet (``met``) or break one condition of an ``opt(needs=...)``."""
    from edgeseg.records import flag_of

    if isinstance(need, tuple):  # the needed field holding one of the values, or one outside them
        name, values = need
        choices = fields[name].metadata["choices"]
        return [flag_of(fields[name]), next(c for c in choices if (c in values) == met)]
    f = fields[need]
    if f.metadata.get("invert"):  # --no-verify breaks what --verify meets
        return [] if met else [flag_of(f)]
    if not met:
        return []
    value = _other_value(f)
    return [flag_of(f)] + ([value] if value is not None else [])


def test_every_record_option_that_needs_another_is_refused_without_it(cli_run, tmp_path):
    """Each option from a record field declaring ``needs`` (a field to be set, or to hold one of
    some values, or a list of such), given without one of what it needs and with the rest, at a
    value of its own and at its default typed out: one line naming it and the missing option, exit
    2, no output folder."""
    import dataclasses
    import itertools

    from edgeseg.records import flag_of, need_conditions

    cases = list(_needs_cases())
    assert {"data", "loss", "distill_weight", "sr_weight", "min_agreement", "distill_class_weights"} <= {f.name for _, _, f in cases}
    findings = []
    for command, record, f in cases:
        fields = {g.name: g for g in dataclasses.fields(record)}
        conditions = need_conditions(f.metadata["needs"])
        default = f.default if f.default is not dataclasses.MISSING else None
        typed = [_other_value(f)] + ([_typed(default)] if default is not None and not isinstance(default, bool) else [])
        for (broken, need), value in itertools.product(enumerate(conditions), typed):  # a value, and the default typed out
            out = tmp_path / f"{command}-{f.name}-{broken}"
            args = [command, "--out", out, flag_of(f)] + ([value] if value is not None else [])
            if command == "export":
                args += ["--model", tmp_path / "none.pt"]
            for i, other in enumerate(conditions):
                args += _need_args(fields, other, met=i != broken)
            missing = fields[need[0] if isinstance(need, tuple) else need]
            code, _, err = cli_run(*args)
            lines = err.strip().splitlines()
            said = (f"applies only with {flag_of(missing)}" in err) or (f"has no effect with {flag_of(missing)}" in err)
            if code != 2 or len(lines) != 1 or flag_of(f) not in err or not said:
                findings.append(f"{command} {args[3:]}: exit {code}: {err.strip()[:160]!r}")
            if out.exists():
                findings.append(f"{command} {args[3:]}: left {out}")
    assert not findings, "\n".join(findings)


def test_every_record_option_that_another_makes_meaningless_is_refused_with_it(cli_run, tmp_path):
    """Each field declaring ``excludes`` (--calib-images with --calib-array), given with that field:
    one line naming both, exit 2."""
    import dataclasses

    from edgeseg.export.int8 import Int8Options
    from edgeseg.records import flag_of

    findings, seen = [], 0
    for command, record, extra in (("export", Int8Options, ["--int8"]),):
        fields = {f.name: f for f in dataclasses.fields(record)}
        for f in fields.values():
            if not f.metadata.get("excludes"):
                continue
            seen += 1
            other = fields[f.metadata["excludes"]]
            value = _other_value(f)
            args = [command, "--model", tmp_path / "none.pt", *extra, flag_of(other), "x.npy", flag_of(f)] + ([value] if value else [])
            code, _, err = cli_run(*args)
            if code != 2 or err.strip().count("\n") or f"{flag_of(f)}: has no effect with {flag_of(other)}" not in err:
                findings.append(f"{args[3:]}: exit {code}: {err.strip()[:160]!r}")
    assert seen >= 3 and not findings, "\n".join(findings)


def test_every_command_option_that_needs_another_is_refused_without_it(cli_run, tmp_path):
    """The same for options that are not record fields (``Needs`` options: --plot-index needs --plot)."""
    from edgeseg.cli_options import Needs

    findings, seen = [], 0
    for path, cmd in commands():
        for p in cmd.params:
            if not isinstance(p, Needs):
                continue
            seen += 1
            default = p.get_default(click.Context(cmd))
            value = [] if p.is_flag else [str(default) if isinstance(default, (int, float)) else "3"]  # its default, typed out
            need = next(q for q in cmd.params if q.name == p.needs)
            breaks = []  # met unless given (--exist-ok with --verify): give it
            if isinstance(need, click.Option) and p.when(need.get_default(click.Context(cmd))):
                breaks = [need.opts[0]] + ([] if need.is_flag else [str(tmp_path / "given")])  # met unless given (--exist-ok with --verify)
            code, _, err = cli_run(*base_args(path, cmd, tmp_path), p.opts[0], *value, *breaks)
            lines = err.strip().splitlines()
            said = f"has no effect with {need.opts[0]}" if breaks else "applies only with"
            if code != 2 or len(lines) != 1 or p.opts[0] not in err or said not in err:
                findings.append(f"{' '.join(path)} {p.opts[0]} {value} {breaks}: exit {code}: {err.strip()[:160]!r}")
    assert seen >= 4 and not findings, "\n".join(findings)


def _typed(value) -> str:
    """A field's value as typed on a command line (a pair as A,B)."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _other_value(f):
    """A valid value of record field ``f`` other than its default, as typed on a command line."""
    import dataclasses

    m, default = f.metadata, f.default if f.default is not dataclasses.MISSING else f.default_factory()
    if m.get("choices"):
        return next(str(c) for c in m["choices"] if c != default)
    if isinstance(default, bool):
        return None  # a flag: given alone
    if isinstance(default, (int, float)) or f.type in ("int | None", "float | None"):
        low, high = m.get("low"), m.get("high")
        value = (low if low is not None else 0) + (1 if not m.get("low_open") else 0.5)
        value = value if value != default else value + 1
        return str(value if high is None else min(value, high))
    return "x.cache"


def test_export_options_of_a_format_not_asked_for_are_refused_not_ignored(cli_run, tmp_path):
    import dataclasses

    from edgeseg.export.int8 import Int8Options
    from edgeseg.export.trt_build import TrtOptions
    from edgeseg.records import flag_of

    findings = []
    for cls, needs in ((Int8Options, "--int8"), (TrtOptions, "--trt")):
        for f in dataclasses.fields(cls):
            if not f.metadata.get("cli", True):
                continue
            value = _other_value(f)
            flag = flag_of(f)
            args = ["export", "--model", tmp_path / "none.pt", flag] + ([value] if value is not None else [])
            code, _, err = cli_run(*args)
            lines = err.strip().splitlines()
            # refused by name: as not applying without its format, or (--dla) for its own reason first
            if code != 2 or len(lines) != 1 or flag not in err or (f"applies only with {needs}" not in err and flag != "--dla"):
                findings.append(f"{flag} {value}: exit {code}: {err.strip()[:160]!r}")
    assert not findings, "\n".join(findings)


def test_options_for_inputs_or_modes_a_run_does_not_have_are_refused(cli_run, tmp_path):
    """Video options on image inputs, --block with a single model in process: refused by name
    before the model is loaded, never ignored."""
    import numpy as np
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    for flag in (["--every", "3"], ["--every", "1"], ["--labels"]):  # (--every 1 is its default, typed out)
        code, _, err = cli_run("predict", "--model", tmp_path / "none.pt", tmp_path / "a.png", "--out", tmp_path / "o", *flag)
        assert code == 2 and f"{flag[0]}: applies only with a video input" in err and err.count("\n") == 1, err
    for extra in ([], ["--model", tmp_path / "other.pt", "--in-process"]):
        code, _, err = cli_run("bench", "--model", tmp_path / "none.pt", "--block", "3", *extra)
        assert code == 2 and "--block: applies only when models run in worker processes" in err, err
    assert not (tmp_path / "o").exists()
    for extra, said in ((["--trt", "--max-batch", "4"], "--max-batch: applies only with --dynamic-batch"),
                        (["--trt", "--int8-mode", "explicit"], "--int8-mode explicit: applies only with --trt --int8")):
        code, _, err = cli_run("export", "--model", tmp_path / "none.pt", "--out", tmp_path / "x", *extra)
        assert code == 2 and said in err and err.count("\n") == 1, err
    code, _, err = cli_run("bench", "--model", tmp_path / "none.pt", "--in-process")
    assert code == 2 and "--in-process" in err and "several --model" in err, err


def test_export_options_serving_only_the_checks_are_refused_with_no_verify(cli_run, tmp_path):
    """--device runs the parity checks only: with --no-verify it is refused, with --int8 too and at
    its default typed out; the data set also serves INT8 calibration, so it is refused only without --int8."""
    base = ["export", "--model", tmp_path / "none.pt", "--out", tmp_path / "o", "--no-verify"]
    for extra, flag in ((["--device", "cpu"], "--device"), (["--int8", "--device", "cuda:1"], "--device"),
                        (["--split", "train"], "--split")):
        code, _, err = cli_run(*base, *extra)
        assert code == 2 and flag in err and "has no effect with --no-verify" in err and err.count("\n") == 1, (extra, err)
    code, _, err = cli_run(*base, "--int8", "--split", "train")
    assert code == 2 and "has no effect" not in err, err  # taken (then the missing checkpoint is what is refused)
    assert not (tmp_path / "o").exists()


def test_every_option_that_takes_one_value_is_refused_when_given_twice(cli_run, tmp_path):
    """click keeps the last of a repeated option without a word; every single-value option of every
    command (flags and their --no- forms too) given twice is refused by name; repeatable ones are not."""
    from edgeseg.cli_options import refuse_repeated_options

    missed, checked = [], 0
    for path, cmd in commands():
        ctx = click.Context(cmd, info_name=path[-1])
        for p in cmd.params:
            if not isinstance(p, click.Option) or p.hidden or p.opts[0] == "--help":
                continue
            once = [p.opts[0]] if p.is_flag else [p.opts[0], "1"]
            twice = once + ([p.secondary_opts[0]] if p.secondary_opts else once)
            try:
                refuse_repeated_options(cmd, ctx, twice)
                refused = False
            except click.UsageError as exc:
                refused = f"{p.opts[0]}: given 2 times" in exc.format_message()
            if refused == (p.multiple or p.count):
                missed.append(f"edgeseg {' '.join(path)} {' '.join(twice)}")
            checked += 1
    assert not missed and checked > 150, missed
    code, _, err = cli_run("train", "--res", "48x36", "--epochs", "1", "--res", "24x18", "--out", tmp_path / "run")
    assert code == 2 and err.count("\n") == 1 and "--res: given 2 times; give it once" in err and not (tmp_path / "run").exists()
