"""``edgeseg predict``: images, folders or videos to label PNGs and colour overlays."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from edgeseg.data.base import IMAGE_SUFFIXES, read_image
from edgeseg.errors import ConfigError, DataError
from edgeseg.fileio import atomic_path, check_replaceable, move_in, name_os_errors
from edgeseg.progress import Progress
from edgeseg.runtime.processing import AspectCheck, Preprocess, native_labels, overlay

logger = logging.getLogger(__name__)


def collect_inputs(inputs, out_dir=None, out_option: str = "--out") -> tuple[list[Path], list[str]]:
    """Image files (folders expanded, with their sub-folders) and video sources (files, camera indices,
    stream URLs). Inputs are kept as given until they are known to be paths: a URL is not a path. An
    ``out_dir`` inside an input folder is refused (its outputs would be read as inputs by the next
    run); a folder's files of other types are said, not skipped in silence."""
    from edgeseg.tasks.video import VIDEO_SUFFIXES, names_live_source

    images, videos = [], []
    for item in inputs:
        s = str(item)
        if not s.strip():
            raise DataError("predict: an input is an empty string; expected an image, folder, video, camera index or stream URL")
        if names_live_source(s):
            videos.append(s)
            continue
        p = Path(s)
        if p.is_dir():
            if out_dir is not None and (Path(out_dir).resolve() == p.resolve() or p.resolve() in Path(out_dir).resolve().parents):
                raise ConfigError(f"{out_option} {out_dir}: inside the input folder {p}, whose images (with its sub-folders) are read; "
                                  f"the outputs would be read as inputs by the next run: give {out_option} outside it")
            if not os.access(p, os.R_OK | os.X_OK):
                raise DataError(f"{p}: this folder cannot be read (permission denied); check its permissions")
            # hidden files and folders (.DS_Store, .ipynb_checkpoints/) are not inputs, as a shell's * leaves them out
            entries = [q for q in p.rglob("*") if not any(part.startswith(".") for part in q.relative_to(p).parts)]
            unreadable = sorted(str(q) for q in entries if q.is_dir() and not os.access(q, os.R_OK | os.X_OK))
            if unreadable:  # rglob passes over them in silence
                logger.warning(f"{p}: {len(unreadable)} sub-folder(s) cannot be read (permission denied), their files left out: "
                               f"{', '.join(unreadable[:3])}{' ...' if len(unreadable) > 3 else ''}")
            files = [q for q in entries if q.is_file()]
            found = sorted(q for q in files if q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"{p}: no images in this folder (expected {', '.join(IMAGE_SUFFIXES)})")
            others = sorted(q.name for q in files if q.suffix.lower() not in IMAGE_SUFFIXES)
            if others:
                logger.warning(f"{p}: {len(others)} file(s) that are not images ({', '.join(IMAGE_SUFFIXES)}) left out: "
                               f"{', '.join(others[:3])}{' ...' if len(others) > 3 else ''}")
            images += found
        elif p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            images.append(p)
        elif p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES:
            videos.append(str(p))
        elif not p.exists():
            raise DataError(f"{p}: {'video file' if p.suffix.lower() in VIDEO_SUFFIXES else 'input'} not found")
        else:
            raise DataError(f"{p}: not an image ({', '.join(IMAGE_SUFFIXES)}), video ({', '.join(VIDEO_SUFFIXES)}), camera index, "
                            "stream URL or folder")
    return images, videos


def _save_png(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


STAGE_PREFIX = ".edgeseg-predict-"


def _move_in(stage: Path | None, out_dir: Path, stems: list[str]) -> None:
    """The staged outputs of ``stems`` into ``out_dir`` (each file whole: written, synced, renamed), then the stage goes."""
    if stage is None:
        return
    try:
        move_in((stage / name, out_dir / name) for stem in stems for name in (f"{stem}_label.png", f"{stem}_overlay.png"))
    finally:
        shutil.rmtree(stage, ignore_errors=True)


class _Stems:
    """Output names: each input's stem, with ``_2``, ``_3`` ... where two inputs share one, so no
    output overwrites another (images and videos alike)."""

    def __init__(self):
        self.used: set[str] = set()

    def __call__(self, stem: str) -> str:
        name, n = stem, 2
        while name in self.used:
            name = f"{stem}_{n}"
            n += 1
        self.used.add(name)
        return name


def check_image_outputs(planned, out_dir: Path, exist_ok: bool) -> None:
    """Before any work: no output of an image (``<stem>_label.png``, ``<stem>_overlay.png`` in
    ``out_dir``) is one of the inputs, and none exists unless ``exist_ok`` says to replace it."""
    inputs = {(st.st_dev, st.st_ino): path for path, _ in planned for st in (path.stat(),)}  # links and other spellings alike
    for path, stem in planned:
        for target in (out_dir / f"{stem}_label.png", out_dir / f"{stem}_overlay.png"):
            check_replaceable([target])  # a link, pipe or device there is never replaced, --exist-ok or not
            st = target.stat() if target.exists() else None
            clash = inputs.get((st.st_dev, st.st_ino)) if st is not None else None
            if clash is not None:
                raise ConfigError(f"--out {out_dir}: the output {target.name} of {path} would replace the input {clash}; "
                                  "give --out a folder of its own")
            if st is not None and not exist_ok:
                raise ConfigError(f"--out {out_dir}: {target.name} exists (an earlier run's?); use --exist-ok to replace "
                                  "the outputs, or another --out")


def predict(model, inputs, out_dir, spec=None, alpha: float = 0.5, progress: bool = True, every: int = 1, labels: bool = False,
            exist_ok: bool = False) -> dict:
    """Images and folders -> ``<name>_label.png`` and ``<name>_overlay.png``; video files, cameras
    and streams -> ``<name>_overlay.mp4`` (and with ``labels`` a label PNG per frame). ``spec``
    (RunnerSpec) says how the model runs; with ``spec.strict`` images of another aspect ratio than
    the model's input are refused."""
    from edgeseg import runtime
    from edgeseg.fileio import FolderLock
    from edgeseg.runtime.spec import RunnerSpec

    spec = spec or RunnerSpec()
    if not (0.0 <= alpha <= 1.0):  # NaN included
        raise ConfigError(f"--alpha: expected a number in [0, 1], got {alpha}")
    images, videos = collect_inputs(inputs, out_dir)
    if not images and not videos:
        raise ConfigError("predict: give at least one image, folder or video")
    video_only = [flag for flag, on in (("--every", every != 1), ("--labels", labels)) if on]
    if video_only and not videos:
        raise ConfigError(f"{video_only[0]}: applies only to video inputs, and none of the inputs is a video; leave it out")
    out_dir = Path(out_dir)
    stems = _Stems()
    planned = [(path, stems(path.stem)) for path in images]
    check_image_outputs(planned, out_dir, exist_ok)
    if videos:
        from edgeseg.tasks.video import video_outputs, video_stem

        planned_videos = [(video, stems(video_stem(video))) for video in videos]
        for _, stem in planned_videos:  # refused before any image is written
            video_outputs(out_dir, stem, labels, exist_ok)
    runner = runtime.load(model, spec).activate()
    meta = runner.meta
    pre = Preprocess.from_meta(meta)
    check = AspectCheck(tuple(meta.input_res), spec.strict)
    written = []
    with FolderLock(out_dir, "output folder"), runner:
        # Outputs are staged and moved in once every image is done: a bad image among good ones leaves the
        # folder as it was (earlier outputs that --exist-ok would replace included); Ctrl-C keeps what is done.
        for stale in out_dir.glob(STAGE_PREFIX + "*"):  # a killed run's (the lock says none is running)
            shutil.rmtree(stale, ignore_errors=True)
        stage = Path(tempfile.mkdtemp(dir=out_dir, prefix=STAGE_PREFIX)) if images else None
        bar = Progress(len(images), "predict", "img", enabled=progress and bool(images))
        try:
            for path, stem in planned:
                image = read_image(path, upright=True)  # a camera's photo as viewers show it
                check(image.shape, path)
                label = native_labels(runner.infer(pre([image])), [image.shape[:2]], runner.name)[0].numpy().astype(np.uint8)
                with name_os_errors(out_dir / f"{stem}_label.png"):  # a full disk is said of the output, not of its staged copy
                    Image.fromarray(label).save(stage / f"{stem}_label.png", format="PNG")
                with name_os_errors(out_dir / f"{stem}_overlay.png"):
                    Image.fromarray(overlay(image, label, meta.palette, alpha)).save(stage / f"{stem}_overlay.png", format="PNG")
                written.append(stem)
                bar.update()
        except KeyboardInterrupt:
            _move_in(stage, out_dir, written)
            logger.warning(f"interrupted: wrote {len(written)} of {len(planned)} label and overlay pairs to {out_dir}")
            raise
        except BaseException:
            if stage is not None:
                shutil.rmtree(stage, ignore_errors=True)
            raise
        _move_in(stage, out_dir, written)
        bar.close()
        video_results = []
        for video, stem in planned_videos if videos else ():
            from edgeseg.tasks.video import predict_video

            video_results.append(predict_video(runner, video, out_dir, every=every, alpha=alpha, labels=labels, exist_ok=exist_ok,
                                               strict=spec.strict,
                                               progress=progress, stem=stem))
    return {"images": len(images), "videos": video_results, "outputs": len(written), "out": str(out_dir)}
