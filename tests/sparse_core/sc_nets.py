"""Tiny G / D used by the sparse_core tests: every layer kind the library must handle."""
import torch
from torch import nn
from torch.nn.utils import spectral_norm

Z = 8


class TinyG(nn.Module):
    def __init__(self, ch=8):
        super().__init__()
        self.fc = nn.Linear(Z, ch * 4 * 4)
        self.up = nn.ConvTranspose2d(ch, ch, 4, 2, 1)
        self.bn = nn.BatchNorm2d(ch)
        self.conv = nn.Conv2d(ch, 3, 3, 1, 1)
        self.torgb = nn.Conv2d(3, 3, 1)
        self.ch = ch

    def forward(self, z):
        x = self.fc(z).view(-1, self.ch, 4, 4)
        x = torch.relu(self.bn(self.up(x)))
        return torch.tanh(self.torgb(self.conv(x)))


class TinyD(nn.Module):
    def __init__(self, ch=8):
        super().__init__()
        self.conv1 = spectral_norm(nn.Conv2d(3, ch, 3, 2, 1))
        self.conv2 = spectral_norm(nn.Conv2d(ch, ch, 3, 2, 1))
        self.fc = spectral_norm(nn.Linear(ch * 2 * 2, 1))

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(x.flatten(1))


def make(seed=0):
    torch.manual_seed(seed)
    return TinyG(), TinyD()


def gan_step(G, D, opt_G, opt_D, ctrl, batch=4, ema=None, ema_beta=0.9):
    """One hinge-loss iteration; returns (loss_D, loss_G) as floats."""
    z = torch.randn(batch, Z)
    real = torch.rand(batch, 3, 8, 8) * 2 - 1
    loss_D = torch.relu(1 - D(real)).mean() + torch.relu(1 + D(G(z).detach())).mean()
    loss_D = loss_D + ctrl.regularizer("D")
    opt_D.zero_grad(set_to_none=True)
    loss_D.backward()
    ctrl.optimizer_step("D", opt_D)
    loss_G = -D(G(torch.randn(batch, Z))).mean() + ctrl.regularizer("G")
    opt_G.zero_grad(set_to_none=True)
    loss_G.backward()
    ctrl.optimizer_step("G", opt_G)
    if ema is not None:
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), G.parameters()):
                pe.lerp_(p, 1 - ema_beta)
        ctrl.after_ema()
    ctrl.advance(batch)
    return float(loss_D.detach()), float(loss_G.detach())
