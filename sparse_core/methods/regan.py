"""Re-GAN (Saxena et al., CVPR 2023): dense warm-up, then alternating sparse and dense phases of g iterations.

Sparse phase: magnitude-prune ρ of every masked tensor, keep pruned entries at zero. Dense phase: regrow
them (zero, or Re-GAN-RI: fresh initializer values) and train with the LR scaled by `dense_lr_scale`.
"""
from __future__ import annotations

import torch

from .. import regan as R
from ..config import ConfigError, ReGANConfig
from ..masks import MaskMethod, broadcast
from . import register
from .base import Flag
from .shared import finite_float, integer, scope_flags


@register
class ReGAN(MaskMethod):
    name = "regan"
    config_cls = ReGANConfig
    flags = (
        Flag("--sparsity", "sparsity", finite_float, 0.3, "Re-GAN: fraction of each masked tensor pruned in sparse "
             "phases (default 0.3)", "sparsity"),
        Flag("--interval", "interval", integer, None, "Re-GAN: iterations per sparse / dense phase", "interval"),
        Flag("--warmup", "warmup", int, None, "Re-GAN: dense iterations before the first prune (default: --interval)",
             "warmup"),
        Flag("--regrow", "regrow", str, "zero", "Re-GAN: values of regrown weights: zero | random (Re-GAN-RI)",
             "regrow", choices=("zero", "random")),
        Flag("--dense-lr-scale", "dense_lr_scale", finite_float, 0.1,
             "Re-GAN: LR multiplier in dense phases (1.0 = Re-GAN-lr; default 0.1)", "dense_lr_scale"),
    ) + scope_flags()

    @classmethod
    def config_from_flags(cls, values: dict):
        values = dict(values)
        if values.get("warmup") is None:
            values["warmup"] = values.get("interval")
        return super().config_from_flags(values)

    # ------------------------------------------------------------------ schedule
    def attach(self) -> None:
        super().attach()
        c = self.ctrl
        # The initializer's statistics, for Re-GAN-RI regrowth of layers without reset_parameters. Saved in
        # state_dict(): after a resume, prepare() sees trained weights, not the initial ones.
        self.init_stats = {f"{n}/{s.name}": (float(s.param(c.nets[n]).detach().float().mean()),
                                              R.init_std(s.param(c.nets[n])))
                           for n in c.targets for s in c.sites[n]}
        self._phase = R.phase_at(0, self.config.warmup, self.config.interval)
        if self._phase == R.SPARSE:
            self._prune()
        self.refresh_density()

    def phase(self) -> str:
        return self._phase

    def masking_active(self) -> bool:
        return self._phase == R.SPARSE

    def lr_scale(self, net_name: str) -> float:
        if net_name in self.ctrl.targets and self._phase == R.DENSE:
            return float(self.config.dense_lr_scale)
        return 1.0

    def on_iteration(self, iteration: int) -> str | None:
        nxt = R.phase_at(iteration, self.config.warmup, self.config.interval)
        if nxt == self._phase:
            return None
        if nxt == R.SPARSE:
            self._prune()
        elif nxt == R.DENSE:
            self._grow()
        self._phase = nxt
        self.refresh_density()
        return nxt

    def restart_from_dense(self) -> None:
        if self._phase == R.SPARSE:     # the mask prepare() chose was for the weights the loop then replaced
            self._prune()
        self.refresh_density()

    @torch.no_grad()
    def _prune(self) -> None:
        c = self.ctrl
        for n in c.targets:
            masks = {}
            for s in c.sites[n]:
                mask = R.magnitude_mask(s.param(c.nets[n]), self.config.sparsity)
                broadcast(mask)
                masks[s.name] = mask
            self.set_masks(n, masks)

    @torch.no_grad()
    def _grow(self) -> None:
        c = self.ctrl
        for n in c.targets:
            for s in c.sites[n]:
                m = s.module(c.nets[n])
                mask = m._buffers[s.mask_attr]
                if self.config.regrow == "random":
                    mean, std = self.init_stats[f"{n}/{s.name}"]
                    fresh = R.fresh_values(m, s.attr, mean, std)
                    broadcast(fresh)
                    p = m._parameters[s.attr]
                    p.copy_(torch.where(mask.bool(), p, fresh))
                mask.fill_(1)
                if n == "G" and c.G_ema is not None:
                    s.module(c.G_ema)._buffers[s.mask_attr].fill_(1)

    # ------------------------------------------------------------------ export / persistence
    def export_mask(self, module, s, p):
        # Outside a sparse phase: the model a sparse phase would start from (a fresh magnitude prune at ρ).
        return module._buffers[s.mask_attr] if self.masking_active() else R.magnitude_mask(p, self.config.sparsity)

    def state_dict(self) -> dict:
        return {"init_stats": {k: [m, sd] for k, (m, sd) in self.init_stats.items()}}

    def check_state(self, state: dict) -> None:
        stats = state.get("init_stats")
        if not isinstance(stats, dict) or set(stats) != set(self.init_stats):
            raise ConfigError("Re-GAN state lacks the initializer statistics of these networks' masked tensors "
                              "(written by another network or an older sparse_core)")

    def load_state_dict(self, state: dict, phase: str) -> None:
        self.init_stats = {k: (float(v[0]), float(v[1])) for k, v in state["init_stats"].items()}
        self._phase = phase
        self.after_load()
