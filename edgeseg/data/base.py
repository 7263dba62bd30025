"""The one dataset interface: native-resolution samples plus class metadata."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edgeseg.errors import DataError

IGNORE_INDEX = 255
MAX_CLASSES = 254  # label masks are 8-bit, with a void value of their own


@dataclass(frozen=True)
class DatasetInfo:
    """What a model trained on a data set needs to know about its classes."""

    name: str
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    ignore_index: int = IGNORE_INDEX

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "class_names": list(self.class_names),
            "palette": [list(c) for c in self.palette],
            "ignore_index": self.ignore_index,
        }


def classes_text(names) -> str:
    """A class list for a one-line message: the first six names and the count."""
    names = tuple(names)
    return f"{', '.join(names[:6])}{', ...' if len(names) > 6 else ''}; {len(names)} classes"


class Sample(NamedTuple):
    image: np.ndarray  # uint8 HxWx3
    label: np.ndarray  # uint8 HxW, classes 0..C-1, void = info.ignore_index
    name: str
    soft: np.ndarray | None = None  # optional uint8 HxWx4 top-2 soft label: class1, p1*255, class2, p2*255
    teacher: np.ndarray | None = None  # optional uint8 HxWx2K: a teacher's top-K classes and probabilities (class, p*255, ...)


def default_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """Distinct colours for ``n`` classes (bit-interleaved, as in PASCAL VOC)."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i + 1
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return tuple(out)


def open_image(path: Path):
    """PIL's open, its header checked against edgeseg's size bound (edgeseg.limits) before any
    pixel is decoded (PIL's own decompression-bomb warning is left out: this check replaces it)."""
    import warnings

    previous = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        Image.MAX_IMAGE_PIXELS = None  # PIL's own bound (an error above twice its warning) would pre-empt ours with its wording
        try:
            im = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = previous
    try:
        _check_header(im, path)
    except DataError:
        im.close()
        raise
    return im


def _check_header(im, path: Path) -> None:
    """A header claiming a size above the bound (edgeseg.limits) is refused before decoding
    (decompression bombs), for images and labels alike."""
    from edgeseg.limits import size_problem

    problem = size_problem(*im.size)
    if problem:
        raise DataError(f"{path}: the header claims {problem}; refusing to decode it")


def read_image(path: Path, upright: bool = False) -> np.ndarray:
    """An RGB image as uint8 HxWx3, or a DataError naming the file.

    16-bit images are reduced to 8 bits by their top byte (value >> 8), stated here because a
    plain conversion would clip them to 255 (``read_image.reduced`` counts them, so a command can
    say so once); headers above the size bound (edgeseg.limits) are refused. ``upright``: turned
    as its EXIF orientation says, as viewers show a camera's photo (predict); a data set's images
    are read as stored, the pixels their masks were drawn on.
    """
    try:
        with open_image(path) as im:
            if any(";16" in str(getattr(t, "args", "")) for t in (im.tile or ())):  # 16-bit colour: the decoder keeps the top byte
                _note_reduced(path)
            if im.mode == "F":  # converting would clip its values (often 0..1) to black
                raise DataError(f"{path}: a 32-bit floating-point image; edgeseg reads 8- and 16-bit images (convert it to 8 bits first)")
            if getattr(im, "n_frames", 1) > 1 and im.format != "MPO":  # a phone's JPEG with a second, smaller picture is one photo
                _note_first_frame(path, im.n_frames)
            im.load()
            if upright:
                im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: top byte, then grey -> RGB
                values = np.array(im).astype(np.int64)
                if im.mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):  # mode I holds 32-bit integers too
                    raise DataError(f"{path}: a 32-bit integer image (values {values.min()}..{values.max()}); edgeseg reads 8- and "
                                    "16-bit images (convert it first)")
                _note_reduced(path)
                grey = (values >> 8).clip(0, 255).astype(np.uint8)
                return np.repeat(grey[..., None], 3, axis=2)
            if im.mode != "RGB":
                im = im.convert("RGB")
            return np.array(im, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: refusing to decode a possible decompression bomb ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot read image ({exc}); expected a readable PNG or JPEG") from None


_REDUCED: set = set()


def _note_reduced(path: Path) -> None:
    """Say once per process that 16-bit images are reduced to 8 bits (and which was the first)."""
    if not _REDUCED:
        import logging

        logging.getLogger(__name__).warning(f"{path}: a 16-bit image; 16-bit images are reduced to 8 bits by their top byte "
                                            "(value >> 8) as they are read (said once)")
    _REDUCED.add(str(path))


_MULTI_FRAME: set = set()


def _note_first_frame(path: Path, frames: int) -> None:
    """Say once per process that of an image file of several frames (a multi-page TIFF, an animated
    WebP) the first frame is read."""
    if not _MULTI_FRAME:
        import logging

        logging.getLogger(__name__).warning(f"{path}: {frames} frames in one image file; edgeseg reads the first frame of such "
                                            "files (said once; give each frame as its own image to use them all)")
    _MULTI_FRAME.add(str(path))


def read_label(path: Path) -> np.ndarray:
    """A single-channel label map as an integer HxW array, or a DataError naming the file."""
    try:
        with open_image(path) as im:
            im.load()
            if im.mode in ("L", "P"):
                return np.array(im, dtype=np.uint8)
            if im.mode == "1":  # a 1-bit mask: classes 0 and 1 (PIL reads it as booleans)
                return np.array(im).astype(np.uint8)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                return np.array(im).astype(np.int64)
            raise DataError(
                f"{path}: label image has mode {im.mode}; expected a single-channel (1-bit, L, P or 16-bit) PNG of class indices"
            )
    except FileNotFoundError:
        raise DataError(f"{path}: label file not found") from None
    except DataError:
        raise
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: refusing to decode a possible decompression bomb ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot read label ({exc}); expected a readable single-channel PNG") from None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding pixels; refused above the size bound."""
    try:
        with open_image(path) as im:
            return im.size
    except DataError:
        raise
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: refusing to decode a possible decompression bomb ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot read image header ({exc})") from None


class SegDataset:
    """Base class: ``len(ds)`` samples, ``ds[i]`` a native-resolution ``Sample``.

    Labels come out as uint8 with classes 0..C-1 and void equal to
    ``info.ignore_index``; anything else is rejected with the file named.
    """

    info: DatasetInfo
    split: str
    skipped: int = 0
    root: str | None = None  # the folder it was read from (build_dataset), for saying which data was used

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.load(i)

    def load(self, i: int) -> Sample:
        raise NotImplementedError

    def sample_name(self, i: int) -> str:
        raise NotImplementedError

    def label_files(self, i: int) -> list[Path]:
        """Files that hold sample ``i``'s labels (none for generated data)."""
        return []

    def fingerprint(self, limit: int | None = None) -> str:
        """A hash of what the labels of the first ``limit`` samples are: names, classes and each
        label file's size, modification and change times (a file replaced with one of the same size and
        modification time changes the last), so caches built from labels notice edits."""
        items = []
        for i in range(len(self) if limit is None else min(limit, len(self))):
            files = [(p.name, st.st_size, st.st_mtime_ns, st.st_ctime_ns) for p in self.label_files(i) if p.is_file() for st in [p.stat()]]
            items.append([self.sample_name(i), files])
        blob = json.dumps([self.info.name, self.split, list(self.info.class_names), self.info.ignore_index, items])
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def subset(self, indices: Sequence[int]) -> "SegDataset":
        """A shallow copy holding only ``indices`` (positions in this data set)."""
        sub = copy.copy(self)
        sub._keep(indices)
        return sub

    def validate(self, skip_bad: bool) -> int:
        """Read every sample; drop bad ones when ``skip_bad``, else raise on the first.

        Returns the number of samples dropped.
        """
        keep = []
        for i in range(len(self)):
            try:
                self.load(i)
            except DataError:
                if not skip_bad:
                    raise
                continue
            keep.append(i)
        dropped = len(self) - len(keep)
        if dropped:
            self._keep(keep)
            self.skipped += dropped
        return dropped

    def _keep(self, indices: Sequence[int]) -> None:
        """Keep only ``indices``, rebinding (never mutating) the index list, so copies stay independent."""
        raise NotImplementedError


class FileDataset(SegDataset):
    """A data set of (image file, label file) pairs."""

    def __init__(self, info: DatasetInfo, split: str, pairs: list[tuple[Path, Path]], skipped: int = 0):
        self.info = info
        self.split = split
        self.pairs = pairs
        self.skipped = skipped

    def __len__(self) -> int:
        return len(self.pairs)

    def sample_name(self, i: int) -> str:
        return self.pairs[i][0].stem

    def map_label(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Data-set-specific id mapping; the default takes values as they are."""
        return raw

    def load(self, i: int) -> Sample:
        img_path, lab_path = self.pairs[i]
        image = read_image(img_path)
        raw = read_label(lab_path)
        if raw.shape != image.shape[:2]:
            raise DataError(
                f"{lab_path}: label is {raw.shape[1]}x{raw.shape[0]} but its image {img_path.name} is "
                f"{image.shape[1]}x{image.shape[0]}; expected the same size"
            )
        if raw.dtype != np.uint8 and raw.size and (raw.min() < 0 or raw.max() > 255):  # before any data set's mapping casts it
            raise DataError(f"{lab_path}: label values {int(raw.min())}..{int(raw.max())}; expected 8-bit values "
                            f"(classes 0..{self.info.num_classes - 1} and a void value)")
        label = self.map_label(raw, lab_path)
        check_label_values(label, self.info, lab_path)
        return Sample(image, label.astype(np.uint8, copy=False), self.sample_name(i))

    def _keep(self, indices: Sequence[int]) -> None:
        self.pairs = [self.pairs[i] for i in indices]

    def label_files(self, i: int) -> list[Path]:
        return [self.pairs[i][1]]

    def sample_files(self, i: int) -> list[Path]:
        """Every file sample ``i`` is read from (image, then labels)."""
        return [self.pairs[i][0]] + [p for p in self.label_files(i) if p.is_file()]


def frame_sizes(ds: SegDataset) -> set[tuple[int, int]]:
    """The (width, height) frame sizes in a data set (read from file headers)."""
    if not ds.label_files(0):  # generated data: one frame size
        return {tuple(ds[0].label.shape[::-1])}
    return {image_size(ds.label_files(i)[0]) for i in range(len(ds))}


def res_above_frames(ds: SegDataset, res: tuple[int, int]) -> str | None:
    """Where ``--res`` is above the data set's frames (its first one's header, not every file's), the
    start of a sentence saying so; else None."""
    first = frame_sizes(ds.subset([0])).pop()
    if res[0] > first[0] or res[1] > first[1]:
        return f"--res {res[0]}x{res[1]} is above the frames of {ds.info.name} ({first[0]}x{first[1]}, its first image)"
    return None


def check_labelled(ds: SegDataset, what: str) -> None:
    """Refuse a split whose labels are all void (an auto-labelling at threshold 1, say): training on it
    learns nothing and scoring it gives no number. Stops at the first labelled pixel (the first image, as a rule)."""
    for i in range(len(ds)):
        files = ds.label_files(i) if isinstance(ds, FileDataset) else []
        label = ds.map_label(read_label(files[0]), files[0]) if files else ds[i].label  # (the label alone: no image decoded)
        if bool((label != ds.info.ignore_index).any()):
            return
    raise DataError(f"{what}: {ds.info.name}/{ds.split} holds no labelled pixel in its {len(ds)} images (every pixel is void); "
                    "nothing to learn from or score")


def resolved_files(ds: SegDataset, i: int) -> list[Path]:
    """The files sample ``i`` of ``ds`` is read from (image first), resolved: the same files however
    --data was spelled, from any working folder; none for generated data."""
    files = getattr(ds, "sample_files", None)
    return [Path(p).resolve() for p in files(i)] if files is not None else []


class ConcatDataset(SegDataset):
    """Several data sets with the same classes, one after the other (e.g. labels plus auto-labels)."""

    def __init__(self, parts: Sequence[SegDataset]):
        first = parts[0]
        for p in parts[1:]:
            if p.info.class_names != first.info.class_names:
                raise DataError(f"data set '{p.info.name}' has other classes ({classes_text(p.info.class_names)}) than "
                                f"'{first.info.name}' ({classes_text(first.info.class_names)})")
        self.parts = list(parts)
        self.info = first.info
        self.split = first.split
        self.skipped = sum(p.skipped for p in parts)
        self.index = [(k, i) for k, p in enumerate(self.parts) for i in range(len(p))]

    def __len__(self) -> int:
        return len(self.index)

    def load(self, i: int) -> Sample:
        k, j = self.index[i]
        return self.parts[k].load(j)

    def sample_name(self, i: int) -> str:
        k, j = self.index[i]
        return f"{k}:{self.parts[k].sample_name(j)}"

    def _keep(self, indices: Sequence[int]) -> None:
        self.index = [self.index[i] for i in indices]

    def label_files(self, i: int) -> list[Path]:
        k, j = self.index[i]
        return self.parts[k].label_files(j)


def check_label_values(label: np.ndarray, info: DatasetInfo, where) -> None:
    values = np.unique(label) if label.dtype != np.uint8 else np.nonzero(np.bincount(label.ravel(), minlength=256))[0]
    bad = [int(v) for v in values if not (0 <= v < info.num_classes or v == info.ignore_index)]
    if bad:
        raise DataError(
            f"{where}: label values {bad[:8]} are neither a class (0..{info.num_classes - 1}) "
            f"nor the ignore value {info.ignore_index}"
        )


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{path}: {what} not found" + ("; it is a file, not a folder" if path.exists() else ""))
    return path


def pair_by_key(
    images: dict[str, Path], labels: dict[str, Path], image_dir: Path, label_dir: Path, skip_bad: bool
) -> tuple[list[tuple[Path, Path]], int]:
    """Match images to labels by key; an unmatched file is an error unless ``skip_bad``."""
    pairs = []
    skipped = 0
    for key in sorted(images):
        lab = labels.get(key)
        if lab is None:
            if skip_bad:
                skipped += 1
                continue
            raise DataError(f"{images[key]}: no label for this image in {label_dir} (expected a file with the same name)")
        pairs.append((images[key], lab))
    orphans = sorted(set(labels) - set(images))
    if orphans:
        if not skip_bad:
            raise DataError(f"{labels[orphans[0]]}: label has no image in {image_dir} ({len(orphans)} such labels)")
        skipped += len(orphans)
    return pairs, skipped


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def list_files(folder: Path, suffixes=IMAGE_SUFFIXES) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def files_by_stem(folder: Path, suffixes=IMAGE_SUFFIXES) -> dict[str, Path]:
    """The files of ``folder`` by name stem, the key that pairs an image with its mask; two files of one
    stem (s0.jpg and s0.png) are refused by name: which of them pairs with the mask would be an accident."""
    found: dict[str, Path] = {}
    for p in list_files(folder, suffixes):
        if p.stem in found:
            raise DataError(f"{folder}: {found[p.stem].name} and {p.name} share the name stem '{p.stem}', which pairs an image "
                            "with its mask; keep one of them")
        found[p.stem] = p
    return found
