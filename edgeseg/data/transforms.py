"""Joint training transforms: a random window of the native frame (zoom, crop, flip), resized
once to the training resolution, the image with the kernel and the label into the class mass
under the same kernel (or by a comparison mode). Photometric jitter touches the image only,
after the resize: it is per-pixel affine in colour, so it commutes with the linear resize and
is cheaper at low resolution.

A transform is two steps: ``plan`` draws the random choices of a sample (window, flip, jitter)
from its generator, and ``apply`` carries them out at tap cost (edgeseg.data.window) on
whatever device the frame is on, so a loader worker can plan and a GPU apply
(``--augment-on device``) with the same result. ``reference`` is the earlier implementation
(crop, then dense resize); the tests hold ``apply`` equal to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from edgeseg.data.base import DatasetInfo, Sample
from edgeseg.data.resample import downsample_labels, nearest_labels, resize_image
from edgeseg.data.window import axis_taps, downsample_window_labels, nearest_index, nearest_window_labels, resize_window_image
from edgeseg.errors import ConfigError, DataError

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


def jitter_factors(rng: np.random.Generator, strength: float) -> tuple[float, float, float] | None:
    """Brightness, contrast and saturation factors drawn for one sample (None when jitter is off)."""
    if strength <= 0:
        return None
    b, c, s = rng.uniform(1 - strength, 1 + strength, 3)
    return float(b), float(c), float(s)


def apply_jitter(img: torch.Tensor, factors: tuple[float, float, float] | None) -> torch.Tensor:
    """Brightness, contrast and saturation jitter on a float 3xhxw image in [0, 255]."""
    if factors is None:
        return img
    b, c, s = factors
    grey = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])[None]
    img = grey + (img - grey) * s
    img = (img - img.mean()) * c + img.mean()
    return (img * b).clamp_(0, 255)


def photometric(img: torch.Tensor, rng: np.random.Generator, strength: float) -> torch.Tensor:
    """Jitter drawn from ``rng`` and applied (the two steps above in one)."""
    return apply_jitter(img, jitter_factors(rng, strength))


@dataclass(frozen=True)
class Plan:
    """The random choices of one training sample: its window in frame coordinates (it may leave
    the frame), whether it is mirrored, and its jitter factors."""

    x0: int
    y0: int
    width: int
    height: int
    flip: bool
    jitter: tuple[float, float, float] | None


class TrainTransform:
    """Sample -> (image 3xhxw float in [0,255], target) at the training resolution.

    ``target`` is ``{"mass": Cxhxw, "valid": hxw}`` for soft label modes and
    ``{"label": hxw int64}`` (void = ignore index) for ``nearest``.
    """

    def __init__(self, res: tuple[int, int], info: DatasetInfo, label_mode: str = "soft", kernel: str = "area", augment: Augment = Augment(),
                 target_res: tuple[int, int] | None = None, sr_res: tuple[int, int] | None = None):
        # ``res``: the image the model takes; ``target_res``: the resolution of its scores, where the
        # label (and a teacher's map) is resampled with the image's kernel (above ``res`` for --upscale /
        # --refine models); ``sr_res``: where the window is also rendered for the SR auxiliary (--sr-aux).
        self.w, self.h = res
        self.tw, self.th = target_res or res
        self.sr_res = tuple(sr_res) if sr_res else None
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

    def plan(self, H: int, W: int, rng: np.random.Generator, centre: tuple[int, int] | None = None) -> Plan:
        """The sample's random choices, drawn from ``rng`` in a fixed order (window, flip, jitter)."""
        x0, y0, cw, ch = self.window(H, W, rng, centre)
        flip = bool(self.augment.hflip and rng.random() < 0.5)
        return Plan(x0, y0, cw, ch, flip, jitter_factors(rng, self.augment.jitter))

    def __call__(self, sample: Sample, rng: np.random.Generator, centre: tuple[int, int] | None = None, sparse: bool = False):
        return self.apply(sample.image, sample.label, self.plan(*sample.label.shape, rng, centre), sample.soft, sparse, sample.teacher)

    def apply(self, image, label, plan: Plan, soft=None, sparse: bool = False, teacher=None):
        """Carry out ``plan`` on a native frame (``image`` HxWx3 uint8, ``label`` HxW; numpy arrays or
        tensors, on any device): (image 3xhxw float in [0,255], target) at tap cost. With ``sparse``,
        a soft target comes as a SparseMass (window.dense_mass makes it dense where it is used);
        ``teacher`` (HxWx2K) adds the teacher's class mass, ``sr_res`` the window for --sr-aux."""
        img, target = self._apply_labels(image, label, plan, soft, sparse)
        return img, {**target, **self._extras(torch.as_tensor(image), label, plan, teacher)}

    def _extras(self, image: torch.Tensor, label, plan: Plan, teacher) -> dict:
        """The targets beside the label: a teacher's class mass at the output resolution (``teacher``
        HxWx2K), and the window rendered at ``sr_res`` for the SR auxiliary."""
        out = {}
        H, W = image.shape[:2]
        if teacher is not None:
            teacher = torch.as_tensor(teacher)
            ys = axis_taps(H, plan.y0, plan.height, self.th, self.kernel, device=image.device)
            xs = axis_taps(W, plan.x0, plan.width, self.tw, self.kernel, plan.flip, device=image.device)
            mass = valid = 0
            for k in range(0, teacher.shape[-1], 2):
                try:  # the tap refuses class indices out of range, as in any label; say whose they are
                    m, v = downsample_window_labels(teacher[..., k], ys, xs, self.info.num_classes, self.info.ignore_index,
                                                    weight=teacher[..., k + 1], weight_scale=1.0 / 255.0)
                except DataError as exc:
                    raise DataError(f"teacher labels (--teacher): {exc}; make them again from the teacher checkpoint") from None
                mass, valid = mass + m, valid + v
            out.update(teacher_mass=mass, teacher_valid=valid)
        if self.sr_res is not None:
            sw, sh = self.sr_res
            ys = axis_taps(H, plan.y0, plan.height, sh, self.kernel, device=image.device)
            xs = axis_taps(W, plan.x0, plan.width, sw, self.kernel, plan.flip, device=image.device)
            out["sr"] = apply_jitter(resize_window_image(image, ys, xs, float(PAD_VALUE)), plan.jitter)
        return out

    def _apply_labels(self, image, label, plan: Plan, soft=None, sparse: bool = False):
        image, label = torch.as_tensor(image), torch.as_tensor(label)
        H, W = label.shape
        kernel = self.kernel
        ys, xs = axis_taps(H, plan.y0, plan.height, self.h, kernel, device=image.device), \
            axis_taps(W, plan.x0, plan.width, self.w, kernel, plan.flip, device=image.device)
        img = apply_jitter(resize_window_image(image, ys, xs, float(PAD_VALUE)), plan.jitter)
        if (self.th, self.tw) != (self.h, self.w):
            ys, xs = axis_taps(H, plan.y0, plan.height, self.th, kernel, device=image.device), \
                axis_taps(W, plan.x0, plan.width, self.tw, kernel, plan.flip, device=image.device)
        info = self.info
        if self.label_mode == "nearest":
            rows = nearest_index(H, plan.y0, plan.height, self.th, device=image.device)
            cols = nearest_index(W, plan.x0, plan.width, self.tw, plan.flip, device=image.device)
            return img, {"label": nearest_window_labels(label, rows, cols, info.ignore_index)}
        if self.label_mode != "soft":
            return self._reference_labels(img, label, plan)
        if soft is not None:  # top-2 soft label: the class mass is the sum of both weighted maps
            soft = torch.as_tensor(soft)
            mass = valid = 0
            for k in (0, 2):
                m, v = downsample_window_labels(soft[..., k], ys, xs, info.num_classes, info.ignore_index,
                                                weight=soft[..., k + 1], weight_scale=1.0 / 255.0)
                mass, valid = mass + m, valid + v
            return img, {"mass": mass, "valid": valid}
        if sparse and label.dtype == torch.uint8 and label.device.type == "cpu":
            return img, downsample_window_labels(label, ys, xs, info.num_classes, info.ignore_index, sparse=True)
        mass, valid = downsample_window_labels(label, ys, xs, info.num_classes, info.ignore_index)
        return img, {"mass": mass, "valid": valid}

    def _reference_labels(self, img, label, plan: Plan):
        """The comparison label modes (onehot-bilinear) through the materialised crop."""
        lab = np.asarray(label.cpu())
        _, lab = crop_window(lab[..., None], lab, plan.x0, plan.y0, plan.width, plan.height, self.info.ignore_index)
        if plan.flip:
            lab = lab[:, ::-1]
        mass, valid = downsample_labels(torch.from_numpy(np.ascontiguousarray(lab)), (self.th, self.tw), self.info.num_classes,
                                        self.info.ignore_index, mode=self.label_mode, kernel=self.kernel)
        return img, {"mass": mass.to(img.device), "valid": valid.to(img.device)}

    def reference(self, sample: Sample, rng: np.random.Generator, centre: tuple[int, int] | None = None):
        """The earlier implementation, kept as the reference the tap-cost path is tested against:
        the crop materialised (padded), flipped, converted to float and resized with dense
        kernel matrices; the label down-sampled from the crop."""
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


def window_part(plan: Plan, H: int, W: int) -> tuple[int, int, int, int]:
    """The part of an HxW frame that ``plan``'s window covers: ``(r0, r1, c0, c1)`` (may be empty)."""
    r0, r1 = max(plan.y0, 0), min(plan.y0 + plan.height, H)
    c0, c1 = max(plan.x0, 0), min(plan.x0 + plan.width, W)
    return r0, max(r1, r0), c0, max(c1, c0)


def crop_for_plan(image, label, soft, plan: Plan, teacher=None):
    """What a loader worker hands over for ``--augment-on device``: the frame's part under the window
    (uint8, contiguous) and the plan in that part's coordinates. The window may leave the part
    exactly where it leaves the frame, so applying the moved plan to the part equals applying
    ``plan`` to the frame."""
    H, W = label.shape[:2]
    r0, r1, c0, c1 = window_part(plan, H, W)
    if r1 == r0 or c1 == c0:  # a window wholly outside the frame: one void pixel stands in for the frame
        r1, c1 = r0 + 1, c0 + 1
        part_img = np.full((1, 1, 3), PAD_VALUE, np.uint8)
        part_lab = np.full((1, 1), 255, np.uint8)
        part_soft = None if soft is None else np.zeros((1, 1, 4), np.uint8)
        part_teacher = None if teacher is None else np.zeros((1, 1, teacher.shape[-1]), np.uint8)
    else:
        part_img = np.ascontiguousarray(image[r0:r1, c0:c1])
        part_lab = np.ascontiguousarray(label[r0:r1, c0:c1])
        part_soft = None if soft is None else np.ascontiguousarray(soft[r0:r1, c0:c1])
        part_teacher = None if teacher is None else np.ascontiguousarray(teacher[r0:r1, c0:c1])
    moved = Plan(plan.x0 - c0, plan.y0 - r0, plan.width, plan.height, plan.flip, plan.jitter)
    return part_img, part_lab, part_soft, part_teacher, moved
