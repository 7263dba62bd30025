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
