"""GAN losses of upstream's `--loss` flag (hinge is SNGAN's default; Lim & Ye 2017, Miyato et al. 2018).

Each entry of LOSSES is (loss_D(logits_real, logits_fake), loss_G(logits_fake)); losses are means over
the batch.
"""
import torch
import torch.nn.functional as F


def hinge_loss_D(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))]"""
    return F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean()


def hinge_loss_G(logits_fake: torch.Tensor) -> torch.Tensor:
    """-E[D(G(z))]"""
    return -logits_fake.mean()


def bce_loss_D(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits: reals labelled 1, fakes 0."""
    return (F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real))
            + F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake)))


def bce_loss_G(logits_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating: fakes labelled 1."""
    return F.binary_cross_entropy_with_logits(logits_fake, torch.ones_like(logits_fake))


def softplus_loss_D(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """E[softplus(-D(x))] + E[softplus(D(G(z)))] (the same value as bce, written with softplus)."""
    return F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean()


def softplus_loss_G(logits_fake: torch.Tensor) -> torch.Tensor:
    """E[softplus(-D(G(z)))]"""
    return F.softplus(-logits_fake).mean()


def wasserstein_loss_D(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """-E[D(x)] + E[D(G(z))] (no gradient penalty: SNGAN's spectral norm bounds D)"""
    return -logits_real.mean() + logits_fake.mean()


def wasserstein_loss_G(logits_fake: torch.Tensor) -> torch.Tensor:
    """-E[D(G(z))]"""
    return -logits_fake.mean()


LOSSES = {
    "hinge": (hinge_loss_D, hinge_loss_G),
    "bce": (bce_loss_D, bce_loss_G),
    "softplus": (softplus_loss_D, softplus_loss_G),
    "was": (wasserstein_loss_D, wasserstein_loss_G),
}
