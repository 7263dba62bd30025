"""The embedded default data set: procedural street scenes with exact labels.

Every scene is drawn deterministically from ``(seed, split, index)`` at
1024x512: sky, buildings with windows, road with lane marks, sidewalks, trees,
cars, pedestrians, thin poles (1-4 px) and small signs (a few px), and
sometimes an ego-vehicle hood that is void. Colours overlap between classes
(grey road, pavement, building and pole) so that shape and context matter.
Nothing is downloaded or read from disk.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edgeseg.data.base import IGNORE_INDEX, DatasetInfo, Sample, SegDataset
from edgeseg.errors import DataError

SYNTHETIC_CLASSES = ("sky", "building", "road", "sidewalk", "vegetation", "car", "pedestrian", "pole", "sign")
SYNTHETIC_PALETTE = (
    (70, 130, 180), (70, 70, 70), (128, 64, 128), (244, 35, 232), (107, 142, 35),
    (0, 0, 142), (220, 20, 60), (153, 153, 153), (220, 220, 0),
)  # fmt: skip
SKY, BUILDING, ROAD, SIDEWALK, VEGETATION, CAR, PEDESTRIAN, POLE, SIGN = range(9)
INFO = DatasetInfo("synthetic", SYNTHETIC_CLASSES, SYNTHETIC_PALETTE, IGNORE_INDEX)

WIDTH, HEIGHT = 1024, 512
SPLIT_SIZES = {"train": 160, "val": 32, "test": 32}
_SPLIT_CODES = {"train": 1, "val": 2, "test": 3}


class Canvas:
    """An image and its label, painted together so that the label is exact."""

    def __init__(self, rng: np.random.Generator, width: int = WIDTH, height: int = HEIGHT):
        self.rng = rng
        self.w, self.h = width, height
        self.image = np.zeros((height, width, 3), dtype=np.float32)
        self.label = np.zeros((height, width), dtype=np.uint8)
        # One shared noise field gives every surface a texture at no per-shape cost.
        self.noise = rng.standard_normal((height, width), dtype=np.float32)
        self.yy = np.arange(height, dtype=np.float32)[:, None]
        self.xx = np.arange(width, dtype=np.float32)[None, :]

    def _box(self, x0, y0, x1, y1):
        x0, y0 = int(round(x0)), int(round(y0))
        x1, y1 = max(int(round(x1)), x0 + 1), max(int(round(y1)), y0 + 1)  # at least one pixel
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.w), min(y1, self.h)
        if x1 <= x0 or y1 <= y0:
            return None
        return slice(y0, y1), slice(x0, x1)

    def paint(self, box, mask, cls: int, colour, texture: float = 6.0) -> None:
        ys, xs = box
        colour = np.asarray(colour, dtype=np.float32)
        self.image[ys, xs][mask] = colour + self.noise[ys, xs][mask][:, None] * texture
        self.label[ys, xs][mask] = cls

    def rect(self, x0, y0, x1, y1, cls, colour, texture=6.0, where=None):
        box = self._box(x0, y0, x1, y1)
        if box is None:
            return None
        mask = np.ones((box[0].stop - box[0].start, box[1].stop - box[1].start), dtype=bool)
        if where is not None:
            mask &= where(box)
        self.paint(box, mask, cls, colour, texture)
        return box

    def ellipse(self, cx, cy, rx, ry, cls, colour, texture=6.0, wobble=0.0):
        box = self._box(cx - rx - 1, cy - ry - 1, cx + rx + 1, cy + ry + 1)
        if box is None:
            return
        dy = (self.yy[box[0]] - cy) / max(ry, 0.5)
        dx = (self.xx[:, box[1]] - cx) / max(rx, 0.5)
        r = dx * dx + dy * dy
        if wobble:
            r = r + wobble * self.noise[box]
        self.paint(box, r <= 1.0, cls, colour, texture)

    def polygon(self, pts: Sequence[tuple[float, float]], cls, colour, texture=6.0):
        pts = np.asarray(pts, dtype=np.float32)
        box = self._box(pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max() + 1, pts[:, 1].max() + 1)
        if box is None:
            return
        y = self.yy[box[0]] + 0.5
        x = self.xx[:, box[1]] + 0.5
        inside = np.ones((len(y), x.shape[1]), dtype=bool)
        sign = None
        for (ax, ay), (bx, by) in zip(pts, np.roll(pts, -1, axis=0)):
            cross = (bx - ax) * (y - ay) - (by - ay) * (x - ax)
            if sign is None:
                area = np.sum(pts[:, 0] * np.roll(pts[:, 1], -1) - np.roll(pts[:, 0], -1) * pts[:, 1])
                sign = 1.0 if area > 0 else -1.0
            inside &= sign * cross >= 0
        self.paint(box, inside, cls, colour, texture)


def _jitter(rng, colour, amount=18.0):
    return np.clip(np.asarray(colour, dtype=np.float32) + rng.normal(0, amount, 3), 0, 255)


def render_scene(seed: int, width: int = WIDTH, height: int = HEIGHT) -> tuple[np.ndarray, np.ndarray]:
    """One street scene: (uint8 HxWx3 image, uint8 HxW label)."""
    rng = np.random.default_rng(seed)
    cv = Canvas(rng, width, height)
    W, H = width, height
    horizon = rng.uniform(0.36, 0.5) * H
    vx = rng.uniform(0.35, 0.65) * W
    road_slope = rng.uniform(1.2, 2.2)  # half road width per pixel below the horizon
    side_slope = road_slope * rng.uniform(1.6, 2.4)  # outer edge of the sidewalk
    grey = rng.uniform(0.8, 1.2)

    # Sky: gradient with a random mood (clear, overcast, evening).
    mood = rng.integers(3)
    top, low = [((60, 110, 190), (170, 200, 235)), ((120, 125, 135), (190, 190, 195)), ((70, 80, 150), (235, 170, 120))][mood]
    t = np.clip(cv.yy / max(horizon, 1.0), 0, 1)[..., None]
    cv.image[:] = np.asarray(top, np.float32) * (1 - t) + np.asarray(low, np.float32) * t
    cv.image += cv.noise[..., None] * 3.0
    cv.label[:] = SKY

    def ground_line(x):
        return horizon + np.abs(x - vx) / side_slope

    # Buildings: facades down to the sidewalk's outer edge, with window grids.
    x = -rng.uniform(0, 80)
    while x < W:
        bw = rng.uniform(50, 260)
        top_y = rng.uniform(0.02, 0.33) * H
        base = _jitter(rng, [(150, 140, 125), (120, 120, 125), (150, 80, 60), (200, 195, 185), (95, 95, 100)][rng.integers(5)], 12)
        x0, x1 = x, x + bw
        cv.rect(x0, top_y, x1, H, BUILDING, base * grey, 5.0, where=lambda b: cv.yy[b[0]] < ground_line(cv.xx[:, b[1]]))
        if rng.random() < 0.8:
            px, py = rng.uniform(14, 30), rng.uniform(18, 34)
            ww, wh = px * rng.uniform(0.4, 0.7), py * rng.uniform(0.4, 0.6)
            win = _jitter(rng, (60, 70, 85), 15)

            def windows(b, x0=x0, top_y=top_y, px=px, py=py, ww=ww, wh=wh):
                yy, xx = cv.yy[b[0]], cv.xx[:, b[1]]
                return (((xx - x0) % px) < ww) & (((yy - top_y) % py) < wh) & (yy < ground_line(xx) - 8)

            cv.rect(x0 + 4, top_y + 6, x1 - 4, H, BUILDING, win, 4.0, where=windows)
        x = x1 + (rng.uniform(5, 60) if rng.random() < 0.25 else 0)

    # Ground: sidewalk wedge, then the road inside it, with lane marks.
    far = H - horizon
    side_col = _jitter(rng, (150, 145, 140), 14) * grey
    road_col = _jitter(rng, (95, 95, 100), 10) * grey
    cv.polygon([(vx, horizon), (vx + side_slope * far * 1.5, H + far * 0.5), (vx - side_slope * far * 1.5, H + far * 0.5)], SIDEWALK, side_col, 7.0)
    cv.polygon([(vx, horizon), (vx + road_slope * far * 1.5, H + far * 0.5), (vx - road_slope * far * 1.5, H + far * 0.5)], ROAD, road_col, 5.0)
    dash = rng.uniform(0.08, 0.16)

    def lane(b):
        yy, xx = cv.yy[b[0]], cv.xx[:, b[1]]
        depth = np.log(np.maximum(yy - horizon, 1.0))
        return (np.abs(xx - vx) < 0.04 * (yy - horizon) + 0.5) & ((depth / dash) % 2 < 1)

    cv.rect(0, horizon + 4, W, H, ROAD, (215, 215, 210), 4.0, where=lane)

    # Objects, painted far to near so that nearer ones occlude.
    objects = []
    for _ in range(rng.integers(3, 8)):  # trees on the sidewalk
        objects.append(("tree", rng.uniform(horizon + 5, H * 0.95), rng.choice([-1, 1])))
    for _ in range(rng.integers(3, 9)):  # poles along the kerb, some with signs
        objects.append(("pole", rng.uniform(horizon + 4, H * 1.05), rng.choice([-1, 1])))
    for _ in range(rng.integers(2, 8)):
        objects.append(("pedestrian", rng.uniform(horizon + 6, H * 1.02), rng.choice([-1, 1])))
    for _ in range(rng.integers(1, 7)):
        objects.append(("car", rng.uniform(horizon + 8, H * 1.08), rng.choice([-1, 1])))
    objects.sort(key=lambda o: o[1])
    for kind, foot, side in objects:
        depth = foot - horizon  # pixels below the horizon: proportional to size
        if kind == "car":
            lane_x = vx + side * road_slope * depth * rng.uniform(0.2, 0.65)
            cw = road_slope * depth * rng.uniform(0.55, 0.8)
            ch = cw * rng.uniform(0.45, 0.6)
            body = _jitter(rng, [(180, 20, 20), (30, 30, 35), (220, 220, 225), (40, 60, 140), (120, 120, 125), (200, 170, 40)][rng.integers(6)], 20)
            cv.rect(lane_x - cw / 2, foot - ch * 0.62, lane_x + cw / 2, foot - ch * 0.12, CAR, body, 4.0)
            cv.polygon(
                [(lane_x - cw * 0.35, foot - ch * 0.6), (lane_x - cw * 0.25, foot - ch), (lane_x + cw * 0.25, foot - ch), (lane_x + cw * 0.35, foot - ch * 0.6)],
                CAR, body * 0.9, 4.0,
            )
            cv.rect(lane_x - cw * 0.24, foot - ch * 0.93, lane_x + cw * 0.24, foot - ch * 0.66, CAR, (50, 60, 75), 3.0)
            for wx in (-0.32, 0.32):
                cv.rect(lane_x + wx * cw - cw * 0.1, foot - ch * 0.2, lane_x + wx * cw + cw * 0.1, foot, CAR, (25, 25, 25), 3.0)
        elif kind == "pedestrian":
            px = vx + side * (road_slope + (side_slope - road_slope) * rng.uniform(0.15, 0.9)) * depth
            ph = depth * rng.uniform(0.7, 1.15)
            pw = ph * rng.uniform(0.22, 0.3)
            cloth = _jitter(rng, (rng.uniform(20, 220), rng.uniform(20, 200), rng.uniform(20, 200)), 10)
            cv.rect(px - pw * 0.3, foot - ph * 0.45, px - pw * 0.05, foot, PEDESTRIAN, _jitter(rng, (40, 40, 60), 15), 4.0)
            cv.rect(px + pw * 0.05, foot - ph * 0.45, px + pw * 0.3, foot, PEDESTRIAN, _jitter(rng, (40, 40, 60), 15), 4.0)
            cv.ellipse(px, foot - ph * 0.63, pw * 0.5, ph * 0.22, PEDESTRIAN, cloth, 5.0)
            cv.ellipse(px, foot - ph * 0.9, pw * 0.22, ph * 0.08, PEDESTRIAN, (200, 160, 130), 4.0)
        elif kind == "pole":
            px = vx + side * (road_slope * 1.05 + 0.1) * depth
            height = depth * rng.uniform(2.0, 3.2)
            width = float(np.clip(depth * rng.uniform(0.012, 0.03), 1.0, 4.0))
            cv.rect(px - width / 2, foot - height, px + width / 2, foot, POLE, _jitter(rng, (110, 110, 115), 12) * grey, 4.0)
            if rng.random() < 0.8:
                size = float(np.clip(depth * rng.uniform(0.1, 0.22), 4.0, 32.0))
                sy = foot - height + size * rng.uniform(0.6, 2.0)
                colour = [(200, 30, 30), (30, 60, 180), (230, 200, 30), (235, 235, 235)][rng.integers(4)]
                if rng.random() < 0.5:
                    cv.rect(px - size / 2, sy - size / 2, px + size / 2, sy + size / 2, SIGN, colour, 5.0)
                else:
                    cv.ellipse(px, sy, size / 2, size / 2, SIGN, colour, 5.0)
        else:  # tree: trunk and a ragged canopy
            tx = vx + side * side_slope * depth * rng.uniform(0.75, 1.05)
            th = depth * rng.uniform(2.0, 3.5)
            trunk = max(depth * 0.04, 1.0)
            green = _jitter(rng, (60, 110, 40), 18)
            cv.rect(tx - trunk / 2, foot - th * 0.6, tx + trunk / 2, foot, VEGETATION, (90, 65, 45), 5.0)
            cv.ellipse(tx, foot - th * 0.75, th * rng.uniform(0.2, 0.35), th * 0.3, VEGETATION, green, 14.0, wobble=0.15)

    if rng.random() < 0.3:  # ego-vehicle hood: void
        cv.ellipse(W / 2, H * 1.25, W * 0.7, H * 0.32, IGNORE_INDEX, (30, 30, 35), 3.0)

    # Optics: light blur and sensor noise on the image only; labels stay exact.
    img = cv.image
    blur = img.copy()
    blur[1:] += img[:-1]
    blur[:, 1:] += blur[:, :-1].copy()
    blur[0] += img[0]
    blur[:, 0] += blur[:, 0]
    blur *= 0.25 * rng.uniform(0.8, 1.15)
    blur += np.roll(cv.noise, 7, axis=1)[..., None] * 2.0
    return np.clip(blur, 0, 255).astype(np.uint8), cv.label


class Synthetic(SegDataset):
    """Procedural street scenes; ``len`` is fixed per split, samples are drawn on demand."""

    def __init__(self, split: str = "train", seed: int = 0, size: int | None = None):
        if split not in SPLIT_SIZES:
            raise DataError(f"synthetic has splits {', '.join(SPLIT_SIZES)}; got '{split}'")
        self.info = INFO
        self.split = split
        self.seed = seed
        self.indices = list(range(SPLIT_SIZES[split] if size is None else size))
        self.skipped = 0

    def __len__(self) -> int:
        return len(self.indices)

    def sample_name(self, i: int) -> str:
        return f"{self.split}_{self.indices[i]:05d}"

    def load(self, i: int) -> Sample:
        index = self.indices[i]
        image, label = render_scene(np.random.SeedSequence([self.seed, _SPLIT_CODES[self.split], index]).generate_state(1)[0])
        return Sample(image, label, self.sample_name(i))

    def _keep(self, indices) -> None:
        self.indices = [self.indices[i] for i in indices]


def build(root, split: str, skip_bad: bool = False) -> Synthetic:
    return Synthetic(split)
