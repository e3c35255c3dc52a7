"""`static`: the static-sparse baseline of the dynamic-sparse-training papers. Random masks at each network's
density (spread uniformly or by ERK) from iteration 0, never changed."""
from __future__ import annotations

import dataclasses

from .base import register
from .dst import DST, DSTConfig, init_flags
from .shared import scope_flags


@dataclasses.dataclass(frozen=True)
class StaticConfig(DSTConfig):
    method = "static"


@register
class Static(DST):
    name = "static"
    config_cls = StaticConfig
    dynamic = False
    flags = init_flags() + scope_flags()
