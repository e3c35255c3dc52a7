"""`set`: Sparse Evolutionary Training (Mocanu et al., Nature Communications 2018): at a fixed density, every
update the smallest-magnitude active weights die and as many inactive entries regrow at random. Defaults are the
schedule Evci et al. (RigL, ICML 2020) ran SET with: ΔT = 100 iterations, α = 0.3 decayed by cosine up to
0.75 of the run, ERK densities; regrown weights start at zero."""
from __future__ import annotations

import dataclasses

from .base import register
from .dst import DST, DynamicConfig, dynamic_flags
from .shared import scope_flags


@dataclasses.dataclass(frozen=True)
class SETConfig(DynamicConfig):
    method = "set"


@register
class SET(DST):
    name = "set"
    config_cls = SETConfig
    growth = "random"
    end_fraction = 0.75
    flags = dynamic_flags() + scope_flags()
