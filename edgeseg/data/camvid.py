"""CamVid in the SegNet layout: train/, trainannot/, val/, valannot/, test/, testannot/."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.data.base import (
    IGNORE_INDEX,
    DatasetInfo,
    FileDataset,
    files_by_stem,
    pair_by_key,
    require_dir,
)

CAMVID_CLASSES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)  # fmt: skip
CAMVID_PALETTE = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)  # fmt: skip
CAMVID_VOID = 11
SPLITS = ("train", "val", "test")

INFO = DatasetInfo("camvid", CAMVID_CLASSES, CAMVID_PALETTE, IGNORE_INDEX)


class CamVid(FileDataset):
    def map_label(self, raw: np.ndarray, path: Path) -> np.ndarray:
        label = raw.astype(np.uint8, copy=True) if raw.dtype != np.uint8 else raw.copy()
        label[raw == CAMVID_VOID] = IGNORE_INDEX
        return label


def build(root: Path, split: str, skip_bad: bool = False) -> CamVid:
    from edgeseg.errors import DataError

    if split not in SPLITS:
        raise DataError(f"camvid has splits {', '.join(SPLITS)}; got '{split}'")
    require_dir(root, "CamVid root folder")
    image_dir = require_dir(root / split, f"CamVid split folder '{split}' (expected {root}/{split}/ and {root}/{split}annot/)")
    label_dir = require_dir(root / f"{split}annot", f"CamVid label folder '{split}annot'")
    images = files_by_stem(image_dir)
    labels = files_by_stem(label_dir, (".png",))
    if not images:
        raise DataError(f"{image_dir}: no images found (expected PNG files)")
    pairs, skipped = pair_by_key(images, labels, image_dir, label_dir, skip_bad)
    return CamVid(INFO, split, pairs, skipped)
