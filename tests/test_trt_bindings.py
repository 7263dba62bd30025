"""The TensorRT test double and edgeseg's TensorRT calls, held against the real Python bindings of
each generation (8.6.1 standing in for 8.5, 10.13, 11.4), loaded over stub native libraries
(tests/trt_real.py). Run alone with `python -m pytest -m trt_bindings`; the default suite runs it
too, and skips it with the reason where the package registry cannot be reached."""

import enum
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from trt_double import GENERATIONS, double_classes, make_tensorrt
from trt_real import real_surface

pytestmark = pytest.mark.trt_bindings
ROOT = Path(__file__).resolve().parents[1]
HOOKS = {"calls", "FAKE_DEVICE", "generation"}  # the double's test hooks, not TensorRT API


@pytest.fixture(scope="module", params=sorted(GENERATIONS))
def pair(request):
    """(double module, real surface) of one generation."""
    return make_tensorrt(GENERATIONS[request.param]), real_surface(request.param)["names"]


def test_the_double_exposes_nothing_the_real_module_lacks(pair):
    double, real = pair
    extra = sorted(n for n in vars(double) if not n.startswith("_") and n not in HOOKS and n not in real)
    assert not extra, f"the double has names the real module lacks: {extra}"
    problems = []
    for name, cls in double_classes(double).items():
        if real[name]["kind"] != "class":
            problems.append(f"{name} is a {real[name]['kind']} in the real module")
            continue
        own = {a for a in vars(cls) if not a.startswith("_")}
        problems += [f"{name}.{a}" for a in sorted(own - set(real[name]["attrs"]))]
    assert not problems, f"double class members the real classes lack: {problems}"


def test_the_double_enum_values_are_the_real_ones(pair):
    double, real = pair
    wrong = []
    for name, obj in vars(double).items():
        if isinstance(obj, type) and issubclass(obj, enum.Enum):
            members = real[name].get("members")
            if members is None:
                wrong.append(f"{name} is not an enum in the real module")
                continue
            wrong += [f"{name}.{m.name} = {int(m)} (real: {members.get(m.name, 'absent')})" for m in obj if members.get(m.name) != int(m)]
    assert not wrong, f"enum values that differ from the real bindings: {wrong}"


@pytest.fixture(scope="module")
def touched(tmp_path_factory):
    """What edgeseg touches of the tensorrt API: the TensorRT tests run once with the double recording."""
    record = tmp_path_factory.mktemp("trt-record") / "touched.json"
    env = {**os.environ, "EDGESEG_TRT_RECORD": str(record), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests/test_tensorrt.py",
                           "tests/test_runtime.py", "-k", "tensorrt or trt or engine"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:]
    data = json.loads(record.read_text())
    assert len(data["touched"]) > 50 and len(data["calls"]) > 20
    return data


@pytest.mark.parametrize("generation", sorted(GENERATIONS))
def test_everything_edgeseg_touches_exists_in_the_real_module(touched, generation):
    real = real_surface(generation)["names"]
    major = int(GENERATIONS[generation].split(".")[0])
    missing = []
    for m, owner, name in touched["touched"]:
        if m != major:
            continue
        if owner == "tensorrt":
            ok = name in real
        elif owner in real:
            ok = name in real[owner].get("attrs", ()) or name in real[owner].get("members", {})
        else:
            ok = False
        if not ok:
            missing.append(f"{owner}.{name}")
    assert not missing, f"edgeseg uses, under TensorRT {generation}, what the real bindings lack: {sorted(set(missing))}"


def _params(signature: str) -> list[tuple[str, str, bool]]:
    """``name(self: X, a: T, b: U = 0) -> R`` -> [(a, T, False), (b, U, True)] (self dropped)."""
    inner = signature[signature.index("(") + 1 : signature.rindex(") ->")]
    out, depth, part = [], 0, ""
    for ch in inner + ",":
        if ch == "," and depth == 0:
            if part.strip():
                name, _, rest = part.strip().partition(":")
                typ, _, default = rest.partition("=")
                out.append((name.strip(), typ.strip().split(".")[-1], bool(default.strip())))
            part = ""
            continue
        depth += ch in "[(" 
        depth -= ch in "])"
        part += ch
    return out[1:] if out and out[0][0] == "self" else out


def _fits(kind: str, typ: str) -> bool:
    """Whether pybind11 accepts a Python value of ``kind`` for a parameter typed ``typ``."""
    typ = {"SupportsInt": "int", "SupportsFloat": "float", "Buffer": "buffer"}.get(typ, typ)
    if typ.startswith("List["):
        typ = "list"
    if kind == typ or typ == "object":
        return True
    return {
        "int": kind in ("int", "bool") or kind.endswith("Flag") or kind in ("DataType", "DeviceType", "MemoryPoolType"),
        "float": kind in ("int", "float"),
        "Dims": kind in ("tuple", "list"),
        "tuple": kind == "tuple",
        "list": kind == "list",
        "buffer": kind in ("bytes", "bytearray", "memoryview", "IHostMemory"),
        "str": kind == "str",
        "bool": kind == "bool",
    }.get(typ, False)


@pytest.mark.parametrize("generation", sorted(GENERATIONS))
def test_the_arguments_edgeseg_passes_fit_the_real_signatures(touched, generation):
    real = real_surface(generation)["names"]
    major = int(GENERATIONS[generation].split(".")[0])
    bad = []
    for m, owner, method, kinds, keywords in touched["calls"]:
        if m != major or owner not in real:
            continue
        overloads = [line.split(". ", 1)[-1] for line in real[owner]["docs"].get(method, [])]
        if not overloads:
            bad.append(f"{owner}.{method}: no signature in the real module")
            continue
        def fits(sig):
            params = _params(sig)
            if len(kinds) > len(params):
                return False
            given = {p[0] for p in params[: len(kinds)]} | set(keywords)
            if any(not p[2] and p[0] not in given for p in params) or not set(keywords) <= {p[0] for p in params}:
                return False
            return all(_fits(k, p[1]) for k, p in zip(kinds, params))
        if not any(fits(sig) for sig in overloads):
            bad.append(f"{owner}.{method}({', '.join(kinds)}{', ' if kinds and keywords else ''}{', '.join(k + '=' for k in keywords)}) "
                       f"fits none of: {' | '.join(overloads)}")
    assert not bad, "calls whose arguments the real bindings would reject:\n" + "\n".join(bad)
