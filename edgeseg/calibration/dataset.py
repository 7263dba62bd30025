"""Calibration data: real training images that cover every class, pre-processed exactly
like inference, described by a manifest whose hash keys every calibration cache."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeseg.data.base import SegDataset
from edgeseg.errors import ConfigError, DataError
from edgeseg.fileio import sha256_file
from edgeseg.progress import Progress
from edgeseg.runtime.processing import Preprocess

logger = logging.getLogger(__name__)

MIN_IMAGES = 10
WARN_BELOW = 100


@dataclass
class CalibrationSet:
    inputs: np.ndarray  # (N, ...) in the model's input layout
    manifest: dict

    @property
    def sha256(self) -> str:
        return manifest_hash(self.manifest)

    def __len__(self) -> int:
        return len(self.inputs)


def manifest_hash(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def _preprocess_record(meta) -> dict:
    return {"res": list(meta.input_res), "kernel": meta.kernel, "mean": list(meta.mean), "std": list(meta.std), "layout": meta.input_layout}


def _sample_digest(ds: SegDataset, i: int, image: np.ndarray) -> tuple[str | None, str]:
    pairs = getattr(ds, "pairs", None)
    if pairs is not None:
        return str(pairs[i][0]), sha256_file(pairs[i][0])
    return None, hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def select_covering(ds: SegDataset, n: int, seed: int, progress: bool = True) -> tuple[list[int], dict[str, int], list[str]]:
    """Indices of ``n`` samples, chosen so that every class present in ``ds`` appears.

    Classes are visited from the rarest; each gets up to ``n / (4 C)`` images that
    contain it, and the rest is filled in a seeded random order.
    """
    C = ds.info.num_classes
    order = np.random.default_rng([seed, 4242]).permutation(len(ds)).tolist()
    pool = order if len(order) <= 4 * n else order[: 4 * n]
    present: dict[int, np.ndarray] = {}
    bar = Progress(len(pool), "calibration: class coverage", "img", enabled=progress)
    for i in pool:
        lab = ds[i].label
        counts = np.bincount(lab[lab < C].ravel(), minlength=C)
        present[i] = counts > 0
        bar.update()
    bar.close()
    pres = np.array([present[i] for i in pool]) if pool else np.zeros((0, C), bool)
    per_class = max(1, n // (4 * C))
    chosen: list[int] = []
    taken = set()
    have = np.zeros(C, dtype=np.int64)  # chosen images containing each class
    for c in np.argsort(pres.sum(0), kind="stable"):
        for k, i in enumerate(pool):
            if have[c] >= per_class or len(chosen) >= n:
                break
            if i not in taken and pres[k, c]:
                chosen.append(i)
                taken.add(i)
                have += pres[k]
    for i in order:
        if len(chosen) >= n:
            break
        if i not in taken:
            chosen.append(i)
            taken.add(i)
    covered = {name: int(sum(present[i][c] for i in chosen if i in present)) for c, name in enumerate(ds.info.class_names)}
    absent = [name for name, k in covered.items() if k == 0]
    return chosen, covered, absent


def build_calibration_set(meta, ds: SegDataset, n: int = 300, seed: int = 0, progress: bool = True, warn=None) -> CalibrationSet:
    """``n`` images of ``ds`` (a training split), pre-processed for ``meta``'s model."""
    warn = warn or logger.warning
    if n < MIN_IMAGES:
        raise ConfigError(f"--calib-images {n}: INT8 calibration needs at least {MIN_IMAGES} images (300 recommended)")
    if len(ds) < MIN_IMAGES:
        raise DataError(f"{ds.info.name}/{ds.split} has {len(ds)} images; INT8 calibration needs at least {MIN_IMAGES}")
    if n > len(ds):
        warn(f"asked for {n} calibration images but {ds.info.name}/{ds.split} has {len(ds)}; using all of them")
        n = len(ds)
    if n < WARN_BELOW:
        warn(f"calibrating on {n} images; fewer than {WARN_BELOW} often gives poor INT8 ranges")
    chosen, covered, absent = select_covering(ds, n, seed, progress)
    if absent:
        warn(f"no calibration image contains class(es) {', '.join(absent)}")
    pre = Preprocess.from_meta(meta)
    files, batches = [], []
    bar = Progress(len(chosen), "calibration: pre-processing", "img", enabled=progress)
    for i in chosen:
        s = ds[i]
        path, digest = _sample_digest(ds, i, s.image)
        files.append({"name": s.name, "image": path, "sha256": digest})
        batches.append(pre([s.image]))
        bar.update()
    bar.close()
    manifest = {
        "version": 1,
        "dataset": ds.info.name,
        "split": ds.split,
        "n": len(chosen),
        "seed": seed,
        "preprocess": _preprocess_record(meta),
        "class_images": covered,
        "absent_classes": absent,
        "files": files,
    }
    return CalibrationSet(np.concatenate(batches), manifest)


def calibration_set_from_array(path: Path, meta) -> CalibrationSet:
    """Pre-processed inputs saved with ``numpy.save``; their shape must match the model input."""
    expected, dtype = meta.input_shape(1)[1:], meta.input_dtype
    want = f"a .npy array of shape (N, {', '.join(map(str, expected))}) and a numeric type (numpy.save)"
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({str(exc).splitlines()[0][:120]}); expected {want}") from None
    if not isinstance(arr, np.ndarray):  # an .npz archive
        arr.close()
        raise DataError(f"{path}: an .npz archive of arrays; expected {want}")
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{path}: calibration array of type {arr.dtype}; expected {want}")
    if arr.ndim != 4 or tuple(arr.shape[1:]) != expected:
        raise DataError(f"{path}: calibration array has shape {tuple(arr.shape)}; the model takes (N, {', '.join(map(str, expected))})")
    if len(arr) < MIN_IMAGES:
        raise DataError(f"{path}: {len(arr)} calibration inputs; INT8 calibration needs at least {MIN_IMAGES}")
    arr = np.asarray(arr)
    if arr.dtype.kind == "f" and not bool(np.isfinite(arr).all()):
        raise DataError(f"{path}: the calibration array holds NaN or infinite values; expected pre-processed images")
    if dtype == np.uint8 and arr.dtype != np.uint8 and (arr.min() < 0 or arr.max() > 255 or not bool((arr == np.round(arr)).all())):
        raise DataError(f"{path}: this model takes uint8 images; the calibration array holds values outside whole 0..255")
    manifest = {"version": 1, "array": str(path), "sha256": sha256_file(path), "n": len(arr), "preprocess": _preprocess_record(meta)}
    return CalibrationSet(arr.astype(dtype, copy=False), manifest)
