"""SNGAN ResNet generator and discriminator for 32x32 images.

Layout (module names, Sequential indices, shapes) matches the widely used PyTorch GAN collection, so
its checkpoints load by key name (checked against the upstream facts, shared/upstream/sngan_state_dict.json):

  G: linear z -> 4x4xch, three up-blocks (residual: BN, ReLU, Upsample x2, conv3, BN, ReLU, conv3;
     shortcut: Upsample x2, conv1), output BN, ReLU, conv3 -> 3, tanh.          ch = 256 upstream.
  D: optimized block 3 -> ch (conv3, ReLU, conv3, avgpool | avgpool, conv1), a down block, two plain
     blocks, ReLU, sum over space, linear ch -> 1 without bias.                   ch = 128 upstream.
     torch.nn.utils.spectral_norm (weight_orig / weight_u / weight_v) on every conv and the linear.

Initialisation as upstream: xavier-uniform with gain sqrt(2) for convs inside residual branches,
gain 1 for every other conv and linear, zero biases; BatchNorm keeps PyTorch's default (1, 0).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn.utils import spectral_norm

BOTTOM_WIDTH = 4  # G starts from a 4x4 feature map; three up-blocks reach 32x32


class GenBlock(nn.Module):
    """Up-sampling residual block of G."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.residual = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1),
        )
        self.shortcut = nn.Sequential(
            nn.Upsample(scale_factor=2),
            nn.Conv2d(in_channels, out_channels, 1, stride=1, padding=0),
        )

    def forward(self, x):
        return self.residual(x) + self.shortcut(x)


class ResGenerator32(nn.Module):
    def __init__(self, z_dim: int = 128, ch: int = 256, img_channels: int = 3):
        super().__init__()
        self.z_dim, self.ch = z_dim, ch
        self.linear = nn.Linear(z_dim, BOTTOM_WIDTH * BOTTOM_WIDTH * ch)
        self.blocks = nn.Sequential(GenBlock(ch, ch), GenBlock(ch, ch), GenBlock(ch, ch))
        self.output = nn.Sequential(
            nn.BatchNorm2d(ch),
            nn.ReLU(),
            nn.Conv2d(ch, img_channels, 3, stride=1, padding=1),
            nn.Tanh(),
        )
        init_like_upstream(self)

    def forward(self, z):
        x = self.linear(z).view(-1, self.ch, BOTTOM_WIDTH, BOTTOM_WIDTH)
        return self.output(self.blocks(x))


class OptimizedDisBlock(nn.Module):
    """First D block: the residual branch starts with a conv (no ReLU on raw pixels) and the
    shortcut pools before its 1x1 conv (cheaper on the wide input), as in the SNGAN paper."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2),
            spectral_norm(nn.Conv2d(in_channels, out_channels, 1, stride=1, padding=0)),
        )
        self.residual = nn.Sequential(
            spectral_norm(nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1)),
            nn.ReLU(),
            spectral_norm(nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1)),
            nn.AvgPool2d(2),
        )

    def forward(self, x):
        return self.residual(x) + self.shortcut(x)


class DisBlock(nn.Module):
    """Residual D block; the shortcut has a 1x1 conv only when shape changes (down or new width)."""

    def __init__(self, in_channels: int, out_channels: int, down: bool = False):
        super().__init__()
        shortcut = []
        if in_channels != out_channels or down:
            shortcut.append(spectral_norm(nn.Conv2d(in_channels, out_channels, 1, stride=1, padding=0)))
        if down:
            shortcut.append(nn.AvgPool2d(2))
        self.shortcut = nn.Sequential(*shortcut)
        residual = [
            nn.ReLU(),
            spectral_norm(nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1)),
            nn.ReLU(),
            spectral_norm(nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1)),
        ]
        if down:
            residual.append(nn.AvgPool2d(2))
        self.residual = nn.Sequential(*residual)

    def forward(self, x):
        return self.residual(x) + self.shortcut(x)


class ResDiscriminator32(nn.Module):
    def __init__(self, ch: int = 128, img_channels: int = 3):
        super().__init__()
        self.ch = ch
        self.model = nn.Sequential(
            OptimizedDisBlock(img_channels, ch),
            DisBlock(ch, ch, down=True),
            DisBlock(ch, ch),
            DisBlock(ch, ch),
            nn.ReLU(),
        )
        self.linear = spectral_norm(nn.Linear(ch, 1, bias=False))
        init_like_upstream(self)

    def forward(self, x):
        features = self.model(x).sum(dim=(2, 3))  # global sum pooling
        return self.linear(features)


def _weight_to_init(module: nn.Module) -> torch.Tensor:
    # Under the old spectral_norm API the trainable tensor is `weight_orig`; `weight` is recomputed
    # from it on every forward, so initialising `weight` would be lost.
    return module.weight_orig if hasattr(module, "weight_orig") else module.weight


@torch.no_grad()
def init_like_upstream(model: nn.Module) -> None:
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            is_residual_conv = "residual" in name and not isinstance(module, nn.Linear)
            gain = math.sqrt(2.0) if is_residual_conv else 1.0
            nn.init.xavier_uniform_(_weight_to_init(module), gain=gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
