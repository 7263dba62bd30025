"""A decoded cache of a data set split (``edgeseg data cache``): each sample's image, label (and
top-2 soft label) as raw ``.npy`` files, read memory-mapped, so a training window costs the
pages it touches instead of a PNG decode of the whole frame.

``manifest.json`` records the cache format, the edgeseg version, the data set and split, and for
every sample its source files (size, modification time, SHA-256) and its cache files (size).
Opening the cache checks each source file's size and time and each cache file's size against it
(``--verify`` also re-hashes the sources): a cache built from other files, by another version,
or truncated is refused in one line, never read.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from edgeseg import __version__
from edgeseg.data.base import Sample, SegDataset, resolved_files
from edgeseg.errors import DataError
from edgeseg.fileio import FolderLock, name_os_errors, parse_json, sha256_file, shape_problem, swap_in, write_json_atomic

CACHE_FORMAT = "edgeseg-decoded-cache-v1"
MANIFEST = "manifest.json"
PARTS = ("image", "label", "soft")
CACHE_FILE = re.compile(r"\d{6}\.(image|label|soft)\.npy")  # the files a cache holds besides its manifest
MANIFEST_SHAPE = {"dataset": {"name": str, "class_names": [str]}, "split": str,
                  "samples": [{"name": str, "sources": [{"path": str, "size": int, "mtime_ns": int, "sha256": str}],
                               "files": {str: {"name": str, "size": int}}}]}
STAGING = ".building"  # where a cache is decoded before it replaces the one in the folder


def _sources(ds: SegDataset, i: int) -> list[Path]:
    return resolved_files(ds, i)


def _source_record(path: Path, with_hash: bool = True) -> dict:
    st = path.stat()  # ctime too: a file replaced with one of the same size and modification time (rsync -t) changes it
    rec = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}
    if with_hash:
        rec["sha256"] = sha256_file(path)
    return rec


def _holding(dataset: dict, split, folders) -> tuple[tuple, str]:
    """What a cache holds (its data set, split and source folders): a key to compare, and its text."""
    import os

    folders = sorted({str(Path(f).resolve()) for f in folders})  # the same files, however --data was spelled
    where = os.path.commonpath(folders) if folders else "no files"
    return (dataset["name"], dataset["class_names"], split, folders), f"{dataset['name']}/{split} from {where}"


def _refuse_another_cache(ds: SegDataset, out: Path) -> None:
    """``out`` holds a cache: refused when it is of another data set, split or folder of files (a
    damaged one holds nothing to keep: it is rebuilt, as its own refusal says)."""
    held = parse_json((out / MANIFEST).read_text())
    if shape_problem(held, MANIFEST_SHAPE):
        return
    theirs, said = _holding(held["dataset"], held["split"], {Path(src["path"]).parent for rec in held["samples"] for src in rec["sources"]})
    ours, wanted = _holding(ds.info.to_dict(), ds.split, {p.parent for i in range(len(ds)) for p in _sources(ds, i)})
    if theirs != ours:
        raise DataError(f"--out {out}: holds the decoded cache of {said}, not of {wanted}; give --exist-ok to replace it, or another folder")


def build_cache(ds: SegDataset, out: Path, progress: bool = True, replace: bool = False) -> dict:
    """Decode every sample of ``ds`` into ``out`` and return the manifest. A cache already there is
    replaced only once the new one is whole: samples are decoded into ``out/.building`` first, so
    a sample that fails to decode leaves the old cache as it was. A folder that holds other files
    and no cache is refused; so is one holding the cache of another data set, split or folder of
    files, unless ``replace`` (``--exist-ok``): rebuilding a cache of the same files is a refresh."""
    import shutil

    if not hasattr(ds, "sample_files"):
        raise DataError(f"data set '{ds.info.name}' is generated, not read from files; there is nothing to cache")
    out = Path(out)
    if out.is_dir() and not _is_cache(out):
        foreign = [p.name for p in out.iterdir() if p.name not in (STAGING, FolderLock.NAME) and not CACHE_FILE.fullmatch(p.name)]
        if foreign:
            raise DataError(f"--out {out}: holds other files ({', '.join(sorted(foreign)[:3])} ...) and no decoded cache; "
                            "give an empty or new folder")
    elif out.is_dir() and not replace:
        _refuse_another_cache(ds, out)
    with FolderLock(out, "cache folder"):
        staging = out / STAGING
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            samples = _decode_into(ds, staging, progress)  # a failure here leaves the old cache as it was
            # The new cache is whole: it replaces the old one, the manifest moved aside first and in
            # last, so an interruption in between leaves a folder that is refused, never one read as
            # either cache; the old cache's files not in the new one go with it.
            manifest = {"format": CACHE_FORMAT, "edgeseg_version": __version__, "dataset": ds.info.to_dict(), "split": ds.split,
                        "samples": samples}
            write_json_atomic(staging / MANIFEST, manifest)
            parts = {p.name for p in staging.iterdir()} | {p.name for p in out.iterdir() if CACHE_FILE.fullmatch(p.name)} | {MANIFEST}
            swap_in(staging, out, sorted(parts), last=(MANIFEST,))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _decode_into(ds: SegDataset, folder: Path, progress: bool) -> list[dict]:
    from edgeseg.progress import Progress

    samples = []
    bar = Progress(len(ds), "data cache", "img", enabled=progress)
    for i in range(len(ds)):
        s = ds.load(i)
        record = {"name": ds.sample_name(i), "sources": [_source_record(p) for p in _sources(ds, i)], "files": {}}
        for part in PARTS:
            array = getattr(s, part)
            if array is None:
                continue
            name = f"{i:06d}.{part}.npy"
            with name_os_errors(folder / name):  # NumPy's short write on a full disk names no file
                np.save(folder / name, np.ascontiguousarray(array), allow_pickle=False)
            record["files"][part] = {"name": name, "size": (folder / name).stat().st_size}
        samples.append(record)
        bar.update()
    bar.close()
    return samples


def _is_cache(folder: Path) -> bool:
    """Whether ``folder`` holds an edgeseg cache (of any version): its manifest says so, not its name."""
    try:
        manifest = parse_json((folder / MANIFEST).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(manifest, dict) and str(manifest.get("format", "")).startswith(CACHE_FORMAT.rsplit("-v", 1)[0])


def read_manifest(cache: Path) -> dict:
    path = Path(cache) / MANIFEST
    if not path.is_file():
        raise DataError(f"{cache}: no {MANIFEST}; not a decoded cache (make one with: edgeseg data cache)")
    try:
        manifest = parse_json(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: damaged ({exc}); rebuild the cache with: edgeseg data cache") from None
    if not isinstance(manifest, dict) or manifest.get("format") != CACHE_FORMAT:
        raise DataError(f"{path}: a cache of another format ({manifest.get('format') if isinstance(manifest, dict) else '?'}); "
                        f"this edgeseg reads {CACHE_FORMAT}; rebuild it with: edgeseg data cache")
    if manifest.get("edgeseg_version") != __version__:
        raise DataError(f"{path}: built by edgeseg {manifest.get('edgeseg_version')}, this is {__version__}; rebuild it with: edgeseg data cache")
    problem = shape_problem(manifest, MANIFEST_SHAPE)
    if problem:
        raise DataError(f"{path}: damaged ({problem}); rebuild the cache with: edgeseg data cache")
    return manifest


def check_cache(ds: SegDataset, cache: Path, verify_hashes: bool = False, option: str = "--cache", progress: bool = False) -> dict:
    """The manifest of ``cache`` (given as ``option``) when it holds ``ds`` as its files are now; else a
    DataError naming what changed. ``progress``: a bar over the samples (re-hashing is slow)."""
    from edgeseg.progress import Progress

    cache = Path(cache)
    manifest = read_manifest(cache)
    where = f"{option} {cache}"
    if manifest.get("split") != ds.split or manifest.get("dataset") != ds.info.to_dict():
        raise DataError(f"{where}: built from {manifest.get('dataset', {}).get('name')}/{manifest.get('split')}, "
                        f"not {ds.info.name}/{ds.split}; give the cache of this split or rebuild it")
    samples = manifest.get("samples") or []
    if len(samples) != len(ds) or any(rec.get("name") != ds.sample_name(i) for i, rec in enumerate(samples)):
        raise DataError(f"{where}: holds {len(samples)} samples, the data set {len(ds)} (or other names); rebuild it with: edgeseg data cache")
    bar = Progress(len(samples), "verify cache", "img", enabled=progress and verify_hashes)
    for i, rec in enumerate(samples):
        bar.update()
        sources = [str(p) for p in _sources(ds, i)]
        if sources != [str(Path(s["path"]).resolve()) for s in rec["sources"]]:
            raise DataError(f"{where}: sample {rec['name']} was cached from other files; rebuild it with: edgeseg data cache --exist-ok")
        for src in rec["sources"]:
            now = _source_record(Path(src["path"]), with_hash=verify_hashes) if Path(src["path"]).is_file() else None
            # re-hashed (--verify), the content decides; else size and times (ctime: not in caches built before it was recorded)
            same = now is not None and now["size"] == src["size"] and (
                now["sha256"] == src["sha256"] if verify_hashes else all(now[k] == src[k] for k in ("mtime_ns", "ctime_ns") if k in src))
            if not same:
                raise DataError(f"{where}: {src['path']} changed since the cache was built (stale; a change of its permissions or a copy counts too, `--verify` judges by content); rebuild it with: edgeseg data cache")
        for part in rec["files"].values():
            path = cache / part["name"]
            if not path.is_file() or path.stat().st_size != part["size"]:
                raise DataError(f"{path}: missing or truncated; rebuild the cache with: edgeseg data cache")
    bar.close()
    return manifest


class CachedDataset(SegDataset):
    """A data set read from its decoded cache (memory-mapped): same samples, same names, same info."""

    def __init__(self, ds: SegDataset, cache: Path, manifest: dict):
        self.inner = ds
        self.info, self.split, self.skipped = ds.info, ds.split, ds.skipped
        self.cache = Path(cache)
        self.records = manifest["samples"]
        self.indices = list(range(len(self.records)))

    def __len__(self) -> int:
        return len(self.indices)

    def sample_name(self, i: int) -> str:
        return self.records[self.indices[i]]["name"]

    def label_files(self, i: int) -> list[Path]:
        return self.inner.label_files(self.indices[i])

    def load(self, i: int) -> Sample:
        rec = self.records[self.indices[i]]
        parts = {}
        for part, f in rec["files"].items():
            try:
                parts[part] = np.load(self.cache / f["name"], mmap_mode="c", allow_pickle=False)  # copy-on-write: never written
            except (OSError, ValueError) as exc:
                raise DataError(f"{self.cache / f['name']}: unreadable cache file ({exc}); rebuild the cache with: edgeseg data cache") from None
        return Sample(parts["image"], parts["label"], rec["name"], parts.get("soft"))

    def _keep(self, indices) -> None:
        self.indices = [self.indices[i] for i in indices]
        self.inner = self.inner.subset(indices)


def cached_dataset(ds: SegDataset, cache: Path, verify_hashes: bool = False) -> CachedDataset:
    """``ds`` read through the decoded cache at ``cache``, after checking it is that data set as it is now."""
    return CachedDataset(ds, cache, check_cache(ds, cache, verify_hashes))
