"""AutoGAN's searched CIFAR-10 generators A, B, C and the discriminator they all train with.

G: l1 = Linear(latent → bw²·gf) viewed as (gf, bw, bw) → cell1, cell2, cell3 (each up-samples ×2; cell k
receives the skip outputs of all earlier cells) → to_rgb = BN, ReLU, conv3×3 → channels, tanh.
The three architectures differ only in their cells (upstream `models/autogan_cifar10_{a,b,c}.py`):

  A: cell1 nearest + shortcut; cell2 bilinear + shortcut, 1 skip-in; cell3 nearest, no shortcut, 2 skip-ins
  B: all nearest, all with shortcut, 0 / 1 / 2 skip-ins
  C: A with BatchNorm (n1, n2) in cell1

D: OptimizedDisBlock(channels → df) → DisBlock(down) → DisBlock → DisBlock → ReLU → sum over H, W →
l5 = Linear(df, 1, bias=False); spectral norm on every conv and l5 with --d_spectral_norm (the exps' setting).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .building_blocks import Cell, DisBlock, OptimizedDisBlock


class CellSpec(NamedTuple):
    up_mode: str
    short_cut: bool = False
    num_skip_in: int = 0
    norm: str | None = None


ARCHS = {
    "autogan_cifar10_a": (CellSpec("nearest", short_cut=True),
                          CellSpec("bilinear", short_cut=True, num_skip_in=1),
                          CellSpec("nearest", num_skip_in=2)),
    "autogan_cifar10_b": (CellSpec("nearest", short_cut=True),
                          CellSpec("nearest", short_cut=True, num_skip_in=1),
                          CellSpec("nearest", short_cut=True, num_skip_in=2)),
    "autogan_cifar10_c": (CellSpec("nearest", short_cut=True, norm="bn"),
                          CellSpec("bilinear", short_cut=True, num_skip_in=1),
                          CellSpec("nearest", num_skip_in=2)),
}


class Generator(nn.Module):
    def __init__(self, arch: str = "autogan_cifar10_a", latent_dim: int = 128, gf_dim: int = 256,
                 bottom_width: int = 4, img_channels: int = 3):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown generator {arch!r}; expected one of {sorted(ARCHS)}")
        self.arch, self.ch, self.bottom_width = arch, gf_dim, bottom_width
        self.l1 = nn.Linear(latent_dim, bottom_width ** 2 * gf_dim)
        for index, spec in enumerate(ARCHS[arch], 1):
            self.add_module(f"cell{index}", Cell(gf_dim, gf_dim, spec.up_mode, num_skip_in=spec.num_skip_in,
                                                 short_cut=spec.short_cut, norm=spec.norm))
        self.to_rgb = nn.Sequential(nn.BatchNorm2d(gf_dim), nn.ReLU(), nn.Conv2d(gf_dim, img_channels, 3, 1, 1),
                                    nn.Tanh())

    def forward(self, z):
        h = self.l1(z).view(-1, self.ch, self.bottom_width, self.bottom_width)
        skips = []
        for cell in (self.cell1, self.cell2, self.cell3):
            skip, h = cell(h, tuple(skips))
            skips.append(skip)
        return self.to_rgb(h)


class Discriminator(nn.Module):
    def __init__(self, df_dim: int = 128, img_channels: int = 3, d_spectral_norm: bool = True):
        super().__init__()
        self.ch = df_dim
        self.block1 = OptimizedDisBlock(img_channels, df_dim, sn=d_spectral_norm)
        self.block2 = DisBlock(df_dim, df_dim, downsample=True, sn=d_spectral_norm)
        self.block3 = DisBlock(df_dim, df_dim, sn=d_spectral_norm)
        self.block4 = DisBlock(df_dim, df_dim, sn=d_spectral_norm)
        self.l5 = nn.Linear(df_dim, 1, bias=False)
        if d_spectral_norm:
            self.l5 = nn.utils.spectral_norm(self.l5)

    def forward(self, x):
        h = self.block4(self.block3(self.block2(self.block1(x))))
        return self.l5(torch.relu(h).sum(dim=(2, 3)))  # a sum over space (upstream's comment says average)


@torch.no_grad()
def weights_init(net: nn.Module, init_type: str = "xavier_uniform") -> None:
    """Upstream's `weights_init` applied to every module: convs get `init_type` (xavier gain 1, N(0, 0.02) or
    orthogonal) on the trainable weight (`weight_orig` under spectral norm), biases and linears keep PyTorch's
    defaults, BatchNorm γ ~ N(1, 0.02) and β = 0."""
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            weight = module.weight_orig if hasattr(module, "weight_orig") else module.weight
            if init_type == "normal":
                nn.init.normal_(weight, 0.0, 0.02)
            elif init_type == "orth":
                nn.init.orthogonal_(weight)
            elif init_type == "xavier_uniform":
                nn.init.xavier_uniform_(weight, 1.0)
            else:
                raise ValueError(f"unknown init_type {init_type!r}")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, 0.02)
            nn.init.zeros_(module.bias)
