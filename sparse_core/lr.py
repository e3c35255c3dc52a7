"""Learning-rate scaling that composes with the training loop's own schedule (README "sparse_core API", `bind`):
a multiplier on every place a vendor derives its LR from (SNGAN's LambdaLR rewrites `lr` from `base_lrs` each step,
StyleGAN2-ADA pre-multiplies it by `mb_ratio`), never an absolute value. The scale already applied travels in each
param group (`MARK`) and scheduler state_dict: a fresh optimizer gets the whole scale, a restored one only the
difference, and binding again never compounds it."""
from typing import Sequence

import torch

MARK = "sparse_core_lr_scale"          # param-group key
_SCHED_MARK = "_sparse_core_lr_scale"  # scheduler attribute (in its state_dict via __dict__)


class LRScaler:
    def __init__(self, scale: float = 1.0) -> None:
        self.scale = float(scale)
        self.optimizer: torch.optim.Optimizer | None = None   # the bound one
        self._schedulers: list = []

    def bind(self, optimizer: torch.optim.Optimizer | None = None, schedulers: Sequence | None = None) -> None:
        """Replace the bound optimizer (one per network) and/or its schedulers, then apply the current scale; a new
        optimizer drops the old one's schedulers unless new ones are given (they drive the discarded one)."""
        if optimizer is not None and optimizer is not self.optimizer:
            if not isinstance(optimizer, torch.optim.Optimizer):
                raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
            self.optimizer = optimizer
            if schedulers is None:
                self._schedulers = [s for s in self._schedulers if getattr(s, "optimizer", None) is optimizer]
        if schedulers is not None:
            for s in schedulers:
                if not hasattr(s, "base_lrs"):
                    raise TypeError(f"scheduler {type(s).__name__} has no base_lrs; cannot compose an LR scale with it")
            self._schedulers = list(schedulers)
        self._apply()

    def set_scale(self, scale: float) -> None:
        """Make the effective LR `scale` × the vendor's LR (relative to the unscaled schedule)."""
        self.scale = float(scale)
        self._apply()

    def _apply(self) -> None:
        for group in self.optimizer.param_groups if self.optimizer is not None else ():
            factor = self.scale / float(group.get(MARK, 1.0))
            if factor != 1.0:
                group["lr"] = group["lr"] * factor
                if "initial_lr" in group:
                    group["initial_lr"] = group["initial_lr"] * factor
            group[MARK] = self.scale
        for sched in self._schedulers:
            factor = self.scale / float(getattr(sched, _SCHED_MARK, 1.0))
            if factor != 1.0:
                sched.base_lrs = [b * factor for b in sched.base_lrs]
            setattr(sched, _SCHED_MARK, self.scale)
