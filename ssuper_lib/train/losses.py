"""Loss functions of the four SSuperGAN objectives: ELBO parts, GAN losses, WGAN-GP, KL annealing.

One reduction convention for the whole kit: every per-image term is **summed over the pixels of one
image and averaged over the batch**, which is also how :func:`kl_normal` treats the latent dimensions.
With that convention the weights in the config (``recon_weight``, ``kl_weight``, ``gen_recon_weight``,
``l1_fine_weight``) mean the same thing whatever the reduction of the loss that they multiply.

Differences from the original code (docs/original.md 2.1 and 8):

* Sampling and KL share one convention (``log_sigma`` is the log of the standard deviation); both are
  defined once in :mod:`ssuper_lib.models.sequence` and re-exported here. The original mixed a log-sigma
  sample with a log-variance KL after 2021-06-07 (docs/original.md 8.3).
* The Gaussian negative log-likelihood with sigma = 1 is reported **without** its constant
  ``0.5 * D * log(2 pi)`` (11,291.9 for a 3x64x64 face), which the original added to every logged value
  (docs/original.md 8.8). Pass ``include_constant=True`` to get the original's numbers; gradients are identical.
* The discriminator and generator BCE losses use the same reduction: each is a mean over the samples it
  sees (the original summed the two discriminator terms but averaged the generator term, docs/original.md 8.4).
* A working hinge loss (the original's ``HingeGAN`` expected a 3-tuple from D and was never used).
* The WGAN-GP gradient penalty interpolates between the *true* sample (the ground-truth face or the
  unmasked ground-truth panel) and the generated one; the original used the masked input panel as the
  "real" global sample and never back-propagated the critic loss at all (docs/original.md 2.5, 8.5).
* No ad-hoc "skip the update if the loss is below -ln 0.8" thresholds (docs/original.md 8.7).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..models.sequence import kl_normal, reparameterize

__all__ = [
    "reparameterize",
    "kl_normal",
    "gaussian_nll",
    "sse_loss",
    "l1_loss",
    "reconstruction_loss",
    "RECON_LOSSES",
    "gan_d_loss",
    "gan_g_loss",
    "GAN_LOSSES",
    "wgan_critic_loss",
    "wgan_g_loss",
    "gradient_penalty",
    "kl_anneal_weight",
]

RECON_LOSSES = ("gaussian_nll", "sse", "l1")
GAN_LOSSES = ("bce", "hinge")


def _per_image_sum(err: torch.Tensor) -> torch.Tensor:
    """Sum an elementwise error (B, ...) over everything but the batch, then average over the batch."""
    return err.flatten(1).sum(dim=1).mean()


def gaussian_nll(pred: torch.Tensor, target: torch.Tensor, include_constant: bool = False) -> torch.Tensor:
    """-log N(target; pred, I): ``0.5 * SSE`` per image, mean over the batch.

    ``include_constant`` adds ``0.5 * D * log(2 pi)`` (D = pixels per image), the constant that the original
    included in its logged losses (about 11,292 for 3x64x64). It does not change any gradient.
    """
    nll = 0.5 * _per_image_sum((pred.float() - target.float()) ** 2)
    if include_constant:
        nll = nll + 0.5 * target[0].numel() * math.log(2 * math.pi)
    return nll


def sse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum of squared errors per image, mean over the batch (the original's ``reconstruction_loss``)."""
    return _per_image_sum((pred.float() - target.float()) ** 2)


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum of absolute errors per image, mean over the batch (Laplace NLL with b = 1, no constant).

    The original's ``l1_loss`` was the mean over all elements; this is that value times the pixel count,
    so that it sits on the same scale as the other per-image terms.
    """
    return _per_image_sum((pred.float() - target.float()).abs())


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "gaussian_nll") -> torch.Tensor:
    """Dispatch on ``train.recon_loss``: ``gaussian_nll`` | ``sse`` | ``l1``."""
    if kind == "gaussian_nll":
        return gaussian_nll(pred, target)
    if kind == "sse":
        return sse_loss(pred, target)
    if kind == "l1":
        return l1_loss(pred, target)
    raise ValueError(f"unknown reconstruction loss {kind!r}; expected one of {', '.join(RECON_LOSSES)}")


# --------------------------------------------------------------------------------------------------
# GAN losses on discriminator logits
# --------------------------------------------------------------------------------------------------


def gan_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """Discriminator loss, the mean over all 2B samples it sees (real and fake weigh the same).

    * ``bce``: ``0.5 * [BCEwL(D(real), 1) + BCEwL(D(fake), 0)]``, each BCE a batch mean.
    * ``hinge``: ``0.5 * [mean relu(1 - D(real)) + mean relu(1 + D(fake))]``.

    Real and fake are separate forward passes (so batch-norm statistics stay separate, as the original).
    """
    real_logits = real_logits.float().flatten()
    fake_logits = fake_logits.float().flatten()
    if kind == "bce":
        real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
        fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    elif kind == "hinge":
        real = F.relu(1.0 - real_logits).mean()
        fake = F.relu(1.0 + fake_logits).mean()
    else:
        raise ValueError(f"unknown GAN loss {kind!r}; expected one of {', '.join(GAN_LOSSES)}")
    return 0.5 * (real + fake)


def gan_g_loss(fake_logits: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """Generator adversarial loss, a batch mean: ``BCEwL(D(fake), 1)`` (non-saturating) or ``-mean D(fake)``."""
    fake_logits = fake_logits.float().flatten()
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    if kind == "hinge":
        return -fake_logits.mean()
    raise ValueError(f"unknown GAN loss {kind!r}; expected one of {', '.join(GAN_LOSSES)}")


# --------------------------------------------------------------------------------------------------
# WGAN-GP (contextual-attention variant)
# --------------------------------------------------------------------------------------------------


def wgan_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor, drift: float = 1e-3) -> torch.Tensor:
    """Critic loss ``E[C(fake)] - E[C(real)] + drift * E[C(real)^2]`` (the drift term of the original's
    ``WGAN_GP`` keeps the scores from wandering off; the gradient penalty is added separately)."""
    real_scores = real_scores.float()
    fake_scores = fake_scores.float()
    return fake_scores.mean() - real_scores.mean() + drift * (real_scores**2).mean()


def wgan_g_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """Generator loss against a WGAN critic: ``-E[C(fake)]``."""
    return -fake_scores.float().mean()


def gradient_penalty(
    critic: torch.nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty ``E[(||grad C(x_hat)||_2 - 1)^2]`` at ``x_hat = a * real + (1 - a) * fake``.

    ``real`` must be the true sample (ground-truth face or unmasked ground-truth panel); ``fake`` is
    detached here. Computed in float32 (outside autocast) because it differentiates twice.
    """
    real = real.detach().float()
    fake = fake.detach().float()
    alpha = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, generator=generator)
    x_hat = (alpha * real + (1.0 - alpha) * fake).requires_grad_(True)
    with torch.autocast(device_type=real.device.type, enabled=False):
        scores = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.float().sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()


# --------------------------------------------------------------------------------------------------
# KL annealing
# --------------------------------------------------------------------------------------------------


def kl_anneal_weight(step: int, kl_weight: float = 1.0, anneal_steps: int = 0) -> float:
    """KL weight at optimisation step ``step`` (0-based): a linear warm-up from 0 to ``kl_weight`` over
    ``anneal_steps`` steps, constant afterwards; ``anneal_steps = 0`` disables annealing.

    The PyTorch-Lightning SSuperVAE of the original annealed per epoch as ``epoch / max_epochs`` (so the
    KL reached full weight only at the very end); a warm-up in steps is the usual, schedulable form.
    """
    if anneal_steps <= 0:
        return float(kl_weight)
    return float(kl_weight) * min(1.0, step / float(anneal_steps))
