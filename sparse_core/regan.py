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
    """Mask (same dtype as w) pruning the k = round(sparsity · numel) entries of smallest |w|, ties kept whole.

    Entries strictly below the (k+1)-th smallest magnitude are pruned: exactly k when that value is not tied
    with the k-th, fewer when a tie straddles the cut (e.g. BatchNorm γ, all 1 at init: none of the tie is
    pruned, as the official |w| < quantile rule does). The mask says how many were really pruned.
    """
    n = w.numel()
    k = int(round(float(sparsity) * n))
    if k <= 0:
        return torch.ones_like(w)
    if k >= n:
        return torch.zeros_like(w)
    mag = w.detach().abs()
    cut = torch.kthvalue(mag.flatten().float(), k + 1).values
    return (mag.float() >= cut).to(w.dtype)


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
    # Only a plain 'weight' / 'bias' is what reset_parameters re-draws; for weight_orig, weight_v and
    # parametrization originals it would re-draw the derived tensor instead.
    if attr in ("weight", "bias") and hasattr(module, "reset_parameters"):
        twin = copy.deepcopy(module)
        twin.reset_parameters()
        return twin._parameters[attr].detach().to(p.device, p.dtype)
    return torch.randn_like(p) * fallback_std + fallback_mean
