"""Loss functions: values against hand computations, reduction conventions, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ssuper_lib.train import losses


def test_reexports_are_the_models_convention():
    from ssuper_lib.models import sequence

    assert losses.kl_normal is sequence.kl_normal
    assert losses.reparameterize is sequence.reparameterize


def test_kl_is_zero_at_the_prior_and_matches_torch_distributions():
    mu, ls = torch.zeros(3, 5), torch.zeros(3, 5)
    assert losses.kl_normal(mu, ls).item() == pytest.approx(0.0, abs=1e-7)
    mu, ls = torch.randn(4, 6), 0.3 * torch.randn(4, 6)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu, ls.exp()), torch.distributions.Normal(0.0, 1.0))
    assert losses.kl_normal(mu, ls).item() == pytest.approx(ref.sum(1).mean().item(), rel=1e-5)


def test_reconstruction_losses_sum_per_image_and_average_over_batch():
    pred = torch.zeros(2, 3, 4, 4)
    target = torch.ones(2, 3, 4, 4)
    target[1] = 3.0  # image 0: error 1 per pixel, image 1: error 3 per pixel
    n = 3 * 4 * 4
    assert losses.sse_loss(pred, target).item() == pytest.approx((n * 1 + n * 9) / 2)
    assert losses.gaussian_nll(pred, target).item() == pytest.approx(0.5 * (n * 1 + n * 9) / 2)
    assert losses.l1_loss(pred, target).item() == pytest.approx((n * 1 + n * 3) / 2)
    const = 0.5 * n * math.log(2 * math.pi)
    with_const = losses.gaussian_nll(pred, target, include_constant=True).item()
    assert with_const == pytest.approx(losses.gaussian_nll(pred, target).item() + const)
    # the original's constant for a 64x64 RGB face, which the kit leaves out of its logged losses
    assert 0.5 * 3 * 64 * 64 * math.log(2 * math.pi) == pytest.approx(11291.9, abs=0.1)
    assert losses.reconstruction_loss(pred, target, "sse").item() == losses.sse_loss(pred, target).item()
    with pytest.raises(ValueError, match="unknown reconstruction loss"):
        losses.reconstruction_loss(pred, target, "mse")


def test_bce_gan_losses_use_one_mean_convention():
    real, fake = torch.randn(8, 1), torch.randn(8, 1)
    d = losses.gan_d_loss(real, fake, "bce")
    ref = 0.5 * (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                 + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
    assert d.item() == pytest.approx(ref.item(), rel=1e-6)
    # D's loss is the mean over all 2B samples: the same as one BCE over the concatenated batch
    cat = F.binary_cross_entropy_with_logits(torch.cat([real, fake]), torch.cat([torch.ones(8, 1), torch.zeros(8, 1)]))
    assert d.item() == pytest.approx(cat.item(), rel=1e-6)
    g = losses.gan_g_loss(fake, "bce")
    assert g.item() == pytest.approx(F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake)).item(), rel=1e-6)
    # a perfect discriminator has ~0 loss, and then the generator's loss is large
    assert losses.gan_d_loss(torch.full((4,), 20.0), torch.full((4,), -20.0)).item() < 1e-6
    assert losses.gan_g_loss(torch.full((4,), -20.0)).item() > 10


def test_hinge_gan_losses():
    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-2.0, 0.0, 1.0])
    d = losses.gan_d_loss(real, fake, "hinge")
    expected = 0.5 * (torch.tensor([0.0, 0.5, 2.0]).mean() + torch.tensor([0.0, 1.0, 2.0]).mean())
    assert d.item() == pytest.approx(expected.item())
    assert losses.gan_g_loss(fake, "hinge").item() == pytest.approx(-fake.mean().item())
    with pytest.raises(ValueError, match="unknown GAN loss"):
        losses.gan_d_loss(real, fake, "wgan")


def test_gan_losses_send_gradient_the_right_way():
    fake = torch.zeros(4, requires_grad=True)
    losses.gan_g_loss(fake, "bce").backward()
    assert (fake.grad < 0).all(), "minimising the G loss must raise D(fake)"
    fake = torch.zeros(4, requires_grad=True)
    losses.gan_d_loss(torch.zeros(4), fake, "bce").backward()
    assert (fake.grad > 0).all(), "minimising the D loss must lower D(fake)"


def test_wgan_losses_and_gradient_penalty():
    real, fake = torch.tensor([3.0, 1.0]), torch.tensor([-1.0, 0.0])
    assert losses.wgan_critic_loss(real, fake, drift=0.0).item() == pytest.approx(-0.5 - 2.0)
    assert losses.wgan_critic_loss(real, fake, drift=0.1).item() == pytest.approx(-2.5 + 0.1 * 5.0)
    assert losses.wgan_g_loss(fake).item() == pytest.approx(0.5)

    class Linear(torch.nn.Module):  # C(x) = <w, x>: gradient norm |w| everywhere
        def __init__(self, scale):
            super().__init__()
            self.w = torch.nn.Parameter(torch.full((1, 3, 4, 4), scale))

        def forward(self, x):
            return (x * self.w).flatten(1).sum(1)

    x_real, x_fake = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    unit = Linear(1.0 / math.sqrt(48))  # |w| = 1 -> zero penalty
    assert losses.gradient_penalty(unit, x_real, x_fake).item() == pytest.approx(0.0, abs=1e-10)
    steep = Linear(3.0 / math.sqrt(48))  # |w| = 3 -> (3 - 1)^2 = 4, and it differentiates w.r.t. the critic
    gp = losses.gradient_penalty(steep, x_real, x_fake)
    assert gp.item() == pytest.approx(4.0, rel=1e-5)
    gp.backward()
    assert steep.w.grad is not None and steep.w.grad.abs().sum() > 0


def test_kl_annealing_is_a_linear_warm_up():
    assert losses.kl_anneal_weight(0, 1.0, 0) == 1.0
    assert losses.kl_anneal_weight(0, 2.0, 100) == 0.0
    assert losses.kl_anneal_weight(50, 2.0, 100) == pytest.approx(1.0)
    assert losses.kl_anneal_weight(100, 2.0, 100) == pytest.approx(2.0)
    assert losses.kl_anneal_weight(1000, 2.0, 100) == pytest.approx(2.0)
