"""Post-processing at the cost of the boundary (runtime/processing.scores_to_labels) against the
earlier full interpolation it replaces (scores_to_labels_reference): the same labels except where
the interpolated scores tie exactly, on random and on a trained model's scores, at integer and
non-integer ratios, and on the outputs of --upscale models."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgeseg.runtime.processing import scores_to_labels, scores_to_labels_reference


def assert_same_except_ties(scores, size):
    new, ref = scores_to_labels(scores, size), scores_to_labels_reference(scores, size)
    assert new.shape == ref.shape
    differ = new.long() != ref
    if bool(differ.any()):  # allowed only where the interpolated scores tie exactly between the two labels
        up = F.interpolate(scores.float(), size=size, mode="bilinear", align_corners=False)
        n, y, x = torch.nonzero(differ, as_tuple=True)
        a = up[n, new.long()[n, y, x], y, x]
        b = up[n, ref[n, y, x], y, x]
        assert torch.equal(a, b), f"{int(differ.sum())} pixels differ without a tie"
    return int(differ.sum())


@pytest.mark.parametrize("low,size", [((9, 16), (36, 64)), ((30, 40), (360, 480)), ((37, 53), (100, 131)), ((90, 120), (128, 150)),
                                      ((45, 60), (46, 61)), ((20, 30), (20, 30)), ((1, 5), (3, 17)),
                                      ((40, 50), (20, 30)), ((40, 50), (80, 30))])  # down-sampling, one axis each way
def test_random_scores(low, size):
    g = torch.Generator().manual_seed(hash((low, size)) % 2**31)
    h, w = low
    blocky = F.interpolate(torch.randn(2, 7, max(h // 6, 1), max(w // 6, 1), generator=g), size=low, mode="nearest")
    for scores in (torch.randn(2, 7, h, w, generator=g), blocky * 3 + 0.2 * torch.randn(2, 7, h, w, generator=g),
                   torch.randint(0, 3, (2, 7, h, w), generator=g).float()):  # integer scores: many exact ties
        assert_same_except_ties(scores, size)


def test_a_trained_models_scores_and_its_upscaled_outputs(tiny_checkpoint, shared_folder):
    from edgeseg import runtime
    from edgeseg.data import build_dataset
    from edgeseg.runtime.processing import Preprocess

    runner = runtime.load(tiny_checkpoint, device="cpu")
    ds = build_dataset("folder", shared_folder, "val")
    pre = Preprocess.from_meta(runner.meta)
    with runner:
        for i in range(len(ds)):
            logits = torch.from_numpy(runner.infer(pre([ds[i].image]))["logits"])
            for size in [(36, 48), (72, 96), (101, 131), (36 * 8, 48 * 8)]:
                assert assert_same_except_ties(logits, size) == 0


def test_labels_fit_uint8_and_many_classes_keep_int64():
    s = torch.randn(1, 300, 4, 5)
    assert scores_to_labels(s, (8, 10)).dtype == torch.int64 and scores_to_labels(s[:, :9], (8, 10)).dtype == torch.uint8
    np.testing.assert_array_equal(scores_to_labels(s, (8, 10)).numpy(), scores_to_labels_reference(s, (8, 10)).numpy())
