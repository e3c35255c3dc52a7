"""AutoGAN's building blocks: the searched generator cell and the SNGAN-style discriminator blocks.

Module names follow upstream (VITA-Group/AutoGAN `models/building_blocks.py`), so checkpoints load by key:
G cells own `c1`, `c2`, optional `n1`/`n2` (norm), `c_sc` (shortcut) and `skip_in_ops.<i>`; D blocks own
`c1`, `c2`, `c_sc`. This D is the original (Chainer) SNGAN naming; vendor/sngan's D is the same network
under the PyTorch-collection naming (`model.<i>.residual.<j>`), which is why it cannot be imported here.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

UP_MODES = ("nearest", "bilinear")
NORMS = ("bn", "in")


class Cell(nn.Module):
    """Pre-activation up-sampling cell: [n1] ReLU up×2 c1 (+ skips) [n2] ReLU c2 (+ shortcut).

    forward(x, skip_ft) returns (skip_out, out); skip_out is what later cells receive as a skip input.
    """

    def __init__(self, in_channels: int, out_channels: int, up_mode: str, ksize: int = 3,
                 num_skip_in: int = 0, short_cut: bool = False, norm: str | None = None):
        super().__init__()
        if up_mode not in UP_MODES:
            raise ValueError(f"up_mode must be one of {UP_MODES}, got {up_mode!r}")
        if norm is not None and norm not in NORMS:
            raise ValueError(f"norm must be None or one of {NORMS}, got {norm!r}")
        self.up_mode, self.norm = up_mode, norm
        self.c1 = nn.Conv2d(in_channels, out_channels, ksize, padding=ksize // 2)
        self.c2 = nn.Conv2d(out_channels, out_channels, ksize, padding=ksize // 2)
        if norm == "bn":
            self.n1, self.n2 = nn.BatchNorm2d(in_channels), nn.BatchNorm2d(out_channels)
        elif norm == "in":  # no affine parameters: adds nothing to the state_dict
            self.n1, self.n2 = nn.InstanceNorm2d(in_channels), nn.InstanceNorm2d(out_channels)
        self.c_sc = nn.Conv2d(in_channels, out_channels, kernel_size=1) if short_cut else None
        self.skip_in_ops = (nn.ModuleList([nn.Conv2d(out_channels, out_channels, kernel_size=1)
                                           for _ in range(num_skip_in)]) if num_skip_in else None)

    def forward(self, x, skip_ft=()):
        h = self.n1(x) if self.norm else x
        h = F.interpolate(F.relu(h), scale_factor=2, mode=self.up_mode)
        size = h.shape[-2:]
        h = self.c1(h)
        # Upstream keeps a reference (not a copy) and then adds the skips IN PLACE, so the skip output
        # handed to later cells already contains the skips this cell received. Trained checkpoints depend
        # on that; do not clone here.
        skip_out = h
        if self.skip_in_ops is not None:
            if len(skip_ft) != len(self.skip_in_ops):
                raise ValueError(f"cell expects {len(self.skip_in_ops)} skip inputs, got {len(skip_ft)}")
            for ft, op in zip(skip_ft, self.skip_in_ops):
                h += op(F.interpolate(ft, size=size, mode=self.up_mode))
        if self.norm:
            h = self.n2(h)
        out = self.c2(F.relu(h))
        if self.c_sc is not None:
            out = out + self.c_sc(F.interpolate(x, scale_factor=2, mode=self.up_mode))
        return skip_out, out


class OptimizedDisBlock(nn.Module):
    """First D block: c1 ReLU c2 avgpool, shortcut c_sc(avgpool(x)) (no activation on raw pixels)."""

    def __init__(self, in_channels: int, out_channels: int, sn: bool = True, ksize: int = 3, pad: int = 1):
        super().__init__()
        wrap = spectral_norm if sn else (lambda m: m)
        self.c1 = wrap(nn.Conv2d(in_channels, out_channels, ksize, padding=pad))
        self.c2 = wrap(nn.Conv2d(out_channels, out_channels, ksize, padding=pad))
        self.c_sc = wrap(nn.Conv2d(in_channels, out_channels, 1, padding=0))

    def forward(self, x):
        h = F.avg_pool2d(self.c2(F.relu(self.c1(x))), 2)
        return h + self.c_sc(F.avg_pool2d(x, 2))


class DisBlock(nn.Module):
    """ReLU c1 ReLU c2 [avgpool]; the shortcut has a 1×1 conv (then pooling) only when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int | None = None,
                 downsample: bool = False, sn: bool = True, ksize: int = 3, pad: int = 1):
        super().__init__()
        wrap = spectral_norm if sn else (lambda m: m)
        hidden = in_channels if hidden_channels is None else hidden_channels
        self.downsample = downsample
        self.c1 = wrap(nn.Conv2d(in_channels, hidden, ksize, padding=pad))
        self.c2 = wrap(nn.Conv2d(hidden, out_channels, ksize, padding=pad))
        self.learnable_sc = in_channels != out_channels or downsample
        if self.learnable_sc:
            self.c_sc = wrap(nn.Conv2d(in_channels, out_channels, 1, padding=0))

    def forward(self, x):
        h = self.c2(F.relu(self.c1(F.relu(x))))
        sc = self.c_sc(x) if self.learnable_sc else x
        if self.downsample:
            h, sc = F.avg_pool2d(h, 2), F.avg_pool2d(sc, 2)
        return h + sc
