"""Post-processing at the cost of the boundary (runtime/processing.scores_to_labels) against the
earlier full interpolation it replaces (scores_to_labels_reference): the same labels on every
pixel, on random, blocky, integer-valued (tied) and nearly tied scores, on a trained model's
scores, at integer and non-integer ratios, and on the outputs of --upscale models."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgeseg.runtime.processing import NEAR, scores_to_labels, scores_to_labels_reference


def assert_same_except_ties(scores, size):
    """Today's labels against the reference: a pixel may differ only where the reference's two best
    interpolated scores tie to float32 precision (within NEAR of their magnitude), where the order
    of the float32 operations decides. Returns how many differ."""
    new, ref = scores_to_labels(scores, size), scores_to_labels_reference(scores, size)
    assert new.shape == ref.shape
    differ = new.long() != ref
    if bool(differ.any()):
        up = F.interpolate(scores.float(), size=size, mode="bilinear", align_corners=False)
        n, y, x = torch.nonzero(differ, as_tuple=True)
        a, b = up[n, new.long()[n, y, x], y, x], up[n, ref[n, y, x], y, x]
        scale = up[n, :, y, x].abs().amax(1)
        assert bool(((a - b).abs() <= NEAR * scale).all()), f"{int(differ.sum())} pixels differ, not all at float32 ties"
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


def test_sixteen_bit_colour_frames_are_reduced_by_the_stated_rule_and_said_once(tmp_path, caplog):
    """A 48-bit PNG decodes to its top bytes (the decoder's rule, value >> 8), as 16-bit grey does,
    and the reduction is said once per process, naming the first such file."""
    import struct
    import zlib

    from edgeseg.data import base

    rgb = np.random.default_rng(0).integers(0, 65536, (5, 7, 3), dtype=np.uint16)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb)
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 7, 5, 16, 2, 0, 0, 0))
                                      + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    base._REDUCED.clear()
    with caplog.at_level("WARNING"):
        for name in ("a.png", "b.png"):
            np.testing.assert_array_equal(base.read_image(tmp_path / name), (rgb >> 8).astype(np.uint8))
    said = [r.getMessage() for r in caplog.records if "16-bit" in r.getMessage()]
    assert len(said) == 1 and "a.png" in said[0] and "value >> 8" in said[0]


def test_label_graph_output_larger_than_the_frame_is_reduced_and_said(caplog):
    from edgeseg.runtime import processing

    processing._LABEL_SIZES.clear()
    labels = np.arange(8 * 16, dtype=np.uint8).reshape(1, 8, 16) % 5
    with caplog.at_level("WARNING"):
        a = processing.native_labels({"labels": labels}, [(4, 8)])[0]
        processing.native_labels({"labels": labels}, [(2, 4)])
    assert a.shape == (4, 8) and torch.equal(a, torch.from_numpy(labels[0, 1::2, 1::2].astype(np.int64)))
    said = [r.getMessage() for r in caplog.records if "label output" in r.getMessage()]
    assert len(said) == 1 and "16x8, the frame 8x4" in said[0]


def test_nearly_tied_and_non_finite_scores():
    """Scores one float32 step apart across a label boundary, and NaN and inf scores."""
    g = torch.Generator().manual_seed(5)
    base = torch.randn(1, 4, 12, 16, generator=g)
    base[0, 0] = base[0].max(0).values + 1  # class 0 wins everywhere by a clear margin ...
    up, down = torch.tensor(float("inf")), torch.tensor(-float("inf"))
    base[0, 1, 4:7, 5:7] = torch.nextafter(base[0, 0, 4:7, 5:7], up)  # ... except a patch where class 1 wins by one step
    base[0, 1, 4:7, 7:9] = torch.nextafter(base[0, 0, 4:7, 7:9], down)  # beside one where it loses by one
    for size in [(48, 64), (37, 51)]:
        assert_same_except_ties(base, size)
    for bad in (float("nan"), float("inf"), -float("inf")):
        s = torch.randn(1, 5, 6, 7, generator=g)
        s[0, 2, 3, 3] = bad
        new, ref = scores_to_labels(s, (24, 28)), scores_to_labels_reference(s, (24, 28))
        finite = torch.isfinite(F.interpolate(s, size=(24, 28), mode="bilinear", align_corners=False)).all(1)[0]
        assert torch.equal(new.long()[0][finite], ref[0][finite]), bad


def test_weights_are_read_from_pytorch_for_every_ratio():
    from edgeseg.runtime.processing import _Axis

    for n_in, n_out in [(45, 46), (37, 100), (90, 360), (256, 1024), (60, 61), (7, 16384), (1, 9)]:
        ax = _Axis(n_in, n_out)
        x = torch.randn(1, 1, 1, n_in, dtype=torch.float32)
        up = F.interpolate(x, size=(1, n_out), mode="bilinear", align_corners=False).view(-1)
        i1 = np.minimum(ax.i0 + 1, n_in - 1)
        xs = x.view(-1)
        mine = xs[ax.i0] * (1 - ax.lam) + xs[i1] * ax.lam
        assert (mine - up).abs().max() <= 1e-6 * (xs.abs().max() + 1), (n_in, n_out)
