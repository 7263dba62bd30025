"""Boundary IoU (Cheng et al., CVPR 2021) against a plain reference of the paper's definition: the
band is the mask less its erosion, the erosion being d passes of a 3x3 erosion over the mask padded
by one background pixel (the paper's code pads by one zero pixel and erodes with OpenCV, whose
border takes no part in an erosion), d = max(1, round(ratio x diagonal)); boundary IoU is the
intersection over the union of the two masks' bands."""
import numpy as np
import pytest
import torch

from edgeseg.metrics import BoundaryIoU, ConfusionMatrix, boundary_band


def erode3x3_passes(mask: np.ndarray, passes: int) -> np.ndarray:
    """``passes`` 3x3 erosions, one at a time; outside the array nothing erodes."""
    m = mask.astype(bool)
    H, W = m.shape
    for _ in range(passes):
        p = np.pad(m, 1, constant_values=True)
        out = np.ones_like(m)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                out &= p[dy : dy + H, dx : dx + W]
        m = out
    return m


def reference_band(mask: np.ndarray, ratio: float) -> np.ndarray:
    H, W = mask.shape
    d = max(1, int(round(ratio * np.sqrt(H * H + W * W))))
    padded = np.pad(mask.astype(bool), 1, constant_values=False)
    eroded = erode3x3_passes(padded, d)[1 : H + 1, 1 : W + 1]
    return mask.astype(bool) & ~eroded


def blobs(rng, H, W, n=4) -> np.ndarray:
    """A mask of a few rectangles and discs, some touching the image's border."""
    yy, xx = np.mgrid[:H, :W]
    m = np.zeros((H, W), bool)
    for _ in range(n):
        if rng.random() < 0.5:
            y0, x0 = rng.integers(-3, H), rng.integers(-3, W)
            m[max(y0, 0) : y0 + rng.integers(1, H // 2 + 2), max(x0, 0) : x0 + rng.integers(1, W // 2 + 2)] = True
        else:
            cy, cx, r = rng.integers(0, H), rng.integers(0, W), rng.integers(1, max(H, W) // 3 + 2)
            m |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    return m


@pytest.mark.parametrize("shape,ratio", [((36, 48), 0.02), ((36, 48), 0.1), ((61, 23), 0.05), ((90, 120), 0.02), ((7, 5), 0.3)])
def test_the_band_is_the_papers_mask_less_its_erosion(shape, ratio):
    rng = np.random.default_rng(sum(shape))
    masks = [blobs(rng, *shape) for _ in range(6)] + [np.ones(shape, bool), np.zeros(shape, bool)]
    got = boundary_band(torch.from_numpy(np.stack(masks)), ratio).numpy()
    for g, m in zip(got, masks):
        np.testing.assert_array_equal(g, reference_band(m, ratio))
    # a full mask's band is the frame of width d at the image's border (outside counts as background)
    H, W = shape
    d = max(1, int(round(ratio * np.hypot(H, W))))
    frame = np.ones(shape, bool)
    frame[d : H - d, d : W - d] = False
    np.testing.assert_array_equal(got[-2], frame)
    assert not got[-1].any()


def test_boundary_iou_accumulates_each_class_over_images_leaving_void_out():
    rng = np.random.default_rng(7)
    n, ratio, void = 4, 0.05, 255
    inter, union = np.zeros(n, np.int64), np.zeros(n, np.int64)
    metric = BoundaryIoU(n, ratio)
    for _ in range(3):
        target = rng.integers(0, n, (40, 56))
        target[blobs(rng, 40, 56, 2)] = 1
        target[:5, :9] = void
        pred = np.where(rng.random((40, 56)) < 0.8, target, rng.integers(0, n, (40, 56)))
        pred[pred == void] = 0
        metric.update(torch.from_numpy(target), torch.from_numpy(pred))
        valid = target != void
        for c in range(n):
            gt, pr = reference_band(target == c, ratio) & valid, reference_band(pred == c, ratio) & valid
            inter[c] += (gt & pr).sum()
            union[c] += (gt | pr).sum()
    out = metric.summary([f"c{c}" for c in range(n)])
    expect = inter / union * 100
    assert [out["per_class"][f"c{c}"] for c in range(n)] == pytest.approx(expect.tolist(), abs=1e-4)
    assert out["mean"] == pytest.approx(expect.mean(), abs=1e-4) and out["band_ratio"] == ratio


def test_boundary_iou_of_a_perfect_prediction_is_100_and_an_absent_class_is_none():
    target = np.zeros((30, 40), np.int64)
    target[8:20, 10:30] = 2
    target[0, 0] = 255
    metric = BoundaryIoU(3)
    metric.update(torch.from_numpy(target), torch.from_numpy(np.where(target == 255, 1, target)))
    out = metric.summary(["a", "b", "c"])
    assert out["per_class"] == {"a": 100.0, "b": None, "c": 100.0} and out["mean"] == 100.0
    # a prediction one pixel off along a boundary loses boundary IoU but keeps nearly all of the IoU
    shifted = np.roll(np.where(target == 255, 0, target), 1, axis=1)
    b, cm = BoundaryIoU(3), ConfusionMatrix(3)
    b.update(torch.from_numpy(target), torch.from_numpy(shifted))
    cm.update(torch.from_numpy(target), torch.from_numpy(shifted))
    assert b.summary(["a", "b", "c"])["per_class"]["c"] < cm.summary(["a", "b", "c"])["per_class"]["c"] - 5
