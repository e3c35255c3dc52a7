"""`--sparse none`: no masks, no thresholds; the controller still counts iterations, images and dense FLOPs,
so a baseline run reports its cost the same way a sparse one does."""
from __future__ import annotations

from ..config import NoneConfig
from . import register
from .base import Method


@register
class NoneMethod(Method):
    name = "none"
    config_cls = NoneConfig
    flags = ()
