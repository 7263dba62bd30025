"""``edgeseg labels check``: what a training resolution costs in label fidelity.

Each label is down-sampled to the training resolution by every mode, the class
masses are up-sampled back to native size (bilinear, half-pixel centres) and
arg-maxed, and the result is scored against the native label (void ignored).
The mIoU* so obtained is an upper bound on what a model trained on those
targets can reach at native resolution.
"""

from __future__ import annotations

import logging

from edgeseg.data.base import SegDataset, res_above_frames
from edgeseg.data.resample import downsample_labels
from edgeseg.metrics import ConfusionMatrix
from edgeseg.progress import track
from edgeseg.runtime.processing import scores_to_labels

logger = logging.getLogger(__name__)

# mode name -> (downsample_labels mode, kernel)
CHECK_MODES = {
    "soft-area": ("soft", "area"),
    "soft-bilinear": ("soft", "bilinear"),
    "nearest": ("nearest", "area"),
    "onehot-bilinear": ("onehot-bilinear", "area"),
}


# DUpsampling's upper bound (CVPR 2019, Table 1): labels compressed to C' numbers per r x r
# block through W and reconstructed, against the same labels at stride r up-sampled bilinearly.
DUP_MODES = ("dupsample", "stride-bilinear")


def _reconstruct(mass, W, r: int):
    """Encode every r x r block of ``mass`` with W^T and decode with W."""
    import torch.nn.functional as F

    C, h, w = mass.shape
    hp, wp = -(-h // r) * r, -(-w // r) * r
    m = F.pad(mass, (0, wp - w, 0, hp - h))
    blocks = m.reshape(C, hp // r, r, wp // r, r).permute(1, 3, 0, 2, 4).reshape(-1, C * r * r)
    recon = (blocks @ W) @ W.T
    out = recon.reshape(hp // r, wp // r, C, r, r).permute(2, 0, 3, 1, 4).reshape(C, hp, wp)
    return out[:, :h, :w]


def kept_label(label, mode: str, res: tuple[int, int], info, dup: dict | None = None):
    """What ``mode`` keeps of a native label at ``res``: down-sampled, up-sampled back (bilinear) and arg-maxed."""
    w, h = res
    if mode == "dupsample":
        mass, _ = downsample_labels(label, (h, w), info.num_classes, info.ignore_index, mode="soft", kernel="area")
        mass = _reconstruct(mass, dup["W"], dup["r"])
    elif mode == "stride-bilinear":
        r = dup["r"]
        mass, _ = downsample_labels(label, (-(-h // r), -(-w // r)), info.num_classes, info.ignore_index, mode="soft", kernel="area")
    else:
        how, kernel = CHECK_MODES[mode]
        mass, _ = downsample_labels(label, (h, w), info.num_classes, info.ignore_index, mode=how, kernel=kernel)
    return scores_to_labels(mass[None], tuple(label.shape))[0]


def check_labels(ds: SegDataset, res: tuple[int, int], modes=tuple(CHECK_MODES), progress: bool = True, dup: dict | None = None) -> dict:
    """Returns ``{"res": [w, h], "modes": {mode: {"miou", "pixel_acc", "per_class"}}, ...}`` (percent).

    ``dup`` (``{"W": (C*r*r, C') tensor, "r": r}``) enables the DUpsampling modes.
    """
    import torch

    w, h = res
    info = ds.info
    cms = {m: ConfusionMatrix(info.num_classes) for m in modes}
    for i in track(range(len(ds)), desc=f"labels check {w}x{h}", unit="img", enabled=progress):
        label = torch.from_numpy(ds[i].label)
        for mode in modes:
            cms[mode].update(label, kept_label(label, mode, res, info, dup))
    return {
        "dataset": info.name,
        "split": ds.split,
        "n_images": len(ds),
        "skipped": ds.skipped,
        "res": [w, h],
        "modes": {m: cms[m].summary(info.class_names) for m in modes},
    }


def format_check(result: dict, ds: SegDataset, split: str) -> str:
    """The labels-check result as printed: IoU per class and mode, and mIoU*."""
    from edgeseg.metrics import format_table

    chosen = list(result["modes"])
    rows = {name: {m: result["modes"][m]["per_class"][name] for m in chosen} for name in ds.info.class_names}
    rows["mIoU*"] = {m: result["modes"][m]["miou"] for m in chosen}
    w, h = result["res"]
    return (f"label fidelity at {w}x{h} on {ds.info.name}/{split} ({len(ds)} images"
            + (f", {ds.skipped} skipped" if ds.skipped else "") + "): IoU % after down- and up-sampling\n"
            + format_table(rows, chosen))


def check_labels_job(source, res: tuple[int, int], modes: str, limit: int | None = None, dup_stride: int = 16, dup_channels: int = 64,
                     progress: bool = True, plot_index: int | None = None) -> tuple[dict, SegDataset, dict | None]:
    """``edgeseg labels check``: ``modes`` (comma-separated) on ``source`` (a DataSource) at ``res``;
    the result, the data set and the fitted DUpsampling W (for the dupsample modes). ``plot_index``:
    the image --plot will draw, checked before the work."""
    from edgeseg.data import build_dataset
    from edgeseg.errors import ConfigError
    from edgeseg.limits import check_size

    check_size(*res, "--res")
    chosen = [m.strip() for m in modes.split(",") if m.strip()]
    known = list(CHECK_MODES) + list(DUP_MODES)
    unknown = [m for m in chosen if m not in known]
    if unknown or not chosen:
        said = f"unknown mode(s) {', '.join(unknown)}" if unknown else f"no mode in {modes!r}"
        raise ConfigError(f"--modes: {said}; expected a comma-separated subset of {', '.join(known)}")
    ds = build_dataset(source.dataset or "synthetic", source.data, source.split, source.skip_bad)
    if any(m in DUP_MODES for m in chosen):
        from edgeseg.models.dupsample import channels_problem

        if problem := channels_problem(dup_channels, dup_stride, ds.info.num_classes):
            raise ConfigError(f"--dup-channels {dup_channels}: {problem}")
        if dup_stride > min(res):
            raise ConfigError(f"--dup-stride {dup_stride}: larger than --res {res[0]}x{res[1]}, so no {dup_stride}x{dup_stride} label "
                              "block fits; give a smaller stride or a larger --res")
    if limit:
        ds = ds.subset(range(min(limit, len(ds))))
    if above := res_above_frames(ds, res):
        logger.warning(f"{above}: labels are up-sampled, and every mode keeps them all")
    if plot_index is not None:
        _check_plot_index(ds, plot_index)
    dup = None
    if set(chosen) & set(DUP_MODES):
        from edgeseg.trainer.dupsample_w import fitted_w

        train = build_dataset(source.dataset or "synthetic", source.data, "train", source.skip_bad)
        dup = {"r": dup_stride, "W": fitted_w(train, res, dup_stride, dup_channels, "soft", "area", progress=progress)}
    return check_labels(ds, res, chosen, progress=progress, dup=dup), ds, dup


def _check_plot_index(ds: SegDataset, index: int) -> None:
    from edgeseg.errors import ConfigError

    if index >= len(ds):
        raise ConfigError(f"--plot-index {index}: {ds.info.name}/{ds.split} has {len(ds)} images (counted from 0, within --limit)")


def plot_kept(ds: SegDataset, res: tuple[int, int], modes, index: int, path, dup: dict | None = None):
    """Draw what each label mode keeps of image ``index`` to ``path``."""
    import torch

    from edgeseg.tasks.plots import plot_label_modes

    _check_plot_index(ds, index)
    label = ds[index].label
    kept = {m: kept_label(torch.from_numpy(label), m, res, ds.info, dup).numpy() for m in modes}
    return plot_label_modes(label, kept, ds.info.palette, ds.info.class_names, res, path)
