"""``edgeseg autolabel``: a teacher's confident predictions become a ``folder`` data set.

Each image gets ``masks/<stem>.png``: the predicted class where its probability is at
least ``threshold``, void (255) elsewhere. With ``soft``, ``soft/<stem>.png`` keeps the
top two classes and their probabilities as uint8 (4 bytes a pixel instead of C floats),
which ``edgeseg train`` turns into soft class mass. Multi-scale teachers (*-msa
checkpoints) take ``scales``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from edgeseg.data.base import IGNORE_INDEX, read_image
from edgeseg.errors import ConfigError
from edgeseg.fileio import swap_in, write_json_atomic
from edgeseg.progress import Progress
from edgeseg.runtime.processing import Preprocess, check_finite, upsample_scores
from edgeseg.tasks.predict import _save_png, collect_inputs


def label_from_probabilities(prob: torch.Tensor, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """``(C, H, W)`` probabilities -> (hard label with void below threshold, top-2 soft label HxWx4)."""
    top = torch.topk(prob, k=min(2, prob.shape[0]), dim=0)
    p1, c1 = top.values[0], top.indices[0]
    label = torch.where(p1 >= threshold, c1, torch.full_like(c1, IGNORE_INDEX)).to(torch.uint8).numpy()
    p2 = top.values[1] if prob.shape[0] > 1 else torch.zeros_like(p1)
    c2 = top.indices[1] if prob.shape[0] > 1 else c1
    soft = torch.stack([c1.to(torch.uint8), (p1 * 255).round().to(torch.uint8), c2.to(torch.uint8), (p2 * 255).round().to(torch.uint8)], -1)
    return label, soft.numpy()


def autolabel(model, images, out_dir, threshold: float = 0.9, spec=None, soft: bool = False, exist_ok: bool = False,
              progress: bool = True) -> dict:
    """A teacher's (``model``, run as ``spec`` says) confident labels of ``images`` into ``out_dir``."""
    from edgeseg import runtime
    from edgeseg.fileio import FolderLock
    from edgeseg.runtime.spec import RunnerSpec

    spec = spec or RunnerSpec()
    if not 0 <= threshold <= 1:  # NaN included
        raise ConfigError(f"--threshold: expected a probability in [0, 1], got {threshold}")
    paths, videos = collect_inputs(images if isinstance(images, (list, tuple)) else [images], out_dir)
    if videos:
        raise ConfigError(f"autolabel takes images and folders; got video {videos[0]}")
    seen: dict[str, Path] = {}
    for path in paths:
        if path.stem in seen:
            raise ConfigError(f"autolabel: {seen[path.stem]} and {path} have the same name stem; "
                              "each image needs its own, since masks/<stem>.png is written per image")
        seen[path.stem] = path
    out_dir = Path(out_dir)
    check_out_folder(out_dir, exist_ok)
    runner = runtime.load(model, spec).activate()
    meta = runner.meta
    if "logits" not in meta.outputs:
        raise ConfigError(f"{model}: autolabel needs class scores; this model outputs only labels (export with --output logits)")
    pre = Preprocess.from_meta(meta)
    with FolderLock(out_dir, "output folder"):
        stage = out_dir / STAGE
        shutil.rmtree(stage, ignore_errors=True)  # a killed run's
        try:
            kept, total = _label_all(runner, pre, paths, seen, stage, threshold, soft, progress)
            summary = {"images": len(paths), "labelled_fraction": round(kept / max(total, 1), 4), "threshold": threshold,
                       "soft": soft, "teacher": str(model), "out": str(out_dir)}
            write_json_atomic(stage / "autolabel.json", summary)
            swap_in(stage, out_dir, OWN, last=("classes.json", "autolabel.json"))
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return summary


# What an autolabel output folder holds; a folder holding anything else is not replaced.
OWN = ("images", "masks", "soft", "classes.json", "autolabel.json")
STAGE = ".autolabel-staging"


def check_out_folder(out_dir: Path, exist_ok: bool) -> None:
    """``--out`` is new, empty, or (with ``exist_ok``) an earlier autolabel output, replaced as a
    whole once the new labelling is complete; a folder holding other files is never touched."""
    if not out_dir.is_dir():
        return
    from edgeseg.fileio import FolderLock

    held = [p for p in out_dir.iterdir() if p.name not in (FolderLock.NAME, STAGE)]
    if not held:
        return
    foreign = [p.name for p in held if p.name not in OWN]
    if foreign or not (out_dir / "autolabel.json").is_file():
        raise ConfigError(f"--out {out_dir}: holds files autolabel did not write ({', '.join(sorted(foreign)[:3]) or 'no autolabel.json'}); "
                          "give a new or empty folder")
    if not exist_ok:
        raise ConfigError(f"--out {out_dir}: already holds a labelling (autolabel.json); use another --out or --exist-ok to replace it")


def _label_all(runner, pre, paths, seen, out_dir: Path, threshold: float, soft: bool, progress: bool) -> tuple[int, int]:
    meta = runner.meta
    # Written into a staging folder and swapped in whole (``fileio.swap_in``): images of an earlier run
    # not in this one, and soft/ from a run with --soft, would otherwise be trained on as if current.
    for sub in ("images", "masks") + (("soft",) if soft else ()):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    kept = total = 0
    bar = Progress(len(paths), "autolabel", "img", enabled=progress)
    with runner:
        for path in paths:
            image = read_image(path)
            scores = runner.infer(pre([image]))["logits"]
            check_finite(scores, runner.name)
            logits = torch.from_numpy(scores)
            prob = torch.softmax(upsample_scores(logits, image.shape[:2])[0], dim=0)
            label, soft_label = label_from_probabilities(prob, threshold)
            _save_png(out_dir / "masks" / f"{path.stem}.png", label)
            if soft:
                _save_png(out_dir / "soft" / f"{path.stem}.png", soft_label)
            shutil.copy2(path, out_dir / "images" / path.name)  # (the staging folder: swapped in only when whole)
            kept += int((label != IGNORE_INDEX).sum())
            total += label.size
            bar.update()
    bar.close()
    write_json_atomic(out_dir / "classes.json", {"names": list(meta.class_names), "ignore_index": IGNORE_INDEX,
                                                  "palette": [list(c) for c in meta.palette]})
    return kept, total
