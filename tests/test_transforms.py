import numpy as np
import torch

from edgeseg.data.synthetic import Synthetic
from edgeseg.data.transforms import NO_AUGMENT, Augment, TrainTransform, crop_window
from edgeseg.runtime.processing import Preprocess


def test_without_augmentation_training_input_equals_inference_preprocessing():
    ds = Synthetic("val")
    s = ds[0]
    for kernel in ("area", "bilinear"):
        tf = TrainTransform((160, 96), ds.info, "soft", kernel, NO_AUGMENT)
        img, target = tf(s, np.random.default_rng(0))
        ref = Preprocess((160, 96), kernel).resize([s.image])[0]
        torch.testing.assert_close(img, ref)
        assert target["mass"].shape == (9, 96, 160) and target["valid"].shape == (96, 160)
        torch.testing.assert_close(target["mass"].sum(0), target["valid"], atol=1e-5, rtol=0)


def test_augmented_sample_shapes_and_nearest_targets():
    ds = Synthetic("train")
    tf = TrainTransform((128, 64), ds.info, "nearest", "area", Augment(scale=(0.5, 2.0)))
    rng = np.random.default_rng(1)
    for i in range(4):
        img, target = tf(ds[i], rng)
        assert img.shape == (3, 64, 128) and 0 <= float(img.min()) and float(img.max()) <= 255
        lab = target["label"]
        assert lab.shape == (64, 128) and lab.dtype == torch.int64
        assert set(lab.unique().tolist()) <= set(range(9)) | {255}


def test_crop_window_pads_outside_the_frame_with_void():
    image = np.full((4, 4, 3), 9, np.uint8)
    label = np.ones((4, 4), np.uint8)
    img, lab = crop_window(image, label, -2, -1, 6, 6, 255)
    assert img.shape == (6, 6, 3) and lab.shape == (6, 6)
    assert (lab[0] == 255).all() and (lab[:, :2] == 255).all() and (lab[1:5, 2:6] == 1).all()
