"""RG-GAN building blocks: threshold-masked forward, regulariser, reset rule, augmented regeneration.

Forward masking without changing checkpoint keys: a forward pre-hook swaps the module's parameter entry
for `W ⊙ step(|W| − t)` for the duration of the call and a forward hook (always called, also on error)
puts the parameter back. The module's code keeps reading `self.weight` (or `self.weight_orig`, which a
spectral-norm pre-hook then normalises: ours is prepended so it runs first), the parameter stays the leaf
the optimizer and DDP know, and the state_dict keys stay the vendor's own plus `<attr>_threshold`.
The hooks are module-level functions and the per-module state is a small picklable object, so
`deepcopy`, pickling and DDP see no closures.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
from torch import nn

from . import ops


@dataclasses.dataclass
class ThresholdState:
    """Per-module RG-GAN settings; `active` False means dense (all masks one, thresholds unused)."""

    attrs: tuple[tuple[str, int], ...]   # (attribute, output-channel dim) of each threshold-masked tensor
    official: bool = False
    active: bool = True
    stash: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def __deepcopy__(self, memo):
        return ThresholdState(self.attrs, self.official, self.active)

    def __getstate__(self):
        return {"attrs": self.attrs, "official": self.official, "active": self.active}

    def __setstate__(self, state):
        self.__init__(**state)


STATE_ATTR = "_rg_threshold_state"


def _pre_hook(module: nn.Module, args):
    st: ThresholdState = module.__dict__.get(STATE_ATTR)
    if st is None or not st.active:
        return None
    for attr, dim in st.attrs:
        w = module._parameters[attr]
        t = module._parameters[attr + "_threshold"]
        st.stash[attr] = w
        module._parameters[attr] = ops.threshold_masked_weight(w, t, channel_dim=dim, official=st.official)
    return None


def _post_hook(module: nn.Module, args, output):
    st: ThresholdState = module.__dict__.get(STATE_ATTR)
    if st is not None:
        for attr, w in st.stash.items():
            module._parameters[attr] = w
        st.stash.clear()
    return None


def install(module: nn.Module, attrs: Sequence[tuple[str, int]], official: bool) -> None:
    """Add zero-initialised thresholds (one per output channel) and the masking hooks to `module`."""
    for attr, dim in attrs:
        w = module._parameters[attr]
        module.register_parameter(attr + "_threshold",
                                  nn.Parameter(torch.zeros(w.shape[dim], device=w.device, dtype=w.dtype)))
    module.__dict__[STATE_ATTR] = ThresholdState(tuple(attrs), official)
    module.register_forward_pre_hook(_pre_hook, prepend=True)
    module.register_forward_hook(_post_hook, always_call=True)


def uninstall(module: nn.Module) -> None:
    """Remove thresholds and hooks (used on exported copies)."""
    st = module.__dict__.pop(STATE_ATTR, None)
    if st is None:
        return
    for attr, _ in st.attrs:
        module._parameters.pop(attr + "_threshold", None)
    for hooks in (module._forward_pre_hooks, module._forward_hooks):
        for key in [k for k, fn in hooks.items() if fn in (_pre_hook, _post_hook)]:
            hooks.pop(key)
            getattr(module, "_forward_hooks_always_called", {}).pop(key, None)


def state_of(module: nn.Module) -> ThresholdState | None:
    return module.__dict__.get(STATE_ATTR)


def hard_mask(w: torch.Tensor, t: torch.Tensor, dim: int) -> torch.Tensor:
    """The forward mask step(|w| − t) as a bool tensor (no autograd)."""
    shape = [1] * w.ndim
    shape[dim] = -1
    return w.detach().abs() > t.detach().view(shape)


def regularizer(thresholds: Sequence[torch.Tensor], lam: float) -> torch.Tensor:
    """λ · Σ_layers Σ_i exp(−t_i)."""
    total = sum(torch.exp(-t).sum() for t in thresholds)
    return total * lam


def apply_reset_rule(keep: torch.Tensor, t: torch.Tensor, reset_density: float) -> torch.Tensor:
    """Reset a layer's thresholds to 0 when its kept fraction is <= reset_density. Returns the layer's density.

    `keep` is the mask the forward of this step used. Branch-free (torch.where on a 0-d condition), so it costs
    no host/device synchronisation per step; after a reset the density is reported as 1 until the next step.
    """
    with torch.no_grad():
        density = keep.sum() / keep.numel()
        reset = density <= reset_density
        t.copy_(torch.where(reset, torch.zeros_like(t), t))
        return torch.where(reset, torch.ones_like(density), density)


def regeneration_decision(history: Sequence[float], weights: Sequence[float]) -> str | None:
    """Augmented regeneration: 'sparse' while the metric still improves, 'dense' otherwise, None if too early.

    With f_0 the newest value, m = Σ weights[k] · f_{k−4}; m >= f_0 (lower is better, the newest value is no
    worse than the weighted recent mean) means still improving: keep training sparse; else regenerate densely.
    """
    n = len(weights)
    if len(history) < n:
        return None
    recent = [float(v) for v in history[-n:]]
    mean = sum(w * f for w, f in zip(weights, recent))
    return "sparse" if mean >= recent[-1] else "dense"
