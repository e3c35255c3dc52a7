"""GAN-tickets baseline (Chen et al. 2021, "GANs can play lottery tickets too"): iterative magnitude pruning
with rewinding. The training loop drives the rounds:

    init = tickets.snapshot(G, cfg)                  # right after initialisation
    train dense
    for round in range(tickets.rounds_for(0.46)):    # 20% of the remaining weights per round
        masks = tickets.prune_and_rewind(G, init, cfg, masks, rate=0.2)
        ctrl = sparse_core.prepare(cfg, G, D, masks={'G': masks})   # fixed mask, pruned weights stay 0
        retrain from the rewound weights

Every round is a full training run: report the summed #real images and FLOPs of all rounds.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import ConfigError, TicketConfig
from .selection import find_sites


def snapshot(net: nn.Module, config: TicketConfig) -> dict[str, torch.Tensor]:
    """Copies of the maskable tensors at initialisation (the rewind point)."""
    return {s.name: s.param(net).detach().clone()
            for s in find_sites(net, config.scope, config.include, config.exclude)}


def rounds_for(target_sparsity: float, rate: float = 0.2) -> int:
    """Rounds of pruning `rate` of the remaining weights needed to reach at least `target_sparsity`."""
    if not 0.0 <= target_sparsity < 1.0:
        raise ConfigError(f"target_sparsity must be in [0, 1), got {target_sparsity!r}")
    if not 0.0 < rate < 1.0:
        raise ConfigError(f"rate must be in (0, 1), got {rate!r}")
    if target_sparsity == 0.0:
        return 0
    return math.ceil(math.log(1.0 - target_sparsity) / math.log(1.0 - rate) - 1e-9)


@torch.no_grad()
def prune_and_rewind(net: nn.Module, init: dict[str, torch.Tensor], config: TicketConfig,
                     masks: dict[str, torch.Tensor] | None = None, rate: float = 0.2,
                     scope: str = "layer") -> dict[str, torch.Tensor]:
    """Prune `rate` of the still-unpruned weights by magnitude, rewind survivors to `init`, zero the pruned.

    scope 'layer': the same fraction in every tensor (uniform, as Re-GAN); 'global': one magnitude threshold
    over all masked tensors together. Returns the new masks {name: mask}; the network is modified in place.
    """
    if not 0.0 < rate < 1.0:
        raise ConfigError(f"rate must be in (0, 1), got {rate!r}")
    if scope not in ("layer", "global"):
        raise ConfigError(f"scope must be 'layer' or 'global', got {scope!r}")
    sites = find_sites(net, config.scope, config.include, config.exclude)
    missing = [s.name for s in sites if s.name not in init]
    if missing:
        raise ConfigError(f"init snapshot lacks {missing[:3]}: take it with tickets.snapshot() on the same network")
    masks = {k: v.clone() for k, v in (masks or {}).items()}
    for s in sites:
        masks.setdefault(s.name, torch.ones_like(s.param(net)))
    # Candidates: magnitudes of surviving weights; pruned ones get +inf so they are never picked again.
    scores = {s.name: torch.where(masks[s.name].bool(), s.param(net).detach().abs(),
                                  torch.full_like(s.param(net), float("inf"))) for s in sites}
    if scope == "layer":
        for s in sites:
            alive = int(masks[s.name].sum())
            k = int(round(rate * alive))
            if k:
                order = torch.argsort(scores[s.name].flatten(), stable=True)[:k]
                masks[s.name].view(-1)[order] = 0
    else:
        flat = torch.cat([scores[s.name].flatten() for s in sites])
        alive = int(torch.isfinite(flat).sum())
        k = int(round(rate * alive))
        if k:
            order = torch.argsort(flat, stable=True)[:k]
            chosen = torch.zeros_like(flat, dtype=torch.bool)
            chosen[order] = True
            start = 0
            for s in sites:
                n = scores[s.name].numel()
                masks[s.name].view(-1)[chosen[start:start + n]] = 0
                start += n
    for s in sites:
        p = s.param(net)
        p.copy_(init[s.name].to(p.device, p.dtype) * masks[s.name])
    return masks
