"""Hinge loss for SNGAN (Lim & Ye 2017; Miyato et al. 2018)."""
import torch
import torch.nn.functional as F


def hinge_loss_D(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))]"""
    return F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean()


def hinge_loss_G(logits_fake: torch.Tensor) -> torch.Tensor:
    """-E[D(G(z))]"""
    return -logits_fake.mean()
