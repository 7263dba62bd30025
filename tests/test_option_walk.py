"""Every option of every command, from the click definitions, fed hostile values: NaN, infinities,
negative numbers, 2**70, an empty string and absurd sizes. Each must be one line on stderr with
exit code 2, no traceback and no hang; a numeric or size option must be refused by name, at the
option (not later by some file check). A new option is walked as soon as it exists."""

from __future__ import annotations

import signal
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
