"""Data sets (native-resolution samples) and kernel-matched label down-sampling."""

from __future__ import annotations

from dataclasses import dataclass
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
from edgeseg.records import check_fields, opt


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
    if name == "synthetic" and root is not None:
        raise ConfigError(f"--data {root}: the synthetic data set is generated and has no root folder; "
                          "give --dataset with --data, or leave --data out")
    ds = DATASETS[name](Path(root) if root is not None else None, split, skip_bad)
    ds.root = str(Path(root).resolve()) if root is not None else None
    if skip_bad:
        ds.validate(skip_bad=True)
        if ds.skipped:  # every command that opens a data set says it, as --skip-bad promises
            import logging

            where = f"{name}/{split}" + (f" at {ds.root}" if ds.root else "")
            logging.getLogger(__name__).warning(f"{where}: {ds.skipped} of {ds.skipped + len(ds)} samples skipped "
                                                "(--skip-bad): unreadable or inconsistent files")
    if len(ds) == 0:
        raise DataError(f"dataset '{name}' split '{split}' has no usable samples")
    return ds


@dataclass(frozen=True)
class DataSource:
    """Which data set a command reads: ``--dataset``, ``--data``, ``--split``, ``--skip-bad``, checked once."""

    dataset: str | None = opt(None, choices=None, help="Data set kind [default: synthetic, or the model's training data set where known].")
    data: str | None = opt(None, input=True, help="Data set root folder (not needed for synthetic).")
    split: str = opt("val", help="Data set split.")
    skip_bad: bool = opt(False, help="Skip unreadable or inconsistent samples and report how many.")

    def __post_init__(self):
        check_fields(self)
        if self.dataset is not None and self.dataset not in DATASETS:
            raise ConfigError(f"--dataset: expected one of {', '.join(DATASETS)}; got '{self.dataset}'")
        for name in ("data", "split"):
            value = getattr(self, name)
            if value is not None and not str(value).strip():
                raise ConfigError(f"--{name}: expected a value, got an empty string")

    def open(self, model_dataset: str | None = None, saved_root: str | None = None, split: str | None = None) -> SegDataset:
        """The data set, or for a model (its training data set ``model_dataset``, saved at
        ``saved_root``) the one it was trained on where none is given; ``split`` overrides."""
        return resolve_dataset(model_dataset, self.dataset, self.data, split or self.split, self.skip_bad, saved_root)


__all__ = [
    "DATASETS",
    "DataSource",
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


def resolve_dataset(model_dataset: str | None, dataset: str | None, data, split: str, skip_bad: bool,
                    saved_root: str | None = None) -> SegDataset:
    """The data set to score a model on: ``dataset`` as given, else the one the model was
    trained on (``model_dataset``, from its metadata; '' when it does not say), at ``data`` or
    where it was saved. Without a model (``model_dataset`` None): ``dataset``, else synthetic."""
    if model_dataset is None:
        return build_dataset(dataset or "synthetic", data, split, skip_bad)
    name = dataset or (model_dataset if model_dataset in DATASETS else None)
    if name is None:
        raise ConfigError(
            f"--dataset: the model does not say which data set it was trained on ({model_dataset or 'no metadata'}); "
            "give --dataset and --data"
        )
    root = data if data is not None else (saved_root if name == model_dataset != "synthetic" else None)
    return build_dataset(name, root, split, skip_bad)
