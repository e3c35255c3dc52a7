"""RG-GAN (Saxena et al., AAAI 2024): learned per-output-channel thresholds (dynamic pruning), the reset rule
(recurrent regeneration) and metric-driven switches between sparse and dense training (augmented regeneration).

A forward pre-hook, registered after every other pre-hook, swaps the weight the forward reads (the parameter, or
the attribute a pre-hook derives: spectral / weight norm, equalised LR) for `W ⊙ step(|W| − t)` during the call;
a forward hook (always called) puts it back, so checkpoint keys do not change. The reset rule runs in the same
pre-hook, in every copy that carries the hooks (G_ema too). Hooks are module-level functions and the per-module
state a small picklable object: deepcopy, pickling (also through `__reduce__` arguments) and DDP see no closures.
"""
import dataclasses
from typing import Sequence

import torch
from torch import nn

from .. import ops
from ..config import SparseConfig, number, require
from ..ops.reference import collapsed, hard_mask
from ..selection import Site, SpectralNorm, WeightNorm, run_pre_hooks
from .base import Flag, Method, register, track_own_state
from .shared import finite_float, scope_flags

STATE_ATTR = "_rg_threshold_state"


@dataclasses.dataclass(frozen=True)
class RGGANConfig(SparseConfig):
    """reset_density: a layer keeping no more than this is reset to t = 0 (the reset rule); the other fields are set
    by flags of RGGAN.flags (`Flag.field`), whose help says what each does. Default target: both."""

    lam: float = 5e-12
    reset_density: float = 0.01
    official: bool = False
    augmented: bool = True
    target: str = "both"

    method = "rggan"
    scopes = ("weights",)   # thresholds are per output channel of conv / linear weights
    history_weights = (0.1, 0.1, 0.2, 0.2, 0.4)   # f_-4 .. f_0 in augmented regeneration (official code)

    def __post_init__(self) -> None:
        require(number(self.lam) and self.lam >= 0, f"lam (rg-lambda) must be a finite number >= 0, got {self.lam!r}")
        require(number(self.reset_density) and 0 <= self.reset_density < 1,
                f"reset_density must be in [0, 1), got {self.reset_density!r}")
        super().__post_init__()


# ---------------------------------------------------------------------------------------------- the forward
@dataclasses.dataclass
class ThresholdState:
    """Per-module settings: `attrs` (attribute, output-channel dim, derived attribute | None); `active` False: dense;
    `stash`: the unmasked weights during a call (empty between calls: copies and pickles carry none)."""

    attrs: tuple[tuple[str, int, str | None], ...]
    official: bool = False
    active: bool = True
    reset_density: float = 0.01
    stash: dict = dataclasses.field(default_factory=dict)


def effective_weight(module: nn.Module, attr: str, derived: str | None, next_forward: bool = False) -> torch.Tensor:
    """The unmasked weight the last forward's mask was computed on, or the one the next forward will read (derived
    again by the module's own pre-hooks; nothing kept)."""
    if derived is None or not next_forward:
        return module._parameters[attr] if derived is None else module.__dict__[derived]
    hooks = [(k, h) for k, h in module._forward_pre_hooks.items() if not getattr(h, "sparse_core_hook", False)]
    return run_pre_hooks(module, hooks)[derived]


def _pre_hook(module: nn.Module, args):
    st: ThresholdState = module.__dict__.get(STATE_ATTR)
    if st is None or not st.active:
        return
    for attr, dim, derived in st.attrs:
        t = module._parameters[attr + "_threshold"]
        w = effective_weight(module, attr, derived)
        masked = ops.threshold_masked_weight(w, t, channel_dim=dim, official=st.official,
                                             reset_density=st.reset_density)  # reset rule fused into the pass
        st.stash[derived or attr] = w
        (module._parameters if derived is None else module.__dict__)[derived or attr] = masked


def _post_hook(module: nn.Module, args, output):
    st: ThresholdState = module.__dict__.get(STATE_ATTR)
    if st is not None:
        for key, w in st.stash.items():
            (module._parameters if key in module._parameters else module.__dict__)[key] = w
        st.stash.clear()


_pre_hook.sparse_core_hook = _post_hook.sparse_core_hook = True


def install(module: nn.Module, attrs: Sequence[tuple[str, int, str | None]], official: bool, reset_density: float,
            thresholds: dict | None = None) -> None:
    """Zero thresholds per output channel (or the shared `thresholds` {attr: parameter}) and the masking hooks."""
    for attr, dim, _ in attrs:
        w = module._parameters[attr]
        t = (thresholds or {}).get(attr)
        module.register_parameter(attr + "_threshold", t if t is not None else nn.Parameter(
            torch.zeros(w.shape[dim], device=w.device, dtype=w.dtype)))
    module.__dict__[STATE_ATTR] = ThresholdState(tuple(attrs), official, True, float(reset_density))
    module.register_forward_pre_hook(_pre_hook)
    module.register_forward_hook(_post_hook, always_call=True)
    track_own_state(module)


def uninstall(module: nn.Module) -> None:
    st = module.__dict__.pop(STATE_ATTR, None)
    if st is None:
        return
    for attr, _, _ in st.attrs:
        module._parameters.pop(attr + "_threshold", None)
    for hooks in (module._forward_pre_hooks, module._forward_hooks):
        for key in [k for k, fn in hooks.items() if fn in (_pre_hook, _post_hook)]:
            hooks.pop(key)
            getattr(module, "_forward_hooks_always_called", {}).pop(key, None)
    track_own_state(module)


def state_of(module: nn.Module) -> ThresholdState | None:
    return module.__dict__.get(STATE_ATTR)


def regeneration_decision(history: Sequence[float], weights: Sequence[float]) -> str | None:
    """Augmented regeneration on `history` (lower is better): 'sparse' while Σ weights[k]·f_{k−4} >= f_0 (the
    newest value is no worse than the weighted recent mean), else 'dense'; None before len(weights) values."""
    n = len(weights)
    if len(history) < n:
        return None
    recent = [float(v) for v in history[-n:]]
    return "sparse" if sum(w * f for w, f in zip(weights, recent)) >= recent[-1] else "dense"


# ---------------------------------------------------------------------------------------------- the method
@register
class RGGAN(Method):
    name = "rggan"
    config_cls = RGGANConfig
    phases = ("sparse", "dense")
    flags = (
        Flag("--rg-lambda", "rg_lambda", finite_float, 5e-12, "RG-GAN: sparsity regulariser λ (default 5e-12, the "
             "paper's; official code: 1e-12)", "lam"),
        Flag("--rg-official", "rg_official", bool, False, "RG-GAN: official code's detached mask (comparison only)",
             "official"),
        Flag("--rg-no-augmented", "rg_no_augmented", bool, False,
             "RG-GAN: disable augmented regeneration (DP+RR only)", "augmented", parse=lambda v: not v),
    ) + scope_flags()

    @property
    def uses_metric(self) -> bool:
        return bool(self.config.augmented)

    def attach(self) -> None:
        c = self.ctx
        for n in c.targets:
            for s in c.sites[n]:
                require(s.kind != "param", f"RG-GAN cannot threshold {n} layer {s.layer!r}: its weight is a "
                        f"torch.nn.utils.parametrize parametrization ({s.name}); use torch.nn.utils.spectral_norm / "
                        f"weight_norm (old API) or exclude it (exclude=[{s.layer!r}])")
            self._install(c.nets[n], n)
        self._mode = "sparse"
        self._density = {(n, s.layer): 1.0 for n in c.targets for s in c.sites[n]}
        self._stash: dict[str, list] = {}

    def _install(self, net: nn.Module, net_name: str, values_of: nn.Module | None = None) -> None:
        """Thresholds on every owner of `net` lacking them (zero, or `values_of`'s) and on the other holders of its
        tensor (tied weights)."""
        by_owner = {}
        for s in self.ctx.sites[net_name]:
            by_owner.setdefault(s.module_name, []).append(s)
        holders: dict[int, list[tuple[nn.Module, str]]] = {}
        for m in net.modules():
            for a, p in m._parameters.items():
                if p is not None:
                    holders.setdefault(id(p), []).append((m, a))
        args = (self.config.official, self.config.reset_density)
        for owner, sites in by_owner.items():
            module = net.get_submodule(owner)
            if state_of(module) is not None:
                continue
            install(module, [(s.attr, s.channel_dim, s.derived) for s in sites], *args)
            for s in sites:
                if values_of is not None:
                    module._parameters[s.threshold_attr].copy_(s.module(values_of)._parameters[s.threshold_attr])
                for other, a in holders[id(module._parameters[s.attr])]:
                    if other is not module and state_of(other) is None:
                        install(other, [(a, s.channel_dim, None)], *args, {a: module._parameters[s.threshold_attr]})

    @torch.no_grad()
    def attach_ema(self) -> None:
        """A G_ema copied after prepare() (or restored) keeps its thresholds; one copied before gets G's."""
        c = self.ctx
        if "G" not in c.targets or c.ema.module is None:
            return
        self._install(c.ema.module, "G", values_of=c.nets["G"])
        for s in c.sites["G"]:
            require(s.threshold_attr in s.module(c.ema.module)._parameters,
                    f"G_ema module {s.module_name!r} has RG-GAN hooks but no {s.threshold_attr}")
        self._set_mode(self._mode)

    def added_parameters(self, net_name: str | None = None):
        return [t for _, _, t in self._thresholds(net_name)]

    def _set_mode(self, mode: str) -> None:
        self._mode = mode
        c = self.ctx
        for net in [c.nets[n] for n in c.targets] + ([c.ema.module] if c.ema.module is not None else []):
            for m in net.modules():
                if state_of(m) is not None:
                    state_of(m).active = mode == "sparse" and not c.paused

    def set_paused(self, paused: bool) -> None:
        self._set_mode(self._mode)   # thresholds leave (or rejoin) the forward

    def phase(self) -> str:
        return self._mode

    def _thresholds(self, net_name: str | None = None) -> list[tuple[str, Site, torch.Tensor]]:
        return [(n, s, self.ctx.module(n, s)._parameters[s.threshold_attr]) for n, s in self.ctx.each(net_name)]

    def _keep(self, m: nn.Module, s: Site, next_forward: bool = False) -> torch.Tensor:
        """The mask of site `s` of module `m`: the last forward's, or the next one's (before the reset rule)."""
        w = effective_weight(m, s.attr, s.derived, next_forward)
        return hard_mask(w, m._parameters[s.threshold_attr], s.channel_dim)

    def _next_density(self, net_name: str, s: Site) -> torch.Tensor:
        """Kept fraction of the next forward's mask, the reset rule included (0-d float64 tensor, no host sync)."""
        keep = self._keep(self.ctx.module(net_name, s), s, next_forward=True)
        d = keep.sum().double() / keep.numel()
        return torch.where(collapsed(keep, self.config.reset_density), torch.ones_like(d), d)

    # ------------------------------------------------------------------ training loop
    def before_step(self, net_name: str) -> None:
        c = self.ctx
        if net_name in c.targets and self._mode == "sparse":   # frozen across the step: Adam may move pruned entries
            self._stash[net_name] = [(c.param(net_name, s).detach().clone(), self._keep(c.module(net_name, s), s))
                                     for s in c.sites[net_name]]

    @torch.no_grad()
    def after_step(self, net_name: str) -> None:
        c = self.ctx
        if net_name not in c.targets or self._mode != "sparse":
            return
        stash = self._stash.pop(net_name, None)
        if stash is None:
            raise RuntimeError(f"after_step({net_name!r}) without before_step({net_name!r})")
        for s, (w_before, keep) in zip(c.sites[net_name], stash):
            w = s.param(c.nets[net_name])
            torch.where(keep, w, w_before, out=w)   # in place: no temporary of the weight's size
            # FLOPs of the coming forwards, at the float32 ratio: totals resume bit-exactly (density × integer)
            self._density[(net_name, s.layer)] = self._next_density(net_name, s).float()

    def regularizer(self, net_name: str):
        if net_name not in self.ctx.targets or self._mode != "sparse":
            return None
        return sum(torch.exp(-t).sum() for _, _, t in self._thresholds(net_name)) * self.config.lam

    def on_metric(self, history):
        if not self.config.augmented:
            return None
        decision = regeneration_decision(history, self.config.history_weights)
        if decision is not None and decision != self._mode:
            self._set_mode(decision)
        return self._mode

    # ------------------------------------------------------------------ reporting
    def owner_density(self, net_name: str, layer: str):
        return self._density.get((net_name, layer), 1.0) if self._mode == "sparse" else 1.0

    @torch.no_grad()
    def layer_density(self, net_name: str) -> dict[str, float]:
        return {s.name: float(self._next_density(net_name, s)) if self._mode == "sparse" else 1.0
                for s in self.ctx.sites.get(net_name, [])}

    def stats(self) -> dict:
        means = {n: torch.cat([t.detach().flatten() for _, _, t in self._thresholds(n)]).float().mean()
                 for n in self.ctx.targets}
        return {f"sparse/{n}/threshold_mean": float(m) for n, m in means.items()}

    # ------------------------------------------------------------------ export / persistence
    @torch.no_grad()
    def export_site(self, module: nn.Module, s: Site, sparse: bool) -> None:
        # also while dense: the model the thresholds define; a collapsed layer stays dense (the reset rule)
        p, t = module._parameters[s.attr], module._parameters[s.threshold_attr]
        keep = self._keep(module, s, next_forward=True)
        if sparse and not bool(collapsed(keep, self.config.reset_density)):
            if s.kind == "sn":
                _export_spectral_norm(module, s, t)
            elif s.kind == "wn":
                _export_weight_norm(module, s, t)
            else:   # plain, or a derivation masking commutes with (selection's probe)
                p.mul_(keep.to(p.dtype))

    def export_done(self, net: nn.Module) -> None:
        for m in net.modules():   # every layer with thresholds and hooks (tied weights: several per site)
            uninstall(m)

    def tensors(self):
        return ((s.key(n, s.threshold_attr), t) for n, s, t in self._thresholds())

    def state_dict(self) -> dict:
        # the densities the next forwards are charged at, so FLOPs continue exactly after a resume
        return {"owner_density": {f"{n}/{layer}": float(d) for (n, layer), d in self._density.items()}}

    def check_state(self, state: dict) -> None:
        d = state.get("owner_density", {})
        require(isinstance(d, dict) and all(isinstance(k, str) and number(v) and 0 <= v <= 1 for k, v in d.items()),
                "entry 'method_state.owner_density' must map layer names to densities in [0, 1]")

    def load_state_dict(self, state: dict, phase: str) -> None:
        saved = state.get("owner_density", {})
        self._density = {(n, layer): float(saved.get(f"{n}/{layer}", 1.0)) for n, layer in self._density}
        self._set_mode(phase)


def _norm_hook(module: nn.Module, cls):
    return next(h for h in module._forward_pre_hooks.values() if isinstance(h, cls))


def _export_spectral_norm(module: nn.Module, s: Site, t: torch.Tensor) -> None:
    """weight_orig ⊙ step(|W_orig/σ| − t), u rescaled so the eval-mode σ of the masked weight is the trained σ:
    the exported layer computes (W_orig/σ) ⊙ M exactly (eval mode)."""
    hook = _norm_hook(module, SpectralNorm)
    w, u, v = module._parameters[s.attr], module._buffers[hook.name + "_u"], module._buffers[hook.name + "_v"]

    def sigma():   # as the old spectral_norm computes it without a power iteration (eval mode): uᵀ W v
        return torch.dot(u, torch.mv(hook.reshape_weight_to_matrix(w), v))
    before = sigma()
    w.mul_(hard_mask(w / before, t, s.channel_dim).to(w.dtype))
    after = sigma()
    if float(after) != 0.0:
        u.mul_(before / after)


def _export_weight_norm(module: nn.Module, s: Site, t: torch.Tensor) -> None:
    """v ⊙ M with M = step(|g·v/‖v‖| − t); g rescaled by ‖v ⊙ M‖ / ‖v‖ so g·(v⊙M)/‖v⊙M‖ = (g·v/‖v‖) ⊙ M."""
    hook = _norm_hook(module, WeightNorm)
    v, g = module._parameters[hook.name + "_v"], module._parameters[hook.name + "_g"]
    before = torch.norm_except_dim(v, 2, hook.dim)
    v.mul_(hard_mask(g * v / before, t, s.channel_dim).to(v.dtype))
    after = torch.norm_except_dim(v, 2, hook.dim)
    g.mul_(torch.where(after > 0, after / before, torch.zeros_like(after)))
