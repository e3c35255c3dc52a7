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

from .atomic import save_atomic
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
    masks = prune_masks({s.name: s.param(net).detach() for s in sites}, masks or {}, rate, scope)
    for s in sites:
        p = s.param(net)
        p.copy_(init[s.name].to(p.device, p.dtype) * masks[s.name])
    return masks


# ---------------------------------------------------------------------- ticket files (the CLI's --ticket)
TICKET_FORMAT = "sparse_core.ticket"
TICKET_VERSION = 1


def write_ticket(path: str, init: dict, masks: dict, final: dict | None = None, config=None) -> None:
    """Write a ticket file: {net: {param name: initial value}}, {net: {site name: mask}}, optionally the
    final trained values of the masked tensors (what the next IMP round prunes by). Atomic."""
    from .config import config_to_dict
    obj = {"format": TICKET_FORMAT, "version": TICKET_VERSION,
           "init": {n: {k: v.detach().cpu().clone() for k, v in d.items()} for n, d in init.items()},
           "masks": {n: {k: v.detach().cpu().clone() for k, v in d.items()} for n, d in masks.items()},
           "final": {n: {k: v.detach().cpu().clone() for k, v in d.items()} for n, d in (final or {}).items()},
           "config": config_to_dict(config) if config is not None else {}}
    save_atomic(obj, path, prefix=".tmp-ticket-")


def read_ticket(path: str) -> dict:
    """Load and check a ticket file (tensors only: weights_only=True). Raises ConfigError naming the file."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"--ticket: no such file {path!r}") from None
    except Exception as e:  # noqa: BLE001  (any unreadable file is the same user error)
        raise ConfigError(f"--ticket: cannot read {path!r}: {e}") from None
    if not isinstance(obj, dict) or obj.get("format") != TICKET_FORMAT:
        raise ConfigError(f"--ticket: {path!r} is not a sparse_core ticket file")
    if obj.get("version") != TICKET_VERSION:
        raise ConfigError(f"--ticket: {path!r} has version {obj.get('version')!r}, expected {TICKET_VERSION}")
    for key in ("init", "masks", "final"):
        d = obj.get(key)
        if not isinstance(d, dict) or not all(isinstance(v, dict) and all(isinstance(t, torch.Tensor)
                                                                        for t in v.values()) for v in d.values()):
            raise ConfigError(f"--ticket: {path!r} has a malformed {key!r} entry")
    for n, d in obj["masks"].items():
        for k, m in d.items():
            if not torch.all((m == 0) | (m == 1)):
                raise ConfigError(f"--ticket: {path!r}: mask {n}/{k} is not 0/1")
    return obj


def prune_masks(final: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], rate: float = 0.2,
                scope: str = "layer") -> dict[str, torch.Tensor]:
    """New masks pruning `rate` of the still-unpruned entries by |final| (per tensor or one global cut)."""
    if not 0.0 < rate < 1.0:
        raise ConfigError(f"rate must be in (0, 1), got {rate!r}")
    if scope not in ("layer", "global"):
        raise ConfigError(f"scope must be 'layer' or 'global', got {scope!r}")
    masks = {k: (masks[k].clone() if k in masks else torch.ones_like(final[k])) for k in final}
    scores = {k: torch.where(masks[k].bool(), final[k].detach().abs().float(),
                             torch.full_like(final[k], float("inf"), dtype=torch.float)) for k in final}
    if scope == "layer":
        for k in final:
            n_alive = int(masks[k].sum())
            n_prune = int(round(rate * n_alive))
            if n_prune:
                order = torch.argsort(scores[k].flatten(), stable=True)[:n_prune]
                masks[k].view(-1)[order] = 0
    else:
        names = list(final)
        flat = torch.cat([scores[k].flatten() for k in names])
        n_prune = int(round(rate * int(torch.isfinite(flat).sum())))
        if n_prune:
            chosen = torch.zeros_like(flat, dtype=torch.bool)
            chosen[torch.argsort(flat, stable=True)[:n_prune]] = True
            start = 0
            for k in names:
                n = scores[k].numel()
                masks[k].view(-1)[chosen[start:start + n]] = 0
                start += n
    return masks


def next_ticket(previous: dict, rate: float = 0.2, scope: str = "layer") -> dict:
    """From a finished round's ticket.pt (read_ticket): the next round's {init, masks} (IMP with rewinding)."""
    if not previous.get("final"):
        raise ConfigError("this ticket file has no final weights (it is an input ticket, not a finished round's)")
    masks = {n: prune_masks(previous["final"][n], previous["masks"].get(n, {}), rate, scope)
             for n in previous["final"]}
    return {"init": previous["init"], "masks": masks}


def ticket_sparsity(masks: dict) -> float:
    """Pruned fraction over every mask of every network in {net: {name: mask}}."""
    total = sum(m.numel() for d in masks.values() for m in d.values())
    kept = sum(float(m.sum()) for d in masks.values() for m in d.values())
    return 1.0 - kept / total if total else 0.0
