"""GAN tickets (Chen et al. 2021): a fixed mask from a file, weights rewound to the saved initial values.

`--sparse ticket --ticket FILE`: FILE (written by sparse_core.tickets.write_ticket, e.g. by bench/tickets.py)
holds the masks and the initial values of every parameter of the targeted networks. Without `--ticket` the
run is round 0 of iterative magnitude pruning: all-ones masks (dense training), and the initial values are
the network's own at prepare(). Either way the run ends by writing `ticket.pt` (initial values, masks and
final weights) next to the exported generators, from which the next round's ticket is cut.
"""
from __future__ import annotations

import os

import torch

from .. import tickets as T
from ..config import ConfigError, TicketConfig
from ..masks import MaskMethod
from . import register
from .base import Flag
from .shared import scope_flags


@register
class Ticket(MaskMethod):
    name = "ticket"
    config_cls = TicketConfig
    flags = (Flag("--ticket", "ticket", str, None, "tickets: mask + initial-values file of the previous IMP round "
                  "(sparse_core.tickets.write_ticket); none = round 0 (dense)"),
             ) + scope_flags()

    @classmethod
    def prepare_kwargs(cls, values: dict) -> dict:
        path = values.get("ticket")
        if not path:
            return {}
        data = T.read_ticket(path)
        return {"masks": data["masks"], "init": data["init"]}

    def __init__(self, ctrl, config, masks=None, init=None) -> None:
        super().__init__(ctrl, config)
        self._given_masks = masks or {}
        self._given_init = init

    def attach(self) -> None:
        super().attach()
        c = self.ctrl
        self.check_masks(self._given_masks, "ticket")
        if self._given_init is not None:
            self._rewind(self._given_init)
        # The rewind point: the initial values of every parameter of the targeted networks.
        self.init = {n: {k: p.detach().clone() for k, p in c.nets[n].named_parameters()} for n in c.targets}
        for n in c.targets:
            self.set_masks(n, self._given_masks.get(n, {}))
        self._given_masks, self._given_init = None, None
        self.refresh_density()

    @torch.no_grad()
    def _rewind(self, init: dict) -> None:
        c = self.ctrl
        for n in c.targets:
            if n not in init:
                raise ConfigError(f"ticket: no initial values for {n}")
            params = dict(c.nets[n].named_parameters())
            missing = sorted(set(params) - set(init[n]))
            if missing:
                raise ConfigError(f"ticket: initial values lack {n} parameters {missing[:3]} "
                                  f"(a ticket of another network?)")
            for k, p in params.items():
                if tuple(init[n][k].shape) != tuple(p.shape):
                    raise ConfigError(f"ticket: initial value of {n}/{k} has shape {tuple(init[n][k].shape)}, "
                                      f"expected {tuple(p.shape)}")
            for k, p in params.items():
                p.copy_(init[n][k])

    def restart_from_dense(self) -> None:
        for n in self.ctrl.targets:
            self.apply_masks(n)
        self.refresh_density()

    def phase(self) -> str:
        return "ticket"

    # ------------------------------------------------------------------ persistence / files
    def state_dict(self) -> dict:
        return {"init": {n: {k: v.clone() for k, v in d.items()} for n, d in self.init.items()}}

    def check_state(self, state: dict) -> None:
        init = state.get("init")
        c = self.ctrl
        if not isinstance(init, dict) or any(
                set(init.get(n, {})) != {k for k, _ in c.nets[n].named_parameters()} for n in c.targets):
            raise ConfigError("ticket state lacks the initial values of these networks' parameters")

    def load_state_dict(self, state: dict, phase: str) -> None:
        self.init = {n: {k: v.detach().clone() for k, v in d.items()} for n, d in state["init"].items()}
        self.after_load()

    def export_files(self, out_dir: str) -> list[str]:
        c = self.ctrl
        masks = {n: {s.name: self.mask(s, n).detach().clone() for s in c.sites[n]} for n in c.targets}
        final = {n: {s.name: s.param(c.nets[n]).detach().clone() for s in c.sites[n]} for n in c.targets}
        path = os.path.join(out_dir, "ticket.pt")
        T.write_ticket(path, init=self.init, masks=masks, final=final, config=self.config)
        return [path]
