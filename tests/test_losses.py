import torch
import torch.nn.functional as F

from edgeseg.data import downsample_labels
from edgeseg.trainer.losses import hard_cross_entropy, soft_cross_entropy, soft_kl


def test_soft_ce_with_one_hot_targets_equals_hard_ce_with_ignore():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6, 5)
    label = torch.randint(0, 4, (2, 6, 5))
    label[0, 0, :3] = 255
    onehot = F.one_hot(label.clamp(max=3), 4).permute(0, 3, 1, 2).float() * (label != 255)[:, None]
    valid = (label != 255).float()
    torch.testing.assert_close(soft_cross_entropy(logits, onehot, valid), hard_cross_entropy(logits, label))


def test_soft_ce_is_normalised_by_valid_mass_and_kl_is_zero_at_a_perfect_fit():
    lab = torch.tensor([[0, 1, 255, 255], [0, 1, 255, 255]], dtype=torch.uint8)
    mass, valid = downsample_labels(lab, (1, 2), num_classes=2)  # left: 50/50, right: all void
    assert valid.tolist() == [[1.0, 0.0]]
    perfect = torch.log(mass[None].clamp(min=1e-12))  # logits equal to log of the distribution
    perfect[..., 1] = 0
    loss = soft_cross_entropy(perfect, mass[None], valid[None])
    torch.testing.assert_close(loss, torch.tensor(0.6931472))  # entropy of 50/50, over 1 valid pixel
    torch.testing.assert_close(soft_kl(perfect, mass[None], valid[None]), torch.tensor(0.0), atol=1e-6, rtol=0)


def test_kl_and_ce_have_the_same_gradient():
    torch.manual_seed(1)
    mass = torch.rand(1, 3, 4, 4)
    valid = mass.sum(1)
    a = torch.randn(1, 3, 4, 4, requires_grad=True)
    b = a.detach().clone().requires_grad_(True)
    soft_cross_entropy(a, mass, valid).backward()
    soft_kl(b, mass, valid).backward()
    torch.testing.assert_close(a.grad, b.grad)


# ------------------------------------------------------------------ class weights
def test_weighted_soft_ce_equals_torch_weighted_ce_and_kl_keeps_its_gradient():
    torch.manual_seed(2)
    logits = torch.randn(2, 4, 6, 5)
    label = torch.randint(0, 4, (2, 6, 5))
    label[1, 2, :] = 255
    onehot = F.one_hot(label.clamp(max=3), 4).permute(0, 3, 1, 2).float() * (label != 255)[:, None]
    valid = (label != 255).float()
    w = torch.tensor([0.5, 1.0, 3.0, 7.0])
    ref = F.cross_entropy(logits, label, weight=w, ignore_index=255)
    torch.testing.assert_close(soft_cross_entropy(logits, onehot, valid, w), ref)
    torch.testing.assert_close(hard_cross_entropy(logits, label, weight=w), ref)
    assert not torch.allclose(soft_cross_entropy(logits, onehot, valid), ref)  # the weights change the loss
    mass = torch.rand(1, 4, 3, 3)
    a = torch.randn(1, 4, 3, 3, requires_grad=True)
    b = a.detach().clone().requires_grad_(True)
    soft_cross_entropy(a, mass, mass.sum(1), w).backward()
    soft_kl(b, mass, mass.sum(1), w).backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_class_weights_from_counts():
    import numpy as np
    import pytest

    from edgeseg.trainer.losses import class_weights

    counts = np.array([600, 300, 100, 0])
    f = counts / counts.sum()
    assert class_weights(counts, "none") is None
    for scheme, raw in (("log", 1 / np.log(1.02 + f[:3])), ("sqrt", 1 / np.sqrt(f[:3]))):
        w = class_weights(counts, scheme)
        assert abs(float((f * w).sum()) - 1.0) < 1e-9  # pixel-weighted mean of 1
        np.testing.assert_allclose(w[:3] / w[0], raw / raw[0])  # the scheme's ratios
        assert w[0] < w[1] < w[2] == w[3]  # rarer weighs more; an absent class takes the largest weight
    assert class_weights([0, 0, 0], "log") is None
    with pytest.raises(ValueError):
        class_weights(counts, "inverse")


def test_compute_loss_passes_the_weights_to_every_output_and_target_kind():
    from edgeseg.trainer.losses import compute_loss

    torch.manual_seed(3)
    main, aux = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    label = torch.randint(0, 3, (1, 4, 4))
    mass = F.one_hot(label, 3).permute(0, 3, 1, 2).float()
    w = torch.tensor([0.2, 1.0, 5.0])
    out = {"logits": main, "aux": [aux], "aux_weight": 0.4}
    for target in ({"label": label}, {"mass": mass, "valid": mass.sum(1)}):
        expected = F.cross_entropy(main, label, weight=w) + 0.4 * F.cross_entropy(aux, label, weight=w)
        torch.testing.assert_close(compute_loss(out, target, weight=w), expected)
        assert not torch.allclose(compute_loss(out, target), expected)
