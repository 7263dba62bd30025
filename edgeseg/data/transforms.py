"""Joint training transforms at native resolution, then one kernel-matched resize.

Random scale, crop and flip act on image and label together at native
resolution; the crop window is then resized to the training resolution in a
single step, the image with the kernel and the label into the class mass under
the same kernel (or by a comparison mode). Photometric jitter touches the image
only, after the resize: it is per-pixel affine in colour, so it commutes with
the linear resize and is cheaper at low resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from edgeseg.data.base import DatasetInfo, Sample
from edgeseg.data.resample import downsample_labels, nearest_labels, resize_image
from edgeseg.errors import ConfigError

PAD_VALUE = 127  # image padding where a zoomed-out window leaves the frame


@dataclass(frozen=True)
class Augment:
    scale: tuple[float, float] = (0.75, 1.5)  # zoom: >1 shows a smaller window of the scene
    hflip: bool = True
    jitter: float = 0.2  # brightness, contrast and saturation strength; 0 turns it off

    def __post_init__(self):
        lo, hi = self.scale
        if not (0 < lo <= hi):
            raise ConfigError(f"augment scale range must satisfy 0 < min <= max, got {self.scale}")
        if not 0 <= self.jitter < 1:
            raise ConfigError(f"augment jitter must be in [0, 1), got {self.jitter}")


NO_AUGMENT = Augment(scale=(1.0, 1.0), hflip=False, jitter=0.0)


def crop_window(image: np.ndarray, label: np.ndarray, x0: int, y0: int, w: int, h: int, ignore_index: int, pad: int = PAD_VALUE):
    """Crop ``[y0:y0+h, x0:x0+w]``, padding outside the frame (image ``pad``, label void)."""
    H, W = label.shape
    if x0 >= 0 and y0 >= 0 and x0 + w <= W and y0 + h <= H:
        return image[y0 : y0 + h, x0 : x0 + w], label[y0 : y0 + h, x0 : x0 + w]
    img = np.full((h, w) + image.shape[2:], pad, dtype=image.dtype)
    lab = np.full((h, w), ignore_index, dtype=label.dtype)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + w, W), min(y0 + h, H)
    if sx1 > sx0 and sy1 > sy0:
        img[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
        lab[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = label[sy0:sy1, sx0:sx1]
    return img, lab


def photometric(img: torch.Tensor, rng: np.random.Generator, strength: float) -> torch.Tensor:
    """Brightness, contrast and saturation jitter on a float 3xhxw image in [0, 255]."""
    if strength <= 0:
        return img
    b, c, s = rng.uniform(1 - strength, 1 + strength, 3)
    grey = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])[None]
    img = grey + (img - grey) * float(s)
    img = (img - img.mean()) * float(c) + img.mean()
    return (img * float(b)).clamp_(0, 255)


class TrainTransform:
    """Sample -> (image 3xhxw float in [0,255], target) at the training resolution.

    ``target`` is ``{"mass": Cxhxw, "valid": hxw}`` for soft label modes and
    ``{"label": hxw int64}`` (void = ignore index) for ``nearest``.
    """

    def __init__(self, res: tuple[int, int], info: DatasetInfo, label_mode: str = "soft", kernel: str = "area", augment: Augment = Augment(),
                 target_res: tuple[int, int] | None = None):
        # ``res``: the image the model takes; ``target_res``: the resolution of its scores, where the
        # label is resampled with the image's kernel (above ``res`` for --upscale / --refine models).
        self.w, self.h = res
        self.tw, self.th = target_res or res
        self.info = info
        self.label_mode = label_mode
        self.kernel = kernel
        self.augment = augment

    def window(self, H: int, W: int, rng: np.random.Generator, centre: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
        lo, hi = self.augment.scale
        zoom = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else lo
        cw, ch = max(int(round(W / zoom)), 1), max(int(round(H / zoom)), 1)
        if centre is None:
            x0 = int(rng.integers(min(0, W - cw), max(0, W - cw) + 1))
            y0 = int(rng.integers(min(0, H - ch), max(0, H - ch) + 1))
        else:  # class-uniform crop: the centre pixel stays in view, the window inside the frame where it fits
            y, x = centre
            x0 = int(np.clip(x - cw // 2, min(0, W - cw), max(0, W - cw)))
            y0 = int(np.clip(y - ch // 2, min(0, H - ch), max(0, H - ch)))
        return x0, y0, cw, ch

    def __call__(self, sample: Sample, rng: np.random.Generator, centre: tuple[int, int] | None = None):
        image, label = sample.image, sample.label
        H, W = label.shape
        x0, y0, cw, ch = self.window(H, W, rng, centre)
        soft = None
        if sample.soft is not None and self.label_mode != "nearest":
            soft, _ = crop_window(sample.soft, label, x0, y0, cw, ch, self.info.ignore_index, pad=0)
        image, label = crop_window(image, label, x0, y0, cw, ch, self.info.ignore_index)
        flip = self.augment.hflip and rng.random() < 0.5
        if flip:
            image, label = image[:, ::-1], label[:, ::-1]
            soft = None if soft is None else soft[:, ::-1]
        image = np.ascontiguousarray(image)
        label = np.ascontiguousarray(label)
        img = resize_image(image, (self.h, self.w), self.kernel)
        img = photometric(img, rng, self.augment.jitter)
        label = torch.from_numpy(label)
        size = (self.th, self.tw)
        if self.label_mode == "nearest":
            return img, {"label": nearest_labels(label, size).to(torch.int64)}
        if soft is not None:  # top-2 soft label: the class mass is the sum of both weighted maps
            soft = torch.from_numpy(np.ascontiguousarray(soft))
            mass = valid = 0
            for k in (0, 2):
                m, v = downsample_labels(soft[..., k], size, self.info.num_classes, self.info.ignore_index,
                                         mode=self.label_mode, kernel=self.kernel, weight=soft[..., k + 1].float() / 255.0)
                mass, valid = mass + m, valid + v
            return img, {"mass": mass, "valid": valid}
        mass, valid = downsample_labels(
            label, size, self.info.num_classes, self.info.ignore_index, mode=self.label_mode, kernel=self.kernel
        )
        return img, {"mass": mass, "valid": valid}
