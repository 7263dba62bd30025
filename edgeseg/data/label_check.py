"""``edgeseg labels check``: what a training resolution costs in label fidelity.

Each label is down-sampled to the training resolution by every mode, the class
masses are up-sampled back to native size (bilinear, half-pixel centres) and
arg-maxed, and the result is scored against the native label (void ignored).
The mIoU* so obtained is an upper bound on what a model trained on those
targets can reach at native resolution.
"""

from __future__ import annotations

from edgeseg.data.base import SegDataset
from edgeseg.data.resample import downsample_labels
from edgeseg.metrics import ConfusionMatrix
from edgeseg.progress import track
from edgeseg.runtime.processing import scores_to_labels

# mode name -> (downsample_labels mode, kernel)
CHECK_MODES = {
    "soft-area": ("soft", "area"),
    "soft-bilinear": ("soft", "bilinear"),
    "nearest": ("nearest", "area"),
    "onehot-bilinear": ("onehot-bilinear", "area"),
}


def check_labels(ds: SegDataset, res: tuple[int, int], modes=tuple(CHECK_MODES), progress: bool = True) -> dict:
    """Returns ``{"res": [w, h], "modes": {mode: {"miou", "pixel_acc", "per_class"}}, ...}`` (percent)."""
    import torch

    w, h = res
    info = ds.info
    cms = {m: ConfusionMatrix(info.num_classes) for m in modes}
    for i in track(range(len(ds)), desc=f"labels check {w}x{h}", unit="img", enabled=progress):
        sample = ds[i]
        label = torch.from_numpy(sample.label)
        for mode in modes:
            how, kernel = CHECK_MODES[mode]
            mass, _ = downsample_labels(label, (h, w), info.num_classes, info.ignore_index, mode=how, kernel=kernel)
            pred = scores_to_labels(mass[None], label.shape)[0]
            cms[mode].update(label, pred)
    return {
        "dataset": info.name,
        "split": ds.split,
        "n_images": len(ds),
        "skipped": ds.skipped,
        "res": [w, h],
        "modes": {m: cms[m].summary(info.class_names) for m in modes},
    }
