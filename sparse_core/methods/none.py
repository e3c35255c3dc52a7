"""`--sparse none`: no masks, no thresholds; a baseline run still reports iterations, images and dense FLOPs."""
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
