"""`stugan`: STU-GAN, sparse-to-sparse training of G and D (Liu et al., "Don't be so dense: sparse-to-sparse GAN
training without sacrificing performance", IJCV 2023). G and D are sparse from the first iteration on, each at
its own density, and their masks are explored during training at a fixed parameter count.

The rule (methods/dst.py does the bookkeeping). At prepare(): every masked tensor l of network n gets a random
mask with round(d_l · numel_l) active entries, d_l from n's density (`density_g` / `density_d`) spread by ERK
(default) or uniformly. At every iteration t with t % ΔT == 0 and 0 < t < T_end, for every targeted network, in
that network's next optimizer step (after its backward, before the update):
  r_t = α/2 · (1 + cos(π t / T_end))                  (death-rate schedule; linear and constant selectable)
  k_l = round(r_t · a_l)                               (a_l: active entries of tensor l)
  die:  the k_l active entries of tensor l with the smallest |w|
  grow: k_l inactive entries of tensor l (the ones just dropped included), chosen by the network's growth rule:
        'gradient' (G's default): largest |dL_n/dw| of that step's dense gradient;
        'random'   (D's default): uniformly at random (seeded by mask_seed, the same on every DDP rank)
  grown weights start at zero (their G_ema entries too); the active count of every tensor is unchanged.

Defaults follow the public code (the BigGAN fork's sparselearning/core.py argument defaults): density 0.3 for
both networks (its `--density`, used when G and D are not given separate densities), α = 0.5 (`--death_rate`),
cosine decay over the whole run (T_end = the run length; its CosineDecay spans every training iteration),
ΔT = 2000 iterations (`--update_frequency`), ERK initialisation, growth by gradient for G and at random for D
(`--G_growth gradient --D_growth random`). Its CIFAR-10 scripts sweep the G density with D at 0.5 and ΔT = 500.
Differences from that code, all in dst.py's shared machinery: k_l is rounded (the fork takes the ceiling), the
cosine decays to 0 (the fork's scheduler floors it at 0.005), prune and regrow are exact counts with ties broken
by position (the fork thresholds magnitudes and grows D by a Bernoulli draw of the expected count), and the fork
masks only 4-d convolution weights where this method masks what `--sparse-scope` / `--sparse-exclude` select.
"""
from __future__ import annotations

import dataclasses

from ..config import ConfigError
from .base import Flag, register
from .dst import DST, GROWTH, DynamicConfig, dynamic_flags
from .shared import scope_flags


@dataclasses.dataclass(frozen=True)
class STUGANConfig(DynamicConfig):
    """growth_g / growth_d: how each network regrows ('gradient' | 'random'); the rest is DynamicConfig's."""

    density_g: float = 0.3
    density_d: float = 0.3
    death_rate: float = 0.5
    death_rate_schedule: str = "cosine"
    update_frequency: int = 2000
    growth_g: str = "gradient"
    growth_d: str = "random"

    method = "stugan"

    def __post_init__(self) -> None:
        for f in ("growth_g", "growth_d"):
            if getattr(self, f) not in GROWTH:
                raise ConfigError(f"{f} must be one of {GROWTH}, got {getattr(self, f)!r}")
        super().__post_init__()


@register
class STUGAN(DST):
    name = "stugan"
    config_cls = STUGANConfig
    end_fraction = 1.0     # the cosine spans the whole run
    flags = dynamic_flags() + (
        Flag("--stugan-growth-G", "stugan_growth_g", str, None, "STU-GAN: how G regrows: gradient | random "
             "(default gradient)", "growth_g", choices=GROWTH),
        Flag("--stugan-growth-D", "stugan_growth_d", str, None, "STU-GAN: how D regrows: gradient | random "
             "(default random)", "growth_d", choices=GROWTH),
    ) + scope_flags()

    def grow_mode(self, net_name: str) -> str:
        return self.config.growth_g if net_name == "G" else self.config.growth_d
