"""WGAN-GP with drift, as the official Re-GAN ProGAN loop (and Karras et al.) trains it."""
from __future__ import annotations

import torch


def gradient_penalty(critic, real, fake, alpha, step, generator=None):
    """mean((||grad_x D(x_hat)||_2 - 1)^2) at x_hat = beta*real + (1-beta)*fake, beta ~ U(0, 1) per sample.

    Built with create_graph so the penalty itself is differentiated into D's parameters."""
    beta = torch.rand(real.size(0), 1, 1, 1, device=real.device, generator=generator)
    mixed = (real * beta + fake.detach() * (1 - beta)).requires_grad_(True)
    scores = critic(mixed, alpha, step)
    grad, = torch.autograd.grad(scores, mixed, grad_outputs=torch.ones_like(scores), create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def critic_loss(d_real, d_fake, gp, lambda_gp: float = 10.0, drift: float = 0.001):
    """-(E D(x) - E D(G(z))) + lambda * GP + drift * E D(x)^2."""
    return -(d_real.mean() - d_fake.mean()) + lambda_gp * gp + drift * (d_real ** 2).mean()


def generator_loss(d_fake):
    return -d_fake.mean()
