"""Re-GAN (Saxena et al., CVPR 2023): dense warm-up, then alternating sparse phases (ρ of every masked tensor
pruned by magnitude) and dense ones (regrown: zero, or Re-GAN-RI fresh values; LR × dense_lr_scale)."""
import copy
import dataclasses

import torch
from torch import nn

from ..config import SparseConfig, count, number, require
from .base import Flag, MaskMethod, broadcast, register
from .shared import finite_float, integer, scope_flags

WARMUP, SPARSE, DENSE = "warmup", "sparse", "dense"


@dataclasses.dataclass(frozen=True)
class ReGANConfig(SparseConfig):
    """Each field is set by a flag of ReGAN.flags (`Flag.field`), whose help says what it does (ρ: sparsity)."""

    sparsity: float = 0.3
    interval: int = 5000
    warmup: int = 0
    regrow: str = "zero"
    dense_lr_scale: float = 0.1

    method = "regan"

    def __post_init__(self) -> None:
        require(number(self.sparsity) and 0 <= self.sparsity < 1, f"sparsity must be in [0, 1), got {self.sparsity!r}")
        require(count(self.interval) and self.interval > 0,
                f"interval must be a positive integer number of iterations, got {self.interval!r}")
        require(count(self.warmup) and self.warmup >= 0,
                f"warmup must be a non-negative integer number of iterations, got {self.warmup!r}")
        require(self.regrow in ("zero", "random"), f"regrow must be 'zero' or 'random', got {self.regrow!r}")
        require(number(self.dense_lr_scale) and self.dense_lr_scale > 0,
                f"dense_lr_scale must be a finite number > 0, got {self.dense_lr_scale!r}")
        super().__post_init__()


def phase_at(iteration: int, warmup: int, interval: int) -> str:
    """Phase iteration `iteration` (0-based) trains in: warm-up, then blocks of `interval`: sparse, dense, ..."""
    if iteration < warmup:
        return WARMUP
    return SPARSE if ((iteration - warmup) // interval) % 2 == 0 else DENSE


def magnitude_mask(w: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Mask (w's dtype) pruning the k = round(sparsity · numel) smallest |w|: entries strictly below the (k+1)-th
    smallest, so a tie straddling the cut is kept whole (BatchNorm γ, all 1 at init, loses none)."""
    n = w.numel()
    k = int(round(float(sparsity) * n))
    if k <= 0:
        return torch.ones_like(w)
    if k >= n:
        return torch.zeros_like(w)
    mag = w.detach().abs()
    cut = torch.kthvalue(mag.flatten().float(), k + 1).values
    return (mag.float() >= cut).to(w.dtype)


def fresh_values(module: nn.Module, attr: str, fallback_mean: float, fallback_std: float) -> torch.Tensor:
    """Values the layer's initializer would give `attr` now (Re-GAN-RI): `reset_parameters` on a throw-away copy
    for a plain weight / bias, else N(mean, std²) of the tensor at prepare time."""
    p = module._parameters[attr]
    if attr in ("weight", "bias") and hasattr(module, "reset_parameters"):
        twin = copy.deepcopy(module)
        twin.reset_parameters()
        return twin._parameters[attr].detach().to(p.device, p.dtype)
    return torch.randn_like(p) * fallback_std + fallback_mean


@register
class ReGAN(MaskMethod):
    name = "regan"
    config_cls = ReGANConfig
    phases = (WARMUP, SPARSE, DENSE)
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

    def attach(self) -> None:
        super().attach()
        c = self.ctx
        # Initializer statistics for Re-GAN-RI; saved: after a resume prepare() sees trained weights
        w = {f"{n}/{s.name}": c.param(n, s).detach().float() for n in c.targets for s in c.sites[n]}
        self.init_stats = {k: (float(v.mean()), float(v.std()) if v.numel() > 1 else 0.0) for k, v in w.items()}
        self._phase = phase_at(0, self.config.warmup, self.config.interval)
        if self._phase == SPARSE:
            self._prune()   # set_masks caches the densities; before that every layer counts dense

    def phase(self) -> str:
        return self._phase

    def masking_active(self) -> bool:
        return self._phase == SPARSE

    def lr_scale(self, net_name: str) -> float:
        return float(self.config.dense_lr_scale) if net_name in self.ctx.targets and self._phase == DENSE else 1.0

    def schedule_warning(self, run_length: int) -> str | None:
        if self.config.warmup >= run_length:
            return (f"the first sparse phase starts after --warmup {self.config.warmup} iterations (default: "
                    f"--interval), but the run has {run_length}: it never prunes; lower --warmup / --interval")
        return None

    def on_iteration(self, iteration: int) -> str | None:
        nxt = phase_at(iteration, self.config.warmup, self.config.interval)
        if nxt == self._phase:
            return None
        self._phase = nxt
        if nxt == SPARSE:
            self._prune()
        elif nxt == DENSE:
            self._grow()
        return nxt

    def restart_from_dense(self) -> None:
        if self._phase == SPARSE:     # the mask prepare() chose was for the weights the loop then replaced
            self._prune()

    @torch.no_grad()
    def _prune(self) -> None:
        c = self.ctx
        for n in c.targets:
            masks = {s.name: magnitude_mask(c.param(n, s), self.config.sparsity) for s in c.sites[n]}
            for m in masks.values():
                broadcast(m)
            self.set_masks(n, masks)

    @torch.no_grad()
    def _grow(self) -> None:
        c = self.ctx
        for n, s in c.each():
            mask, p = self.mask(s, n), c.param(n, s)
            if self.config.regrow == "random":
                fresh = fresh_values(c.module(n, s), s.attr, *self.init_stats[f"{n}/{s.name}"])
                broadcast(fresh)
                p.copy_(torch.where(mask.bool(), p, fresh))
            mask.fill_(1)
        self.sync_ema()
        self.refresh_density()

    def export_mask(self, module, s, p):
        # Outside a sparse phase: the model a sparse phase would start from (a fresh magnitude prune at ρ).
        return module._buffers[s.mask_attr] if self.masking_active() else magnitude_mask(p, self.config.sparsity)

    def state_dict(self) -> dict:
        return {"init_stats": {k: [m, sd] for k, (m, sd) in self.init_stats.items()}}

    def check_state(self, state: dict) -> None:
        stats = state.get("init_stats")
        require(isinstance(stats, dict) and set(stats) == set(self.init_stats) and all(
                isinstance(v, (list, tuple)) and len(v) == 2 and all(number(x) for x in v) for v in stats.values()),
                "entry 'method_state.init_stats' lacks (finite) initializer statistics of these networks' masked "
                "tensors (written by another network or an older sparse_core)")

    def load_state_dict(self, state: dict, phase: str) -> None:
        self.init_stats = {k: (float(v[0]), float(v[1])) for k, v in state["init_stats"].items()}
        self._phase = phase
        self.after_load()
