"""RG-GAN building blocks: threshold-masked forward, regulariser, reset rule, augmented regeneration.

Forward masking without changing checkpoint keys: a forward pre-hook replaces the weight the module's code
reads by `W ⊙ step(|W| − t)` for the duration of the call and a forward hook (always called, also on error)
puts it back. Plain layers: the parameter entry itself is swapped (the module keeps reading `self.weight`,
the parameter stays the leaf the optimizer and DDP know). Layers whose weight a norm hook derives
(old-API spectral_norm: `weight = weight_orig / σ`; weight_norm: `g · v / ‖v‖`): our hook runs after the
norm's and masks the derived `weight`, so σ comes from the unmasked weight and the mask compares
|W_orig / σ| with t, as the official code (spectral_norm wrapped around its masked conv) does.
The reset rule runs in the same pre-hook, before the mask is used: a layer whose mask would keep
<= reset_density of its entries has its thresholds set to 0 first. It runs in every forward of every copy
that carries the hooks, G_ema included.
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

    # (trainable attribute, output-channel dim, derived attribute the forward reads or None)
    attrs: tuple[tuple[str, int, str | None], ...]
    official: bool = False
    active: bool = True
    reset_density: float = 0.01
    stash: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def __deepcopy__(self, memo):
        return ThresholdState(self.attrs, self.official, self.active, self.reset_density)

    def __getstate__(self):
        return {"attrs": self.attrs, "official": self.official, "active": self.active,
                "reset_density": self.reset_density}

    def __setstate__(self, state):
        attrs = tuple(a if len(a) == 3 else (a[0], a[1], None) for a in state["attrs"])
        self.__init__(attrs, state["official"], state["active"], state.get("reset_density", 0.01))


STATE_ATTR = "_rg_threshold_state"


def effective_weight(module: nn.Module, attr: str, derived: str | None) -> torch.Tensor:
    """The unmasked weight the mask is computed on (outside a forward: the last forward's derived weight)."""
    return module._parameters[attr] if derived is None else module.__dict__[derived]


@torch.no_grad()
def reset_collapsed(w: torch.Tensor, t: torch.Tensor, dim: int, reset_density: float) -> None:
    """Set t to 0 when step(|w| − t) keeps <= reset_density of w. Branch-free (no host sync); writes through
    .data so a graph that saved t in an earlier forward of this step is not invalidated."""
    keep = hard_mask(w, t, dim)
    collapsed = keep.sum() <= reset_density * keep.numel()
    t.data.copy_(torch.where(collapsed, torch.zeros_like(t), t))


def _pre_hook(module: nn.Module, args):
    st: ThresholdState = module.__dict__.get(STATE_ATTR)
    if st is None or not st.active:
        return None
    for attr, dim, derived in st.attrs:
        t = module._parameters[attr + "_threshold"]
        w = effective_weight(module, attr, derived)
        masked = ops.threshold_masked_weight(w, t, channel_dim=dim, official=st.official,
                                             reset_density=st.reset_density)  # reset rule fused into the pass
        if derived is None:
            st.stash[attr] = w
            module._parameters[attr] = masked
        else:
            st.stash[derived] = w
            module.__dict__[derived] = masked
    return None


def _post_hook(module: nn.Module, args, output):
    st: ThresholdState = module.__dict__.get(STATE_ATTR)
    if st is not None:
        for key, w in st.stash.items():
            if key in module._parameters:
                module._parameters[key] = w
            else:
                module.__dict__[key] = w
        st.stash.clear()
    return None


def install(module: nn.Module, attrs: Sequence[tuple[str, int, str | None]], official: bool,
            reset_density: float = 0.01) -> None:
    """Add zero-initialised thresholds (one per output channel) and the masking hooks to `module`.

    Appended after existing pre-hooks: a norm hook that derives the weight must run before ours.
    """
    for attr, dim, _ in attrs:
        w = module._parameters[attr]
        module.register_parameter(attr + "_threshold",
                                  nn.Parameter(torch.zeros(w.shape[dim], device=w.device, dtype=w.dtype)))
    module.__dict__[STATE_ATTR] = ThresholdState(tuple(attrs), official, True, float(reset_density))
    module.register_forward_pre_hook(_pre_hook)
    module.register_forward_hook(_post_hook, always_call=True)
    module.register_load_state_dict_pre_hook(_fill_missing_thresholds)


def _fill_missing_thresholds(module, state_dict, prefix, *args):
    """A state_dict without this layer's thresholds (a dense or Re-GAN run's) loads with the current ones
    (0 at prepare); whether such a snapshot may start this run is decided on the controller's state."""
    st = module.__dict__.get(STATE_ATTR)
    if st is None:
        return
    for attr, _, _ in st.attrs:
        key = prefix + attr + "_threshold"
        if key not in state_dict:
            state_dict[key] = module._parameters[attr + "_threshold"].detach().clone()


def uninstall(module: nn.Module) -> None:
    """Remove thresholds and hooks (used on exported copies)."""
    st = module.__dict__.pop(STATE_ATTR, None)
    if st is None:
        return
    for attr, _, _ in st.attrs:
        module._parameters.pop(attr + "_threshold", None)
    for hooks in (module._forward_pre_hooks, module._forward_hooks):
        for key in [k for k, fn in hooks.items() if fn in (_pre_hook, _post_hook)]:
            hooks.pop(key)
            getattr(module, "_forward_hooks_always_called", {}).pop(key, None)
    hooks = module._load_state_dict_pre_hooks
    for key in [k for k, h in hooks.items() if getattr(h, "hook", h) is _fill_missing_thresholds]:
        hooks.pop(key)


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
