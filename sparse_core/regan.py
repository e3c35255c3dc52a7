"""Re-GAN building blocks: the phase schedule, magnitude pruning and regrowth values."""
from __future__ import annotations

import copy

import torch
from torch import nn

WARMUP, SPARSE, DENSE = "warmup", "sparse", "dense"


def phase_at(iteration: int, warmup: int, interval: int) -> str:
    """Phase that iteration `iteration` (0-based) trains in.

    Dense for `warmup` iterations, then alternating blocks of `interval` iterations: sparse, dense, sparse, ...
    """
    if iteration < warmup:
        return WARMUP
    return SPARSE if ((iteration - warmup) // interval) % 2 == 0 else DENSE


def magnitude_mask(w: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Mask (same dtype as w) that zeroes exactly round(sparsity · numel) entries of smallest |w|.

    Exact-k rather than a quantile threshold: with ties (e.g. weights that are already zero) a threshold
    would prune more than asked; a stable sort keeps the choice deterministic.
    """
    n = w.numel()
    k = int(round(float(sparsity) * n))
    mask = torch.ones(n, dtype=w.dtype, device=w.device)
    if k > 0:
        order = torch.argsort(w.detach().abs().flatten(), stable=True)
        mask[order[:k]] = 0
    return mask.view_as(w)


def init_std(w: torch.Tensor) -> float:
    """Spread of a freshly initialised tensor, recorded at prepare time for `regrow='random'`."""
    return float(w.detach().float().std()) if w.numel() > 1 else 0.0


def fresh_values(module: nn.Module, attr: str, fallback_mean: float, fallback_std: float) -> torch.Tensor:
    """Values the layer's initializer would give `attr` now (Re-GAN-RI regrowth).

    Modules with `reset_parameters` (torch layers) are re-initialised on a throw-away copy. Layers without it
    (custom equalised-LR layers) and spectral-norm weights (`weight_orig`, which `reset_parameters` does not
    touch) are drawn from N(mean, std²) of the tensor at prepare time, i.e. the initializer's own statistics.
    """
    p = module._parameters[attr]
    if attr != "weight_orig" and hasattr(module, "reset_parameters"):
        twin = copy.deepcopy(module)
        twin.reset_parameters()
        return twin._parameters[attr].detach().to(p.device, p.dtype)
    return torch.randn_like(p) * fallback_std + fallback_mean
