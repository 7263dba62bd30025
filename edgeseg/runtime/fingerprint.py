"""The engine fingerprint: ``<engine>.json`` beside a TensorRT engine, written by the
builder and checked by the runner, so that an engine from another TensorRT or GPU
reads as "rebuild on the target" rather than as a deserialisation failure."""

from __future__ import annotations

import json
from pathlib import Path

from edgeseg.errors import ModelFileError
from edgeseg.fileio import parse_json, shape_problem


def fingerprint_path(engine_path: Path) -> Path:
    return Path(str(engine_path) + ".json")


def gpu_info() -> dict:
    """This machine's GPU as the fingerprint records it."""
    import torch

    if not torch.cuda.is_available():
        return {"gpu": None, "compute_capability": None, "cuda": torch.version.cuda}
    major, minor = torch.cuda.get_device_capability()
    return {"gpu": torch.cuda.get_device_name(), "compute_capability": f"{major}.{minor}", "cuda": torch.version.cuda}


def read_fingerprint(engine_path: Path) -> dict:
    path = fingerprint_path(engine_path)
    if not path.is_file():
        raise ModelFileError(f"{engine_path}: no {path.name} beside it; edgeseg runs engines it built (rebuild with 'edgeseg export --trt')")
    try:
        fp = parse_json(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: unreadable engine fingerprint ({exc})") from None
    if not isinstance(fp, dict) or not isinstance(fp.get("meta", {}), dict):
        raise ModelFileError(f"{path}: expected a JSON object written by 'edgeseg export --trt', found {type(fp).__name__}")
    # what is read from it: optional keys, each of its kind where present
    present = {k: v for k, v in FINGERPRINT_SHAPE.items() if k in fp}
    build = fp.get("build_options")
    problem = shape_problem(fp, present) or (shape_problem(build, {"max_batch": int}, "build_options")
                                             if isinstance(build, dict) and "max_batch" in build else None)
    if problem is None and isinstance(build, dict) and "max_batch" in build and not 1 <= build["max_batch"] <= 1 << 16:
        problem = f"build_options.max_batch: {build['max_batch']} is not a batch size"
    if problem:
        raise ModelFileError(f"{path}: damaged engine fingerprint ({problem}); rebuild with 'edgeseg export --trt'")
    return fp


FINGERPRINT_SHAPE = {"meta": dict, "build_options": dict, "engine_sha256": str, "precision": str,
                     "tensorrt": str, "gpu": (str, type(None)), "compute_capability": (str, type(None))}


def check_fingerprint(path: Path, fp: dict, trt_version: str, gpu: dict) -> None:
    """Refuse an engine built with another TensorRT version or on another GPU."""
    built_on = f"TensorRT {fp.get('tensorrt')} on {fp.get('gpu')} (compute {fp.get('compute_capability')})"
    here = f"TensorRT {trt_version} on {gpu.get('gpu')} (compute {gpu.get('compute_capability')})"
    if fp.get("tensorrt") != trt_version or fp.get("compute_capability") != gpu.get("compute_capability") or fp.get("gpu") != gpu.get("gpu"):
        raise ModelFileError(
            f"{path}: engine was built with {built_on}; this machine has {here}; rebuild it on the target: "
            "edgeseg export --model <its checkpoint, e.g. best.pt> --trt"
        )


def check_engine_file(path: Path, fp: dict) -> None:
    """Refuse an engine that is not the one its fingerprint describes (swapped or rebuilt beside it)."""
    recorded = fp.get("engine_sha256")
    if recorded is None:
        return  # fingerprints written before edgeseg recorded the engine's own hash
    from edgeseg.fileio import sha256_file

    if sha256_file(path) != recorded:
        raise ModelFileError(f"{path}: the engine is not the one {fingerprint_path(path).name} describes (SHA-256 differs); "
                             "rebuild both with 'edgeseg export --trt'")
