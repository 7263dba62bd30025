"""Distillation from a teacher (``train --teacher``): the teacher's class probabilities at native
resolution supervise the student beside the ground truth, resampled to each student output's
resolution with the image's kernel in each augmented window, exactly as labels are.

The teacher runs once over the training images (at its own resolution, with flip at test time,
at the distillation temperature) and its top-K classes and probabilities are stored compactly
(2K bytes a pixel, one ``.npy`` per image) in a folder whose manifest records what made them:
the teacher file's SHA-256, the temperature, K, and each image's size and modification time. A
run reads them memory-mapped; a folder made from other images, another teacher or another
temperature, or with files missing, is refused before the first step. Runs that share a teacher,
data and temperature share the folder (in edgeseg's cache, keyed by all of them).

The loss (Hinton et al.): ``(1 - w) * CE(ground truth) + w * T^2 * KL(teacher || softmax(z / T))``,
the KL averaged over pixels by the teacher's mass there.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch

from edgeseg import __version__
from edgeseg.data.base import SegDataset, classes_text, resolved_files
from edgeseg.errors import ConfigError, DataError
from edgeseg.fileio import FolderLock, cache_folder, is_integer, name_os_errors, parse_json, sha256_file, shape_problem, write_json_atomic

logger = logging.getLogger(__name__)

TEACHER_FORMAT = "edgeseg-teacher-labels-v1"
TOP_K = 3  # classes kept per pixel: the rest of a compact model's probability mass is a rounding error
MANIFEST = "manifest.json"
LABEL_WAIT_S = 6 * 3600.0  # how long a run waits for another labelling the same teacher-label folder


def _image_record(ds: SegDataset, i: int) -> dict:
    files = resolved_files(ds, i)
    if not files:
        return {"name": ds.sample_name(i)}
    st = files[0].stat()
    return {"name": ds.sample_name(i), "image": str(files[0]), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def labels_key(teacher_sha: str, ds: SegDataset, temperature: float) -> str:
    blob = json.dumps([teacher_sha, temperature, TOP_K, ds.info.to_dict(), ds.split,
                       [_image_record(ds, i) for i in range(len(ds))]], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def make_teacher_labels(teacher: Path, ds: SegDataset, out: Path, temperature: float, device: str = "auto", progress: bool = True,
                        teacher_sha: str | None = None) -> dict:
    """Run ``teacher`` (a checkpoint, of SHA-256 ``teacher_sha`` where the caller has it) over every
    image of ``ds`` at native resolution with flip at test time; write its top-K classes and
    probabilities at ``temperature`` into ``out``. The caller holds ``out``'s FolderLock."""
    from edgeseg import runtime
    from edgeseg.progress import Progress
    from edgeseg.runtime.processing import Preprocess, upsample_scores
    from edgeseg.runtime.spec import RunnerSpec

    runner = runtime.load(teacher, RunnerSpec(device=device, tta="flip"))
    check_teacher_classes(runner.meta, ds, teacher)
    pre = Preprocess.from_meta(runner.meta)
    (out / MANIFEST).unlink(missing_ok=True)
    bar = Progress(len(ds), "teacher labels", "img", enabled=progress)
    with runner:
        for i in range(len(ds)):
            image = ds[i].image
            logits = torch.from_numpy(runner.infer(pre([image]))["logits"])
            prob = torch.softmax(upsample_scores(logits, image.shape[:2])[0] / temperature, dim=0)
            top = torch.topk(prob, k=min(TOP_K, prob.shape[0]), dim=0)
            packed = torch.stack([v for k in range(top.values.shape[0]) for v in
                                  (top.indices[k].to(torch.uint8), (top.values[k] * 255).round().to(torch.uint8))], -1)
            with name_os_errors(out / f"{i:06d}.npy"):
                np.save(out / f"{i:06d}.npy", packed.numpy(), allow_pickle=False)
            bar.update()
    bar.close()
    manifest = {"format": TEACHER_FORMAT, "edgeseg_version": __version__, "teacher": str(teacher), "teacher_sha256": teacher_sha or sha256_file(teacher),
                "temperature": temperature, "top_k": TOP_K, "dataset": ds.info.to_dict(), "split": ds.split,
                "images": [_image_record(ds, i) for i in range(len(ds))]}
    write_json_atomic(out / MANIFEST, manifest)
    return manifest


def check_teacher_classes(meta, ds: SegDataset, teacher) -> None:
    if tuple(meta.class_names) != tuple(ds.info.class_names):
        raise ConfigError(f"--teacher {teacher}: its classes ({classes_text(meta.class_names)}) are not those of {ds.info.name} "
                          f"({classes_text(ds.info.class_names)}); a teacher must be trained on the same classes")


def check_teacher_labels(folder: Path, ds: SegDataset, temperature: float) -> dict:
    """The manifest of a teacher-label folder when it labels ``ds`` as its images are now, at ``temperature``."""
    path = folder / MANIFEST
    if not path.is_file():
        raise DataError(f"--teacher {folder}: no {MANIFEST}; expected a checkpoint or a teacher-label folder written by edgeseg train --teacher")
    try:
        manifest = parse_json(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: damaged ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != TEACHER_FORMAT:
        raise DataError(f"{path}: not a teacher-label folder of this edgeseg ({TEACHER_FORMAT})")
    problem = shape_problem(manifest, {"dataset": {"class_names": [str]}, "temperature": float, "top_k": int, "images": [dict]})
    if problem:
        raise DataError(f"{path}: damaged ({problem}); make the labels again from the teacher checkpoint")
    if manifest.get("dataset", {}).get("class_names") != list(ds.info.class_names):
        raise ConfigError(f"--teacher {folder}: labels of other classes than {ds.info.name}'s")
    if manifest.get("temperature") != temperature:
        raise ConfigError(f"--teacher {folder}: made at temperature {manifest.get('temperature')}, not --distill-temperature {temperature}")
    if manifest.get("images") != [_image_record(ds, i) for i in range(len(ds))]:
        raise DataError(f"--teacher {folder}: made from other images than {ds.info.name}/{ds.split} as they are now "
                        "(names, sizes or times differ); make the labels again from the teacher checkpoint")
    k = manifest.get("top_k")
    channels = 2 * min(k, ds.info.num_classes) if is_integer(k) else None
    for i in range(len(ds)):
        check_label_file(folder / f"{i:06d}.npy", channels)
    return manifest


def check_label_file(path: Path, channels: int | None) -> np.ndarray:
    """One image's teacher labels, memory-mapped: an HxWx(2K) uint8 array, or a DataError naming the file."""
    if not path.is_file():
        raise DataError(f"--teacher {path.parent}: {path.name} is missing")
    try:
        a = np.load(path, mmap_mode="c", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable teacher labels ({exc}); make the labels again from the teacher checkpoint") from None
    if a.dtype != np.uint8 or a.ndim != 3 or (channels is not None and a.shape[2] != channels) or a.shape[2] % 2:
        raise DataError(f"{path}: expected teacher labels as an HxWx{channels or '2K'} uint8 array, found {'x'.join(map(str, a.shape))} "
                        f"{a.dtype}; make the labels again from the teacher checkpoint")
    return a


def teacher_sha256(teacher: str) -> str | None:
    """The SHA-256 of the teacher behind ``--teacher``: of the checkpoint, or the one a label
    folder's manifest records; None where neither can be read (``teacher_labels`` says why)."""
    path = Path(teacher)
    if path.is_file():
        return sha256_file(path)
    try:
        manifest = parse_json((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest.get("teacher_sha256") if isinstance(manifest, dict) else None


def check_same_teacher(last: Path, teacher: str, sha: str | None) -> None:
    """``--resume``: refuse a teacher whose content differs from the one the run began with (the
    same path can hold another model by now)."""
    from edgeseg.models import load_checkpoint

    if not last.is_file():
        return
    training = load_checkpoint(last).training
    saved = ((training.train_config if training else None) or {}).get("teacher_sha256")
    if saved is not None and saved != sha:
        raise ConfigError(f"--teacher {teacher}: not the teacher the run in {last.parent} began with (SHA-256 {saved[:12]}..., "
                          f"now {(sha or 'unreadable')[:12]}...); resume with that teacher or train into a new --out")


def teacher_labels(teacher: str, ds: SegDataset, temperature: float, device: str = "auto", progress: bool = True,
                   teacher_sha: str | None = None) -> Path:
    """The teacher-label folder for ``ds``: ``teacher`` itself when it is one, else (a checkpoint) the
    folder in edgeseg's cache for this teacher, data and temperature, made when missing. A caller
    that has hashed the checkpoint passes ``teacher_sha`` (a checkpoint is hashed once per run)."""
    path = Path(teacher)
    if path.is_dir():
        check_teacher_labels(path, ds, temperature)
        return path
    if not path.is_file():
        raise ConfigError(f"--teacher {path}: not found; expected a checkpoint (.pt) or a teacher-label folder")
    from edgeseg.models import load_checkpoint

    check_teacher_classes(load_checkpoint(path).check_weights(f"--teacher {path}").meta, ds, path)
    teacher_sha = teacher_sha or sha256_file(path)
    folder = cache_folder("teacher_labels") / labels_key(teacher_sha, ds, temperature)
    # Runs started together with one teacher share the folder: one labels, the others wait for it.
    with FolderLock(folder, "teacher-label folder", wait=LABEL_WAIT_S):
        try:
            check_teacher_labels(folder, ds, temperature)
            logger.info(f"teacher labels: {folder} (made earlier from {path.name})")
        except (DataError, ConfigError):
            logger.info(f"teacher labels: running {path.name} over {len(ds)} training images into {folder}")
            with torch.random.fork_rng(devices=[]):  # building the teacher draws random numbers: the run must not depend on whether the labels existed
                make_teacher_labels(path, ds, folder, temperature, device, progress, teacher_sha)
    return folder


class WithTeacher(SegDataset):
    """``ds`` with each sample's teacher map (memory-mapped) in ``Sample.teacher``."""

    def __init__(self, ds: SegDataset, folder: Path):
        self.inner, self.folder = ds, Path(folder)
        self.info, self.split, self.skipped = ds.info, ds.split, ds.skipped
        self.indices = list(range(len(ds)))

    def __len__(self) -> int:
        return len(self.indices)

    def sample_name(self, i: int) -> str:
        return self.inner.sample_name(self.indices[i])

    def label_files(self, i: int):
        return self.inner.label_files(self.indices[i])

    def load(self, i: int):
        k = self.indices[i]
        sample = self.inner.load(k)
        teacher = check_label_file(self.folder / f"{k:06d}.npy", None)  # class indices are checked where they are tapped
        if teacher.shape[:2] != sample.label.shape:
            raise DataError(f"{self.folder / f'{k:06d}.npy'}: teacher labels of {teacher.shape[1]}x{teacher.shape[0]} for a "
                            f"{sample.label.shape[1]}x{sample.label.shape[0]} frame")
        return sample._replace(teacher=teacher)

    def _keep(self, indices) -> None:
        self.indices = [self.indices[i] for i in indices]
