"""Cityscapes in the official layout, labelIds mapped to the 19 train classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.data.base import (
    IGNORE_INDEX,
    DatasetInfo,
    FileDataset,
    pair_by_key,
    require_dir,
)
from edgeseg.errors import DataError

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip
CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)  # fmt: skip
# labelId -> trainId for the 19 evaluated classes; every other id is void.
_LABEL_TO_TRAIN = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
LUT = np.full(256, IGNORE_INDEX, dtype=np.uint8)
for _lid, _tid in _LABEL_TO_TRAIN.items():
    LUT[_lid] = _tid
SPLITS = ("train", "val", "test")

INFO = DatasetInfo("cityscapes", CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, IGNORE_INDEX)
_IMG_SUFFIX = "_leftImg8bit.png"
_LAB_SUFFIX = "_gtFine_labelIds.png"


class Cityscapes(FileDataset):
    def sample_name(self, i: int) -> str:
        return self.pairs[i][0].name[: -len(_IMG_SUFFIX)]

    def map_label(self, raw: np.ndarray, path: Path) -> np.ndarray:
        return LUT[raw.astype(np.uint8, copy=False)]  # (values above 255 refused by FileDataset.load)


def build(root: Path, split: str, skip_bad: bool = False) -> Cityscapes:
    if split not in SPLITS:
        raise DataError(f"cityscapes has splits {', '.join(SPLITS)}; got '{split}'")
    require_dir(root, "Cityscapes root folder")
    image_root = require_dir(root / "leftImg8bit" / split, f"Cityscapes image folder leftImg8bit/{split}")
    label_root = require_dir(root / "gtFine" / split, f"Cityscapes label folder gtFine/{split}")
    # Key by "<city>/<frame>" so that equal frame names in two cities never pair up.
    images = sorted(image_root.glob(f"*/*{_IMG_SUFFIX}"))
    if not images:
        raise DataError(f"{image_root}: no *{_IMG_SUFFIX} files found under <city>/ folders")
    keyed_images = {f"{p.parent.name}/{p.name[: -len(_IMG_SUFFIX)]}": p for p in images}
    keyed_labels = {f"{p.parent.name}/{p.name[: -len(_LAB_SUFFIX)]}": p for p in label_root.glob(f"*/*{_LAB_SUFFIX}")}
    pairs, skipped = pair_by_key(keyed_images, keyed_labels, image_root, label_root, skip_bad)
    return Cityscapes(INFO, split, pairs, skipped)
