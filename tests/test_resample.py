import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgeseg.data import downsample_labels, kernel_matrix, resize
from edgeseg.errors import ConfigError, DataError

SIZES = [
    ((32, 48), (8, 12)),  # integer ratio 4
    ((30, 40), (7, 13)),  # non-integer, different per axis
    ((37, 53), (10, 9)),  # odd sizes, non-square
    ((16, 16), (16, 16)),  # identity
]


def brute_area(label, h, w, C, ignore):
    """Explicit 2-D fractional-overlap weights, pixel by pixel; void in channel C."""
    H, W = label.shape
    sy, sx = H / h, W / w
    out = np.zeros((C + 1, h, w))
    for i in range(h):
        for j in range(w):
            y0, y1, x0, x1 = i * sy, (i + 1) * sy, j * sx, (j + 1) * sx
            for a in range(int(np.floor(y0)), min(int(np.ceil(y1)), H)):
                oy = min(a + 1, y1) - max(a, y0)
                for b in range(int(np.floor(x0)), min(int(np.ceil(x1)), W)):
                    ox = min(b + 1, x1) - max(b, x0)
                    if oy > 0 and ox > 0:
                        c = label[a, b]
                        out[C if c == ignore else c, i, j] += oy * ox / (sy * sx)
    return out


def random_label(H, W, C=5, seed=0, void=255):
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, C, (H, W)).astype(np.uint8)
    lab[rng.random((H, W)) < 0.15] = void
    return lab


@pytest.mark.parametrize("src,dst", SIZES)
def test_soft_area_matches_brute_force(src, dst):
    lab = random_label(*src)
    mass, valid = downsample_labels(lab, dst, num_classes=5)
    ref = brute_area(lab, *dst, 5, 255)
    np.testing.assert_allclose(mass, ref[:5], atol=1e-6)
    np.testing.assert_allclose(valid, 1 - ref[5], atol=1e-6)
    np.testing.assert_allclose(mass.sum(0), valid, atol=1e-6)


@pytest.mark.parametrize("kernel", ["area", "bilinear"])
@pytest.mark.parametrize("src,dst", SIZES + [((9, 11), (20, 17))])
def test_label_mass_is_the_image_kernel_applied_to_the_one_hot(kernel, src, dst):
    """The label's class mass equals the image resize (same kernel) of its one-hot planes."""
    lab = random_label(*src, seed=1)
    onehot = torch.stack([torch.from_numpy(lab == c) for c in range(5)] + [torch.from_numpy(lab == 255)]).float()
    ref = resize(onehot, dst, kernel)
    if kernel == "bilinear":  # and the image path is PyTorch's antialiased bilinear
        torch.testing.assert_close(ref, F.interpolate(onehot[None], size=dst, mode="bilinear", antialias=True)[0], atol=1e-6, rtol=0)
    mass, valid = downsample_labels(torch.from_numpy(lab), dst, 5, kernel=kernel)
    torch.testing.assert_close(mass, ref[:5], atol=1e-6, rtol=0)
    torch.testing.assert_close(valid, 1 - ref[5], atol=1e-6, rtol=0)


def test_all_void_pixel_has_zero_valid_mass_and_types_follow_input():
    lab = np.full((8, 8), 255, dtype=np.uint8)
    lab[:, 4:] = 2
    mass, valid = downsample_labels(lab, (2, 2), num_classes=3)
    assert isinstance(mass, np.ndarray) and mass.dtype == np.float32 and mass.shape == (3, 2, 2)
    np.testing.assert_array_equal(valid, [[0, 1], [0, 1]])
    np.testing.assert_array_equal(mass[2], [[0, 1], [0, 1]])
    tmass, tvalid = downsample_labels(torch.from_numpy(lab), (2, 2), num_classes=3)
    assert isinstance(tmass, torch.Tensor)
    np.testing.assert_array_equal(tmass.numpy(), mass)


def test_thin_structure_survives_soft_but_aliases_under_nearest():
    lab = np.zeros((64, 64), dtype=np.uint8)
    lab[:, 17] = 1  # a one-pixel pole
    mass, _ = downsample_labels(lab, (16, 16), num_classes=2)
    np.testing.assert_allclose(mass[1, :, 4], 0.25, atol=1e-6)
    assert mass[1].sum() == pytest.approx(16 * 0.25)
    near, _ = downsample_labels(lab, (16, 16), num_classes=2, mode="nearest")
    assert near[1].sum() == 0  # centre sampling misses column 17


def test_comparison_modes_match_torch_on_one_hot():
    lab = random_label(30, 44, seed=3)
    onehot = torch.stack([torch.from_numpy(lab == c) for c in range(5)]).float()[None]
    mass, _ = downsample_labels(torch.from_numpy(lab), (10, 13), 5, mode="onehot-bilinear")
    # PyTorch computes the bilinear fractions in float32, hence 1e-5
    torch.testing.assert_close(mass, F.interpolate(onehot, size=(10, 13), mode="bilinear", align_corners=False)[0], atol=1e-5, rtol=0)
    near, valid = downsample_labels(torch.from_numpy(lab), (10, 13), 5, mode="nearest")
    torch.testing.assert_close(near, F.interpolate(onehot, size=(10, 13), mode="nearest-exact")[0])
    assert set(valid.unique().tolist()) <= {0.0, 1.0}


def test_kernel_matrices_rows_sum_to_one_and_area_is_exact():
    for kernel in ("area", "bilinear", "bilinear-noaa", "nearest"):
        for n_in, n_out in ((100, 7), (7, 100), (33, 33), (1024, 300)):
            np.testing.assert_allclose(kernel_matrix(n_in, n_out, kernel).sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(kernel_matrix(5, 2, "area"), [[0.4, 0.4, 0.2, 0, 0], [0, 0, 0.2, 0.4, 0.4]])


def test_image_area_resize_matches_brute_force_at_non_integer_ratio():
    rng = np.random.default_rng(0)
    img = torch.from_numpy(rng.random((3, 30, 40)).astype(np.float32))
    out = resize(img, (7, 13), "area")
    # brute force: the per-pixel overlap weights applied to each channel
    H, W = 30, 40
    ref = np.zeros((3, 7, 13))
    for i in range(7):
        for j in range(13):
            sy, sx = H / 7, W / 13
            for a in range(H):
                oy = max(0.0, min(a + 1, (i + 1) * sy) - max(a, i * sy))
                for b in range(W):
                    ox = max(0.0, min(b + 1, (j + 1) * sx) - max(b, j * sx))
                    ref[:, i, j] += img[:, a, b].numpy() * oy * ox / (sy * sx)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)


def test_bad_values_and_options_are_rejected():
    lab = np.array([[0, 1], [7, 255]], dtype=np.uint8)
    with pytest.raises(DataError, match=r"label values \[7\]"):
        downsample_labels(lab, (1, 1), num_classes=3)
    with pytest.raises(ConfigError, match="unknown label mode"):
        downsample_labels(lab, (1, 1), num_classes=8, mode="bicubic")
    with pytest.raises(ConfigError, match="unknown kernel"):
        downsample_labels(lab, (1, 1), num_classes=8, kernel="lanczos")
    with pytest.raises(DataError, match="integer"):
        downsample_labels(lab.astype(np.float32), (1, 1), num_classes=8)
    # a class index equal to the ignore index of another data set is fine when declared
    mass, valid = downsample_labels(np.array([[0, 11]], dtype=np.uint8), (1, 1), num_classes=11, ignore_index=11)
    assert valid[0, 0] == pytest.approx(0.5)


def test_ignore_index_inside_the_class_range_is_still_void():
    lab = np.array([[0, 0], [1, 2]], dtype=np.uint8)
    mass, valid = downsample_labels(lab, (1, 1), num_classes=3, ignore_index=0)
    np.testing.assert_allclose(mass[:, 0, 0], [0, 0.25, 0.25])
    assert valid[0, 0] == pytest.approx(0.5)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8])
def test_the_callers_labels_are_never_modified(dtype):
    lab = np.array([[0, 1], [255, 2]], dtype=dtype)
    before = lab.copy()
    downsample_labels(lab, (1, 1), num_classes=3)
    downsample_labels(torch.from_numpy(lab), (1, 1), num_classes=3, mode="nearest")
    np.testing.assert_array_equal(lab, before)
