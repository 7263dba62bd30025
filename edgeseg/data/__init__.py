"""Data sets (native-resolution samples) and kernel-matched label down-sampling."""

from __future__ import annotations

from pathlib import Path

from edgeseg.data.base import IGNORE_INDEX, DatasetInfo, Sample, SegDataset
from edgeseg.data.resample import (
    KERNELS,
    LABEL_MODES,
    downsample_labels,
    kernel_matrix,
    resize,
    resize_image,
)
from edgeseg.errors import ConfigError, DataError


def _camvid(root, split, skip_bad):
    from edgeseg.data import camvid

    return camvid.build(root, split, skip_bad)


def _cityscapes(root, split, skip_bad):
    from edgeseg.data import cityscapes

    return cityscapes.build(root, split, skip_bad)


def _folder(root, split, skip_bad):
    from edgeseg.data import folder

    return folder.build(root, split, skip_bad)


def _synthetic(root, split, skip_bad):
    from edgeseg.data import synthetic

    return synthetic.build(root, split, skip_bad)


DATASETS = {"synthetic": _synthetic, "camvid": _camvid, "cityscapes": _cityscapes, "folder": _folder}


def build_dataset(name: str = "synthetic", root: str | Path | None = None, split: str = "train", skip_bad: bool = False) -> SegDataset:
    """Open a data set split. ``root`` is required for every data set but ``synthetic``.

    With ``skip_bad`` every sample is read once up front and bad ones are dropped
    (``ds.skipped`` counts them); without it the first bad sample raises a
    ``DataError`` naming its file.
    """
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset '{name}'; expected one of: {', '.join(DATASETS)}")
    if name != "synthetic" and root is None:
        raise ConfigError(f"dataset '{name}' needs --data PATH (its root folder)")
    ds = DATASETS[name](Path(root) if root is not None else None, split, skip_bad)
    if skip_bad:
        ds.validate(skip_bad=True)
    if len(ds) == 0:
        raise DataError(f"dataset '{name}' split '{split}' has no usable samples")
    return ds


__all__ = [
    "DATASETS",
    "IGNORE_INDEX",
    "KERNELS",
    "LABEL_MODES",
    "DatasetInfo",
    "Sample",
    "SegDataset",
    "build_dataset",
    "downsample_labels",
    "kernel_matrix",
    "resize",
    "resize_image",
]


def resolve_dataset(model_dataset: str, dataset: str | None, data, split: str, skip_bad: bool, saved_root: str | None = None) -> SegDataset:
    """The data set to score a model on: ``dataset`` as given, else the one the model was
    trained on (``model_dataset``, from its metadata), at ``data`` or where it was saved."""
    name = dataset or (model_dataset if model_dataset in DATASETS else None)
    if name is None:
        raise ConfigError(
            f"--dataset: the model does not say which data set it was trained on ({model_dataset or 'no metadata'}); "
            "give --dataset and --data"
        )
    root = data if data is not None else (saved_root if name == model_dataset else None)
    return build_dataset(name, root, split, skip_bad)
