"""`rigl`: Rigging the Lottery (Evci et al., ICML 2020): at a fixed density, every update the smallest-magnitude
active weights die and the inactive entries with the largest dense-gradient magnitude grow (at zero). The dense
gradient is read only at update steps (methods/dst.py: masks zero the weights, so autograd's gradient is dense).
Defaults are the paper's: ΔT = 100 iterations, α = 0.3 decayed by cosine, T_end = 0.75 of the run, ERK."""
from __future__ import annotations

import dataclasses

from .base import register
from .dst import DST, DynamicConfig, dynamic_flags
from .shared import scope_flags


@dataclasses.dataclass(frozen=True)
class RigLConfig(DynamicConfig):
    method = "rigl"


@register
class RigL(DST):
    name = "rigl"
    config_cls = RigLConfig
    growth = "gradient"
    end_fraction = 0.75
    flags = dynamic_flags() + scope_flags()
