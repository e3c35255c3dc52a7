"""WGAN-GP + drift against independent float64 computations."""
import numpy as np
import torch

from vendor.progan.losses import critic_loss, generator_loss, gradient_penalty
from vendor.progan.models import Discriminator


def test_gradient_penalty_matches_float64_finite_differences():
    torch.manual_seed(0)
    D = Discriminator(2, 8)
    real, fake = torch.rand(2, 3, 8, 8) * 2 - 1, torch.rand(2, 3, 8, 8) * 2 - 1
    gp = gradient_penalty(D, real, fake, 0.4, 1, generator=torch.Generator().manual_seed(5))
    beta = torch.rand(2, 1, 1, 1, generator=torch.Generator().manual_seed(5)).double()
    D64 = D.double()
    x_hat = (real.double() * beta + fake.double() * (1 - beta)).numpy()

    def score(x):  # sum over the batch: minibatch std couples samples, and the GP's grad_outputs are ones
        with torch.no_grad():
            return float(D64(torch.from_numpy(x), 0.4, 1).sum())

    grad, h = np.zeros_like(x_hat), 1e-6
    for idx in np.ndindex(*x_hat.shape):
        up, down = x_hat.copy(), x_hat.copy()
        up[idx] += h
        down[idx] -= h
        grad[idx] = (score(up) - score(down)) / (2 * h)
    norms = np.sqrt((grad.reshape(2, -1) ** 2).sum(axis=1))
    want = np.mean((norms - 1) ** 2)
    assert abs(float(gp.detach()) - want) <= 1e-4 * max(1.0, want)


def test_gradient_penalty_is_differentiable_into_the_critic():
    torch.manual_seed(1)
    D = Discriminator(4, 8)
    gp = gradient_penalty(D, torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8), 0.5, 1)
    gp.backward()
    assert D.progression[0].conv[0].conv.weight_orig.grad.abs().sum() > 0


def test_critic_and_generator_losses():
    d_real = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
    d_fake = torch.tensor([[-2.0], [0.5]], dtype=torch.float64)
    gp = torch.tensor(0.25, dtype=torch.float64)
    # -(2 - (-0.75)) + 10 * 0.25 + 0.001 * (1 + 9) / 2
    assert float(critic_loss(d_real, d_fake, gp)) == -2.75 + 2.5 + 0.005
    assert float(generator_loss(d_fake)) == 0.75
