"""GAN tickets (Chen et al. 2021): iterative magnitude pruning with rewinding. Each round is a training run with a
fixed mask from the weights rewound to their initial values (`snapshot`, `prune_and_rewind`, `rounds_for`), or
from a command line `--sparse ticket --ticket FILE` (`write_ticket`; without it round 0: dense). A run ends by
writing `ticket.pt` (initial values, masks, final weights), from which `next_ticket` cuts the next round's."""
import dataclasses
import math
import os
import pickle

import torch
from torch import nn

from ..atomic import save_atomic
from ..config import ConfigError, SparseConfig, config_to_dict, require
from ..selection import find_sites
from .base import Flag, MaskMethod, register
from .shared import scope_flags


@dataclasses.dataclass(frozen=True)
class TicketConfig(SparseConfig):
    """A fixed mask for the whole run (from `prune_and_rewind` or a ticket file); pruned weights stay zero."""

    method = "ticket"


def snapshot(net: nn.Module, config: TicketConfig) -> dict[str, torch.Tensor]:
    """Copies of the maskable tensors at initialisation (the rewind point)."""
    return {s.name: s.param(net).detach().clone()
            for s in find_sites(net, config.scope, config.include, config.exclude)}


def rounds_for(target_sparsity: float, rate: float = 0.2) -> int:
    """Rounds of pruning `rate` of the remaining weights needed to reach at least `target_sparsity`."""
    require(0.0 <= target_sparsity < 1.0, f"target_sparsity must be in [0, 1), got {target_sparsity!r}")
    _check_rate(rate, "layer")
    return 0 if target_sparsity == 0.0 else math.ceil(math.log(1.0 - target_sparsity) / math.log(1.0 - rate) - 1e-9)


def _check_rate(rate: float, scope: str) -> None:
    require(0.0 < rate < 1.0, f"rate must be in (0, 1), got {rate!r}")
    require(scope in ("layer", "global"), f"scope must be 'layer' or 'global', got {scope!r}")


@torch.no_grad()
def prune_and_rewind(net: nn.Module, init: dict[str, torch.Tensor], config: TicketConfig,
                     masks: dict[str, torch.Tensor] | None = None, rate: float = 0.2,
                     scope: str = "layer") -> dict[str, torch.Tensor]:
    """Prune `rate` of the still-unpruned weights by magnitude (scope 'layer': per tensor; 'global': one cut),
    rewind survivors to `init` and zero the pruned, in place; returns the new masks {name: mask}."""
    sites = find_sites(net, config.scope, config.include, config.exclude)
    missing = [s.name for s in sites if s.name not in init]
    require(not missing, f"init snapshot lacks {missing[:3]}: take it with tickets.snapshot() on the same network")
    masks = prune_masks({s.name: s.param(net).detach() for s in sites}, masks or {}, rate, scope)
    for s in sites:
        p = s.param(net)
        p.copy_(init[s.name].to(p.device, p.dtype) * masks[s.name])
    return masks


def prune_masks(final: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], rate: float = 0.2,
                scope: str = "layer") -> dict[str, torch.Tensor]:
    """New masks pruning `rate` of the still-unpruned entries by |final| (per tensor or one global cut)."""
    _check_rate(rate, scope)
    masks = {k: (masks[k].clone() if k in masks else torch.ones_like(final[k])) for k in final}
    scores = {k: torch.where(masks[k].bool(), final[k].detach().abs().float(),
                             torch.full_like(final[k], float("inf"), dtype=torch.float)) for k in final}
    for names in [[k] for k in final] if scope == "layer" else [list(final)]:   # a cut per tensor, or one cut
        flat = torch.cat([scores[k].flatten() for k in names])
        n_prune = int(round(rate * int(torch.isfinite(flat).sum())))   # of the still-unpruned entries
        chosen = torch.zeros_like(flat, dtype=torch.bool)
        chosen[torch.argsort(flat, stable=True)[:n_prune]] = True
        for k, c in zip(names, chosen.split([scores[k].numel() for k in names])):
            masks[k].view(-1)[c] = 0
    return masks


def next_ticket(previous: dict, rate: float = 0.2, scope: str = "layer") -> dict:
    """From a finished round's ticket.pt (read_ticket): the next round's {init, masks} (IMP with rewinding)."""
    require(previous.get("final"), "this ticket file has no final weights (an input ticket, not a finished round's)")
    masks = {n: prune_masks(previous["final"][n], previous["masks"].get(n, {}), rate, scope)
             for n in previous["final"]}
    return {"init": previous["init"], "masks": masks}


def ticket_sparsity(masks: dict) -> float:
    """Pruned fraction over every mask of every network in {net: {name: mask}}."""
    total = sum(m.numel() for d in masks.values() for m in d.values())
    kept = sum(float(m.sum()) for d in masks.values() for m in d.values())
    return 1.0 - kept / total if total else 0.0


# ---------------------------------------------------------------------- ticket files (the CLI's --ticket)
TICKET_FORMAT = "sparse_core.ticket"
TICKET_VERSION = 1


def write_ticket(path: str, init: dict, masks: dict, final: dict | None = None, config=None) -> None:
    """Write a ticket file atomically: initial values, masks and (a finished round's) final values, per network."""
    def cpu(d):
        return {n: {k: v.detach().cpu().clone() for k, v in dd.items()} for n, dd in (d or {}).items()}

    save_atomic({"format": TICKET_FORMAT, "version": TICKET_VERSION, "init": cpu(init), "masks": cpu(masks),
                 "final": cpu(final), "config": config_to_dict(config) if config is not None else {}},
                path, prefix=".tmp-ticket-")


def _check_value(t: torch.Tensor, mask: bool, where: str) -> None:
    """Refuse `t` (named `where`) as a ticket's initial value or (mask=True) mask."""
    require(bool(torch.isfinite(t).all()), f"{where} has non-finite values")
    if mask:
        require(bool(((t == 0) | (t == 1)).all()), f"{where} is not 0/1")
        require(bool(t.any()), f"{where} prunes every entry: that layer could not train")


def _check_init(init, net: nn.Module, where: str) -> None:
    """Refuse `init` (named `where`) as `net`'s rewind point ({parameter name: finite value of its shape})."""
    params = dict(net.named_parameters())
    require(isinstance(init, dict), f"{where} missing")
    missing = sorted(set(params) - set(init))
    require(not missing, f"{where} parameters {missing[:3]} missing (a ticket of another network?)")
    for k, p in params.items():
        v = init[k]
        require(isinstance(v, torch.Tensor) and tuple(v.shape) == tuple(p.shape),
                f"{where} {k!r} has shape {tuple(getattr(v, 'shape', ()))}, expected {tuple(p.shape)}")
        _check_value(v, False, f"{where} {k!r}")


def read_ticket(path: str) -> dict:
    """Load (weights_only=True) and check a ticket file; a ConfigError names the file and the entry."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"--ticket: no such file {path!r}") from None
    except pickle.UnpicklingError:
        raise ConfigError(f"--ticket: {path!r} is not a tensors-only file (it holds objects a safe load refuses; "
                          f"ticket files hold tensors, numbers and strings only)") from None
    except Exception as e:  # noqa: BLE001  (any unreadable file is the same user error)
        raise ConfigError(f"--ticket: cannot read {path!r} ({type(e).__name__})") from None
    require(isinstance(obj, dict) and obj.get("format") == TICKET_FORMAT,
            f"--ticket: {path!r} is not a sparse_core ticket file")
    require(obj.get("version") == TICKET_VERSION,
            f"--ticket: {path!r} has version {obj.get('version')!r}, expected {TICKET_VERSION}")
    for key in ("init", "masks", "final"):
        d = obj.get(key)
        require(isinstance(d, dict) and all(isinstance(n, str) and isinstance(v, dict) and all(
                isinstance(k, str) and isinstance(t, torch.Tensor) and t.is_floating_point() for k, t in v.items())
                for n, v in d.items()),
                f"--ticket: {path!r} has a malformed {key!r} entry (expected {{net: {{name: float tensor}}}})")
        for n, v in d.items():
            for k, t in v.items():
                _check_value(t, key == "masks", f"--ticket: {path!r}: {key} {n}/{k}")
    return obj


@register
class Ticket(MaskMethod):
    name = "ticket"
    config_cls = TicketConfig
    phases = ("ticket",)
    flags = (Flag("--ticket", "ticket", str, None, "tickets: mask + initial-values file of the previous IMP round "
                  "(sparse_core.tickets.write_ticket); none = round 0 (dense)"),
             ) + scope_flags()

    @classmethod
    def prepare_kwargs(cls, values: dict) -> dict:
        path = values.get("ticket")
        if not path:
            return {}
        data = read_ticket(path)
        return {"masks": data["masks"], "init": data["init"]}

    def __init__(self, ctx, config, masks=None, init=None) -> None:
        super().__init__(ctx, config)
        self._given_masks = masks or {}
        self._given_init = init

    def attach(self) -> None:
        super().attach()
        c = self.ctx
        for n, given in self._given_masks.items():
            require(n in c.targets, f"ticket has masks for {n}, which is not a target ({c.targets})")
            shapes = {s.name: tuple(c.param(n, s).shape) for s in c.sites[n]}
            for k, m in given.items():
                require(k in shapes, f"ticket: {n} has no masked tensor {k!r}")
                require(tuple(m.shape) == shapes[k],
                        f"ticket: mask {n}/{k} has shape {tuple(m.shape)}, expected {shapes[k]}")
                _check_value(m, True, f"ticket: mask {n}/{k}")
        if self._given_init is not None:
            for n in c.targets:
                _check_init(self._given_init.get(n), c.nets[n], f"ticket: initial values of {n}:")
            with torch.no_grad():
                for n in c.targets:
                    for k, p in c.nets[n].named_parameters():
                        p.copy_(self._given_init[n][k])
        # The rewind point: the initial values of every parameter of the targeted networks.
        self.init = {n: {k: p.detach().clone() for k, p in c.nets[n].named_parameters()} for n in c.targets}
        for n in c.targets:
            self.set_masks(n, self._given_masks.get(n, {}))
        self._given_masks, self._given_init = None, None

    def state_dict(self) -> dict:
        return {"init": {n: {k: v.clone() for k, v in d.items()} for n, d in self.init.items()}}

    def check_state(self, state: dict) -> None:
        init = state.get("init") if isinstance(state.get("init"), dict) else {}
        for n in self.ctx.targets:
            _check_init(init.get(n), self.ctx.nets[n], f"entry 'method_state.init' ({n}'s initial values):")

    def load_state_dict(self, state: dict, phase: str) -> None:
        self.init = {n: {k: v.detach().clone() for k, v in d.items()} for n, d in state["init"].items()}
        self.after_load()

    def export_files(self, out_dir: str) -> list[str]:
        c = self.ctx
        masks = {n: {s.name: self.mask(s, n).detach().clone() for s in c.sites[n]} for n in c.targets}
        final = {n: {s.name: c.param(n, s).detach().clone() for s in c.sites[n]} for n in c.targets}
        path = os.path.join(out_dir, "ticket.pt")
        write_ticket(path, init=self.init, masks=masks, final=final, config=self.config)
        return [path]
