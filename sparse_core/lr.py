"""Learning-rate scaling that composes with the training loop's own schedule.

Re-GAN changes a network's LR when a phase starts. The vendors already shape their LRs: SNGAN's LambdaLR
rewrites `group['lr'] = base_lr * lambda(step)` from `scheduler.base_lrs` every step, and StyleGAN2-ADA
pre-multiplies the LR by `mb_ratio` for lazy regularisation. So the scale is applied multiplicatively to
every place the LR is derived from (param group, `initial_lr`, scheduler base LRs), never written as an
absolute value: the vendor's schedule keeps its shape and sparse_core only multiplies it.
"""
from __future__ import annotations

from typing import Sequence

import torch


class LRScaler:
    def __init__(self) -> None:
        self.scale = 1.0
        self._optimizers: list[torch.optim.Optimizer] = []
        self._schedulers: list = []

    def bind(self, optimizer: torch.optim.Optimizer, schedulers: Sequence = ()) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self._optimizers.append(optimizer)
        for s in schedulers:
            if not hasattr(s, "base_lrs"):
                raise TypeError(f"scheduler {type(s).__name__} has no base_lrs; cannot compose an LR scale with it")
            self._schedulers.append(s)

    @property
    def bound(self) -> bool:
        return bool(self._optimizers)

    def set_scale(self, scale: float) -> None:
        """Make the effective LR `scale` × the vendor's LR (relative to the unscaled schedule)."""
        factor = float(scale) / self.scale
        if factor != 1.0:
            for opt in self._optimizers:
                for group in opt.param_groups:
                    group["lr"] = group["lr"] * factor
                    if "initial_lr" in group:
                        group["initial_lr"] = group["initial_lr"] * factor
            for sched in self._schedulers:
                sched.base_lrs = [b * factor for b in sched.base_lrs]
        self.scale = float(scale)
