"""edgeseg's frozen records (configs, option sets, the model description): how a field is
declared, checked, written and read, in one place.

Declared: ``opt(default, help=..., choices=..., low=..., high=...)`` puts what the command line
needs (help, choices, bounds, the option's name) into the field's metadata, so the CLI makes its
options from the record (edgeseg/cli_options.py) and cannot drift from it.

Checked: ``check_fields(record)``, called from a record's ``__post_init__``, refuses a value
outside its choices or bounds, and any number that is not finite, in one line naming the option.

Written and read: ``to_plain`` turns a record into plain data (dicts, lists, strings, numbers;
tensors pass through) and ``from_plain`` reads it back, typed by the record's own annotations.
Plain data is what goes into a checkpoint, ONNX metadata, an OpenVINO IR's rt_info and an engine
fingerprint, so each of them reads back with the same checks.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from functools import lru_cache
from typing import Any, Union

from edgeseg.errors import ConfigError, ModelFileError


# --------------------------------------------------------------------------- declaring and checking

RESUME_RULES = ("compare", "inherit", "never")


def opt(default=dataclasses.MISSING, *, help: str = "", choices=None, low=None, high=None, low_open: bool = False,
        flag: str | None = None, cli: bool = True, resume: str = "compare", default_factory=dataclasses.MISSING, **extra):
    """A record field with what its command-line option needs.

    ``choices``: the values allowed; ``low``/``high``: inclusive bounds of a number (``low_open``:
    above ``low``, not at it), applied to each value of a tuple; ``flag``: the option's name when
    it is not ``--field-name``; ``cli=False``: no option for it; ``resume`` (training options):
    ``compare`` (taken from the run when not given, refused when given and different),
    ``inherit`` (taken from the run, never compared) or ``never`` (belongs to this invocation).
    ``extra`` keys (``parse``, ``invert``, ``metavar``, ``multiple``, ``show_default``) shape the option;
    ``output`` ("file" or "folder") makes it a path the command writes, checked before any work;
    ``input`` marks a text that may name a file or folder the command reads (no output may be it);
    ``needs`` names the field that must be set for this one to mean anything (``--distill-weight``
    needs ``--teacher``), or is ``(field, values)``: that field must hold one of ``values`` (``--loss``
    needs ``--labels soft``), or is a list of such conditions, all needed: a value other than the
    default without them is refused, never ignored;
    ``excludes`` names a field that, set, makes this one meaningless (``--calib-images`` with
    ``--calib-array``): both given is refused.
    """
    if resume not in RESUME_RULES:
        raise ValueError(resume)
    meta = {"help": help, "choices": tuple(choices) if choices is not None else None, "low": low, "high": high,
            "low_open": low_open, "flag": flag, "cli": cli, "resume": resume, **extra}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=meta)


def flag_of(f: dataclasses.Field) -> str:
    """The command-line name of field ``f``."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _in_bounds(value, low, high, low_open: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    if low is not None and (value <= low if low_open else value < low):
        return False
    return high is None or value <= high


def bounds_text(low, high, low_open: bool, whole: bool = False) -> str:
    what = "a whole number" if whole else "a number"
    if low is not None and high is not None:
        return f"{what} in {'(' if low_open else '['}{low:g}, {high:g}]"
    if low is not None:
        return f"{what} {'above' if low_open else 'at least'} {low:g}"
    return f"{what} at most {high:g}"


def field_default(f: dataclasses.Field):
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def changed_flags(record, given=()) -> list[str]:
    """The command-line names of ``record``'s fields that differ from their defaults or were
    ``given`` (field names typed on the command line, at their default or not)."""
    return [flag_of(f) for f in dataclasses.fields(record)
            if f.metadata and f.metadata.get("cli", True) and (getattr(record, f.name) != field_default(f) or f.name in given)]


def need_conditions(needs) -> list:
    """An ``opt(needs=...)`` as its list of conditions, each a field name or ``(field, values)``."""
    return list(needs) if isinstance(needs, list) else [needs]


def needs_met(record, needs) -> bool:
    """Whether ``record`` has what an ``opt(needs=...)`` asks: each condition's field set, or holding one of its values."""
    for need in need_conditions(needs):
        if isinstance(need, tuple):
            name, values = need
            if getattr(record, name) not in values:
                return False
        elif not getattr(record, need):
            return False
    return True


def check_needs(record, names=None, given=()) -> None:
    """Refuse a field (of ``names``: default, all) set to other than its default, or ``given`` on
    the command line even at its default, without what it needs (``opt(needs=...)``), in one line
    naming both options."""
    fields = {f.name: f for f in dataclasses.fields(record)}
    for f in fields.values():
        needs = f.metadata.get("needs") if f.metadata else None
        if names is not None and f.name not in names:
            continue
        excludes = f.metadata.get("excludes") if f.metadata else None
        if excludes and (getattr(record, f.name) != field_default(f) or f.name in given) and getattr(record, excludes):
            raise ConfigError(f"{flag_of(f)}: has no effect with {flag_of(fields[excludes])}; leave one of them out")
        if not needs or (getattr(record, f.name) == field_default(f) and f.name not in given):
            continue
        for need in need_conditions(needs):
            if needs_met(record, need):
                continue
            if isinstance(need, tuple):
                name, values = need
                given = getattr(record, name)
                allowed = ", ".join(map(str, values[:-1])) + (" or " if len(values) > 1 else "") + str(values[-1])
                raise ConfigError(f"{flag_of(f)}: applies only with {flag_of(fields[name])} {allowed}"
                                  f" (here {given}); change {flag_of(fields[name])} or leave {flag_of(f)} out")
            if fields[need].metadata.get("invert"):  # the needed field is off through its flag (--no-verify)
                raise ConfigError(f"{flag_of(f)}: has no effect with {flag_of(fields[need])}; leave one of them out")
            raise ConfigError(f"{flag_of(f)}: applies only with {flag_of(fields[need])}; add it or leave {flag_of(f)} out")


def check_fields(record, needs: bool = True) -> None:
    """Refuse, in one line naming the option, a field value outside its declared choices or bounds
    (NaN and infinities are outside every bound), or (``needs``) one set without the option it needs."""
    if needs:
        check_needs(record)
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        m = f.metadata
        if value is None or not m:
            continue
        if m.get("choices") is not None:
            values = value if isinstance(value, (tuple, list)) and m.get("multiple") else (value,)
            for v in values:
                if v not in m["choices"]:
                    raise ConfigError(f"{flag_of(f)}: expected one of {', '.join(map(str, m['choices']))}; got '{v}'")
        if m.get("low") is not None or m.get("high") is not None:
            values = value if isinstance(value, (tuple, list)) else (value,)
            for v in values:
                if not _in_bounds(v, m["low"], m["high"], m["low_open"]):
                    whole = isinstance(v, int) and not isinstance(v, bool)
                    raise ConfigError(f"{flag_of(f)} {v!r}: expected {bounds_text(m['low'], m['high'], m['low_open'], whole)}")


# --------------------------------------------------------------------------- writing and reading


def to_plain(obj: Any) -> Any:
    """Dataclasses to dicts (field by field), tuples to lists; everything else as it is."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


@lru_cache(maxsize=None)
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


class _Bad(Exception):
    pass


def _coerce(tp, value, key: str):
    """``value`` as type ``tp`` (a field annotation), or _Bad."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, key)
            except _Bad:
                continue
        raise _Bad(f"expected {tp}, got {value!r:.60}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _Bad(f"expected a mapping, got {type(value).__name__}")
        return _build(tp, value, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _Bad(f"expected a list, got {type(value).__name__}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, key) for v in value)
        if len(args) != len(value):
            raise _Bad(f"expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(a, v, key) for a, v in zip(args, value))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _Bad(f"expected a list, got {type(value).__name__}")
        (arg,) = typing.get_args(tp) or (Any,)
        return [_coerce(arg, v, key) for v in value]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise _Bad(f"expected a mapping, got {type(value).__name__}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise _Bad(f"expected true or false, got {value!r:.60}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
            raise _Bad(f"expected a whole number, got {value!r:.60}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(float(value)):
            raise _Bad(f"expected a number, got {value!r:.60}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _Bad(f"expected text, got {value!r:.60}")
        return value
    return value


def coerce_field(cls, name: str, value):
    """``value`` (read from a file) as record ``cls``'s field ``name`` holds it, or ValueError
    saying what was expected; a field annotated as a bare tuple or list must hold a list."""
    tp = _hints(cls)[name]
    if tp in (tuple, list) and not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list, got {value!r:.60}")
    try:
        return _coerce(tp, value, name)
    except _Bad as exc:
        raise ValueError(str(exc)) from None


def _build(cls, data: dict, where: str):
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise _Bad(f"'{f.name}' is missing")
            continue
        try:
            kwargs[f.name] = _coerce(hints[f.name], data[f.name], f.name)
        except _Bad as exc:
            raise _Bad(f"'{f.name}': {exc}") from None
    return cls(**kwargs)


def from_plain(cls, data: Any, where: str, error=ModelFileError):
    """A ``cls`` record from plain data written by :func:`to_plain`; keys ``cls`` does not know
    (written by a later version) are left out, a missing or mistyped one raises ``error``."""
    if not isinstance(data, dict):
        raise error(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    try:
        return _build(cls, data, where)
    except _Bad as exc:
        raise error(f"{where}: {cls.__name__} entry {exc}") from None
