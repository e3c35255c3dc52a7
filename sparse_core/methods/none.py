"""`--sparse none`: no masks, no thresholds; the controller still counts iterations, images and dense FLOPs,
so a baseline run reports its cost the same way a sparse one does."""
from __future__ import annotations

import dataclasses

from .base import Method, register


@dataclasses.dataclass(frozen=True)
class NoneConfig:
    method = "none"

    def targets(self) -> tuple[str, ...]:
        return ()


@register
class NoneMethod(Method):
    name = "none"
    config_cls = NoneConfig
    phases = ("dense",)
