"""The tap-cost data path (data/window.py, TrainTransform.apply) against the earlier dense one it
replaced (TrainTransform.reference): the same window, flip and jitter from the same seed, the
image within 1e-3 on its 0-255 scale, the soft class mass within 1e-5, nearest labels identical;
on many ratios (integer and not), windows that leave the frame, both kernels, top-2 soft labels
and targets above the input resolution. The device path (--augment-on device) equals the worker
path on the CPU device."""

import numpy as np
import pytest
import torch

from edgeseg.data.base import DatasetInfo, Sample
from edgeseg.data.transforms import Augment, TrainTransform
from edgeseg.data.window import axis_taps, dense_mass, resize_window_image, taps

IMAGE_TOL, MASS_TOL = 1e-3, 1e-5


def scene(rng, H, W, classes=7):
    """Blocky labels with thin lines (boundaries everywhere), an image that follows them, some void."""
    label = rng.integers(0, classes, (H // 8 + 1, W // 8 + 1)).repeat(8, 0).repeat(8, 1)[:H, :W].astype(np.uint8)
    label[:, rng.integers(0, W, 3)] = classes - 1
    label[rng.random((H, W)) < 0.02] = 255
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    return image, label


def soft_of(rng, label, classes):
    second = rng.integers(0, classes, label.shape).astype(np.uint8)
    p1 = rng.integers(128, 256, label.shape).astype(np.uint8)
    return np.stack([np.where(label == 255, 0, label), p1, second, 255 - p1], -1).astype(np.uint8)


def assert_same(a, b):
    (img_a, tgt_a), (img_b, tgt_b) = a, b
    assert img_a.shape == img_b.shape and (img_a - img_b).abs().max() <= IMAGE_TOL
    assert tgt_a.keys() == tgt_b.keys()
    for k in tgt_a:
        if k == "label":
            assert torch.equal(tgt_a[k].long(), tgt_b[k].long())
        else:
            assert tgt_a[k].shape == tgt_b[k].shape and (tgt_a[k] - tgt_b[k]).abs().max() <= MASS_TOL, k


@pytest.mark.parametrize("kernel", ["area", "bilinear"])
@pytest.mark.parametrize("frame,res,target", [((97, 131), (40, 30), None), ((96, 128), (32, 24), None), ((90, 120), (30, 20), (60, 40)),
                                              ((61, 83), (40, 30), (80, 60)), ((48, 64), (64, 48), None)])
def test_tap_cost_path_equals_the_dense_reference(kernel, frame, res, target):
    rng = np.random.default_rng(hash((kernel, frame, res)) % 2**32)
    H, W = frame
    info = DatasetInfo("t", tuple("abcdefg"), ((0, 0, 0),) * 7)
    image, label = scene(rng, H, W)
    for mode in ("soft", "nearest"):
        tf = TrainTransform(res, info, mode, kernel, Augment(scale=(0.6, 1.7)), target_res=target)
        for k in range(12):  # zooms below 1 leave the frame; flips and jitter from the seed
            sample = Sample(image, label, "s")
            got = tf(sample, np.random.default_rng([k]))
            assert_same(got, tf.reference(sample, np.random.default_rng([k])))
            if mode == "soft":  # the sparse form the loader's workers hand over is the same mass
                img, sparse = tf(sample, np.random.default_rng([k]), sparse=True)
                assert_same(got, (img, dense_mass(sparse, 7)))
        soft = soft_of(rng, label, 7)
        sample = Sample(image, label, "s", soft)
        for k in range(4):
            assert_same(tf(sample, np.random.default_rng([k, 1])), tf.reference(sample, np.random.default_rng([k, 1])))


def test_taps_are_the_kernel_matrix():
    from edgeseg.data.resample import kernel_matrix

    for kernel in ("area", "bilinear"):
        for n_in, n_out in [(100, 30), (30, 100), (64, 16), (17, 17), (2730, 512), (5, 3)]:
            first, w = taps(n_in, n_out, kernel)
            dense = np.zeros((n_out, n_in + w.shape[1]))
            for o in range(n_out):
                dense[o, first[o] : first[o] + w.shape[1]] = w[o]
            np.testing.assert_allclose(dense[:, :n_in], kernel_matrix(n_in, n_out, kernel), atol=1e-12)
            assert not dense[:, n_in:].any()


def test_a_window_outside_the_frame_holds_padding_and_no_label_mass():
    ys = axis_taps(10, -30, 20, 5, "area")
    assert ys.leaves_frame and float(ys.inside.max()) == 0.0
    xs = axis_taps(10, 5, 10, 5, "area", flip=True)
    assert xs.leaves_frame and xs.inside.tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]  # mirrored: the outside comes first


def test_device_path_equals_worker_path_on_the_cpu_device():
    from edgeseg.data.window import dense_mass
    from edgeseg.trainer.data import TrainingSet, augment_batch, collate

    rng = np.random.default_rng(3)
    info = DatasetInfo("t", tuple("abcdefg"), ((0, 0, 0),) * 7)

    class Frames:
        def __init__(self, samples):
            self.samples, self.info, self.split = samples, info, "train"

        def __len__(self):
            return len(self.samples)

        def __getitem__(self, i):
            return self.samples[i]

    # frames of two sizes in one batch: the window parts are padded to the largest
    samples = [Sample(*scene(rng, 90, 120), f"a{i}") for i in range(3)] + [Sample(*scene(rng, 60, 80), "b")]
    tf = TrainTransform((40, 30), info, "soft", "area", Augment(scale=(0.7, 1.5)), target_res=(80, 60))
    worker = TrainingSet(Frames(samples), tf, seed=5)
    device = TrainingSet(Frames(samples), tf, seed=5, on_device=True)
    images, target = collate([worker[k] for k in range(4)])
    assert "sparse_cls" in target  # the worker hands soft targets over sparse; the trainer makes them dense
    target = dense_mass(target, 7)
    raw = collate([device[k] for k in range(4)])
    images_d, target_d = augment_batch(raw.pin_memory() if torch.cuda.is_available() else raw, tf, torch.device("cpu"))
    assert (images - images_d).abs().max() <= 1e-4
    for key in target:
        assert (target[key] - target_d[key]).abs().max() <= 1e-6
    # the worker's part of the work on this path is the window part, never more than the frame
    assert all(h <= s.label.shape[0] and w <= s.label.shape[1] for (h, w), s in zip(raw.sizes, samples))


def test_the_band_products_a_gpu_takes_equal_the_fused_gather():
    rng = np.random.default_rng(7)
    image, _ = scene(rng, 97, 131)
    frame = torch.from_numpy(image)
    for zoom_start, flip in [((-10, 20), False), ((5, 70), True)]:
        ys = axis_taps(97, zoom_start[0], 110, 40, "area")
        xs = axis_taps(131, zoom_start[1], 90, 52, "bilinear", flip)
        a = resize_window_image(frame, ys, xs, method="taps")
        b = resize_window_image(frame, ys, xs, method="bands")
        assert (a - b).abs().max() <= IMAGE_TOL


def test_inference_preprocessing_is_the_tap_cost_resize_and_equals_the_earlier_one():
    """Pre-processing (runtime/processing.py) resizes with the training path's own code; against the
    earlier float-then-dense resize: area within 1e-4 on the 0-255 scale (1e-6 on the normalised
    input). For bilinear the earlier path is PyTorch's antialiased resize, whose float32 weights are
    off kernel_matrix's by up to 1e-5 near a ratio of 1 (checked below): within 5e-3 (5e-5 normalised)."""
    from edgeseg.runtime.processing import Preprocess

    rng = np.random.default_rng(11)
    frames = [scene(rng, 360, 480)[0], scene(rng, 512, 1024)[0], scene(rng, 97, 131)[0]]
    for kernel in ("area", "bilinear"):
        for res in [(120, 90), (512, 256), (40, 30)]:
            pre = Preprocess(res, kernel)
            for frame in frames:
                a, b = pre.resize([frame]), pre.reference_resize([frame])
                tol = 1e-4 if kernel == "area" else 5e-3
                assert (a - b).abs().max() <= tol, (kernel, res, frame.shape)
                assert (pre.normalise(a) - pre.normalise(b)).abs().max() <= tol / 100
    import torch.nn.functional as F

    from edgeseg.data.resample import kernel_matrix

    eye = torch.eye(131).reshape(131, 1, 1, 131)
    torch_weights = F.interpolate(eye, size=(1, 120), mode="bilinear", align_corners=False, antialias=True).reshape(131, 120).T
    assert 1e-6 < (torch_weights.double() - torch.from_numpy(np.array(kernel_matrix(131, 120, "bilinear")))).abs().max() < 2e-5
