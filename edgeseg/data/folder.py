"""Bring-your-own data: images/ and masks/ with matching stems plus classes.json.

Layout (split folders optional)::

    ROOT/classes.json                 {"names": [...], "ignore_index": 255, "palette": [[r,g,b], ...]}
    ROOT/[<split>/]images/*.png|jpg
    ROOT/[<split>/]masks/*.png        class index per pixel, ignore_index for void
    ROOT/[<split>/]soft/*.png         optional top-2 soft labels (RGBA: class1, p1*255, class2, p2*255)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgeseg.data.base import (
    IGNORE_INDEX,
    MAX_CLASSES,
    DatasetInfo,
    FileDataset,
    default_palette,
    files_by_stem,
    pair_by_key,
    require_dir,
)
from edgeseg.errors import DataError
from edgeseg.fileio import is_integer, parse_json


def read_classes(path: Path) -> tuple[DatasetInfo, int]:
    """Parse classes.json; returns the info (void mapped to 255) and the file's own ignore value."""
    if not path.is_file():
        raise DataError(f"{path}: classes.json not found (expected {{\"names\": [...], \"ignore_index\": 255}})")
    try:
        doc = parse_json(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: expected a JSON object with key 'names'")
    names = doc.get("names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise DataError(f"{path}: key 'names' must be a non-empty list of class names")
    if len(set(names)) != len(names):
        raise DataError(f"{path}: key 'names' has duplicate class names")
    if len(names) > MAX_CLASSES:
        raise DataError(f"{path}: {len(names)} classes; at most {MAX_CLASSES} are supported (label masks are 8-bit)")
    ignore = doc.get("ignore_index", IGNORE_INDEX)
    if not isinstance(ignore, int) or isinstance(ignore, bool) or not (0 <= ignore <= 255) or ignore < len(names):
        raise DataError(
            f"{path}: key 'ignore_index' must be an integer in {len(names)}..255 (not a class index), got {ignore!r}"
        )
    palette = doc.get("palette")
    if palette is None:
        palette = default_palette(len(names))
    else:
        ok = (
            isinstance(palette, list)
            and len(palette) == len(names)
            and all(
                isinstance(c, list) and len(c) == 3 and all(is_integer(v) and 0 <= v <= 255 for v in c)
                for c in palette
            )
        )
        if not ok:
            raise DataError(f"{path}: key 'palette' must be a list of {len(names)} [r, g, b] triples in 0..255")
        palette = tuple(tuple(c) for c in palette)
    extra = sorted(set(doc) - {"names", "ignore_index", "palette"})
    if extra:
        raise DataError(f"{path}: unknown keys {extra}; expected names, ignore_index, palette")
    return DatasetInfo(path.parent.name or "folder", tuple(names), palette, IGNORE_INDEX), ignore


class Folder(FileDataset):
    file_ignore: int = IGNORE_INDEX
    soft_dir: Path | None = None  # soft/<stem>.png: top-2 soft labels written by 'edgeseg autolabel --soft'

    def load(self, i: int):
        sample = super().load(i)
        if self.soft_dir is None:
            return sample
        path = self.soft_dir / f"{self.pairs[i][1].stem}.png"
        if not path.is_file():
            return sample
        from edgeseg.data.base import open_image

        try:
            with open_image(path) as im:
                if im.mode not in ("RGBA", "RGB"):  # a conversion from another mode would make up the class pairs
                    raise DataError(f"{path}: soft label has mode {im.mode}; expected an 8-bit RGBA PNG (as autolabel writes)")
                soft = np.array(im.convert("RGBA") if im.mode != "RGBA" else im, dtype=np.uint8)
        except (OSError, SyntaxError, ValueError) as exc:  # PIL's decoders raise all three; a bomb is a ValueError
            raise DataError(f"{path}: cannot read soft label ({str(exc)[:160]})") from None
        if soft.shape[:2] != sample.label.shape:
            raise DataError(f"{path}: soft label is {soft.shape[1]}x{soft.shape[0]}; its mask is {sample.label.shape[1]}x{sample.label.shape[0]}")
        C = self.info.num_classes
        if soft[..., 0].max() >= C or soft[..., 2].max() >= C:
            raise DataError(f"{path}: soft label classes must be below {C}")
        return sample._replace(soft=soft)

    def label_files(self, i: int) -> list[Path]:
        files = super().label_files(i)
        if self.soft_dir is not None:
            files.append(self.soft_dir / f"{self.pairs[i][1].stem}.png")
        return files

    def map_label(self, raw: np.ndarray, path: Path) -> np.ndarray:
        if self.file_ignore == IGNORE_INDEX:
            return raw
        label = raw.copy()
        label[raw == self.file_ignore] = IGNORE_INDEX
        return label


def build(root: Path, split: str, skip_bad: bool = False) -> Folder:
    require_dir(root, "folder data set root")
    info, file_ignore = read_classes(root / "classes.json")
    base = root / split
    if not (base / "images").is_dir():
        splits = sorted(d.name for d in root.iterdir() if d.is_dir() and (d / "images").is_dir())
        if splits:  # split folders, not the one asked for: never another split, or the root, in its place
            raise DataError(f"{root}: no split '{split}' ({root}/{split}/images/ not found); its splits: {', '.join(splits)}")
        base = root  # the flat layout: one set of images, whichever split is asked for (the trainer says so)
    image_dir = require_dir(base / "images", f"images/ folder (expected {root}/images/ or {root}/{split}/images/)")
    mask_dir = require_dir(base / "masks", "masks/ folder")
    images = files_by_stem(image_dir)
    masks = files_by_stem(mask_dir, (".png",))
    if not images:
        raise DataError(f"{image_dir}: no images found (expected PNG or JPEG files)")
    pairs, skipped = pair_by_key(images, masks, image_dir, mask_dir, skip_bad)
    ds = Folder(info, split, pairs, skipped)
    ds.file_ignore = file_ignore
    if (base / "soft").is_dir():
        ds.soft_dir = base / "soft"
    return ds
