"""RG-GAN (Saxena et al., AAAI 2024): learned per-output-channel thresholds (dynamic pruning), the reset
rule (recurrent regeneration) and metric-driven switches between sparse and dense training (augmented
regeneration). Thresholds are parameters of the networks; see sparse_core.rggan for the forward."""
from __future__ import annotations

import torch

from .. import rggan as R
from ..config import ConfigError, RGGANConfig
from . import register
from .base import Flag, Method
from .shared import finite_float, scope_flags


@register
class RGGAN(Method):
    name = "rggan"
    config_cls = RGGANConfig
    flags = (
        Flag("--rg-lambda", "rg_lambda", finite_float, 5e-12, "RG-GAN: sparsity regulariser λ (default 5e-12; "
             "official code: 1e-12)", "lam"),
        Flag("--rg-official", "rg_official", bool, False, "RG-GAN: official code's detached mask (comparison only)",
             "official"),
        Flag("--rg-no-augmented", "rg_no_augmented", bool, False,
             "RG-GAN: disable augmented regeneration (DP+RR only)", "augmented", parse=lambda v: not v),
    ) + scope_flags()

    @classmethod
    def config_from_flags(cls, values: dict):
        values = dict(values)
        if not values.get("rg_no_augmented"):
            values["rg_no_augmented"] = None       # leave the config default
        return super().config_from_flags(values)

    # ------------------------------------------------------------------ attaching
    def attach(self) -> None:
        c = self.ctrl
        for n in c.targets:
            for s in c.sites[n]:
                if s.kind == "param":
                    raise ConfigError(
                        f"RG-GAN cannot threshold {n} layer {s.layer!r}: its weight is a torch.nn.utils.parametrize "
                        f"parametrization ({s.name}); use torch.nn.utils.spectral_norm / weight_norm (old API) "
                        f"or exclude it")
            self._install(c.nets[n], n)
        self._mode = "sparse"
        self._density = {(n, s.layer): 1.0 for n in c.targets for s in c.sites[n]}
        self._stash: dict[str, list] = {}

    def _install(self, net, net_name: str) -> set[str]:
        """Thresholds on every owner of `net` that lacks them; returns the owners that got new ones."""
        fresh: set[str] = set()
        by_owner: dict[str, list] = {}
        for s in self.ctrl.sites[net_name]:
            by_owner.setdefault(s.module_name, []).append(s)
        for owner, sites in by_owner.items():
            module = net.get_submodule(owner) if owner else net
            if R.state_of(module) is None:
                R.install(module, [(s.attr, s.channel_dim, s.derived_attr) for s in sites], self.config.official,
                          self.config.reset_density)
                fresh.add(owner)
        return fresh

    @torch.no_grad()
    def attach_ema(self, G_ema) -> None:
        c = self.ctrl
        if "G" not in c.targets:
            return
        # A copy made after prepare() (or restored from a snapshot) already holds its thresholds: keep them.
        # Only a copy made before prepare() gets thresholds here, initialised from G's.
        fresh = self._install(G_ema, "G")
        for s in c.sites["G"]:
            m, m_ema = s.module(c.nets["G"]), s.module(G_ema)
            if s.threshold_attr not in m_ema._parameters:
                raise ConfigError(f"G_ema module {s.module_name!r} has RG-GAN hooks but no {s.threshold_attr}")
            if s.module_name in fresh:
                m_ema._parameters[s.threshold_attr].copy_(m._parameters[s.threshold_attr])
        self._set_mode(self._mode)

    def added_parameters(self):
        c = self.ctrl
        return [self._threshold(c.nets[n], s) for n in c.targets for s in c.sites[n]]

    def _set_mode(self, mode: str) -> None:
        self._mode = mode
        c = self.ctrl
        nets = [c.nets[n] for n in c.targets] + ([c.G_ema] if c.G_ema is not None else [])
        for net in nets:
            for m in net.modules():
                st = R.state_of(m)
                if st is not None:
                    st.active = mode == "sparse"

    def phase(self) -> str:
        return self._mode

    def _threshold(self, net, s) -> torch.Tensor:
        return s.module(net)._parameters[s.threshold_attr]

    def _keep(self, net, s) -> torch.Tensor:
        m = s.module(net)
        return R.hard_mask(R.effective_weight(m, s.attr, s.derived_attr), m._parameters[s.threshold_attr],
                           s.channel_dim)

    # ------------------------------------------------------------------ training loop
    def before_step(self, net_name: str) -> None:
        c = self.ctrl
        if net_name not in c.targets or self._mode != "sparse":
            return
        net = c.nets[net_name]
        # Snapshot what must stay frozen: the optimizer (momentum, weight decay) may move entries with zero grad.
        self._stash[net_name] = [(s.param(net).detach().clone(), self._keep(net, s)) for s in c.sites[net_name]]

    @torch.no_grad()
    def after_step(self, net_name: str) -> None:
        c = self.ctrl
        if net_name not in c.targets or self._mode != "sparse":
            return
        stash = self._stash.pop(net_name, None)
        if stash is None:
            raise RuntimeError(f"after_step({net_name!r}) without before_step({net_name!r})")
        net = c.nets[net_name]
        for s, (w_before, keep) in zip(c.sites[net_name], stash):
            w = s.param(net)
            torch.where(keep, w, w_before, out=w)   # in place: no temporary of the weight's size
            self._density[(net_name, s.layer)] = keep.sum() / keep.numel()   # 0-d tensor: no host sync

    def regularizer(self, net_name: str):
        c = self.ctrl
        if net_name not in c.targets or self._mode != "sparse":
            return None
        return R.regularizer([self._threshold(c.nets[net_name], s) for s in c.sites[net_name]], self.config.lam)

    def on_metric(self, history):
        if not self.config.augmented:
            return None
        decision = R.regeneration_decision(history, self.config.history_weights)
        if decision is not None and decision != self._mode:
            self._set_mode(decision)
        return self._mode

    # ------------------------------------------------------------------ reporting
    def owner_density(self, net_name: str, layer: str):
        return self._density.get((net_name, layer), 1.0) if self._mode == "sparse" else 1.0

    @torch.no_grad()
    def layer_density(self, net_name: str) -> dict[str, float]:
        net = self.ctrl.nets[net_name]
        return {s.name: float(self._keep(net, s).float().mean()) if self._mode == "sparse" else 1.0
                for s in self.ctrl.sites.get(net_name, [])}

    def stats(self) -> dict:
        c = self.ctrl
        out = {}
        for n in c.targets:
            ts = [self._threshold(c.nets[n], s).detach().flatten() for s in c.sites[n]]
            out[f"sparse/{n}/threshold_mean"] = float(torch.cat(ts).mean())
        return out

    # ------------------------------------------------------------------ export / persistence
    @torch.no_grad()
    def export_site(self, module, s, sparse: bool) -> None:
        if sparse:
            p = module._parameters[s.attr]
            t = module._parameters[s.threshold_attr]
            if s.kind == "plain":
                p.mul_(R.hard_mask(p, t, s.channel_dim).to(p.dtype))
            elif s.kind == "sn":
                _export_spectral_norm(module, s, t)
            elif s.kind == "wn":
                _export_weight_norm(module, s, t)
        R.uninstall(module)

    def tensors(self):
        c = self.ctrl
        for n in c.targets:
            for s in c.sites[n]:
                yield (f"{n}/{s.module_name + '.' if s.module_name else ''}{s.threshold_attr}",
                       self._threshold(c.nets[n], s))

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict, phase: str) -> None:
        c = self.ctrl
        self._density = {(n, s.layer): 1.0 for n in c.targets for s in c.sites[n]}
        self._set_mode(phase)


def _sn_sigma(module, hook) -> torch.Tensor:
    """σ as the old spectral_norm computes it without a power iteration (eval mode): uᵀ W v."""
    w = module._parameters[hook.name + "_orig"]
    mat = hook.reshape_weight_to_matrix(w)
    return torch.dot(module._buffers[hook.name + "_u"], torch.mv(mat, module._buffers[hook.name + "_v"]))


def _norm_hook(module, cls):
    return next(h for h in module._forward_pre_hooks.values() if isinstance(h, cls))


def _export_spectral_norm(module, s, t) -> None:
    """weight_orig ⊙ M with M = step(|W_orig/σ| − t); u is rescaled so that the eval-mode σ of the masked
    weight equals the trained σ, i.e. the exported layer computes (W_orig/σ) ⊙ M exactly (in eval mode)."""
    from torch.nn.utils.spectral_norm import SpectralNorm
    hook = _norm_hook(module, SpectralNorm)
    w = module._parameters[s.attr]
    sigma = _sn_sigma(module, hook)
    w.mul_(R.hard_mask(w / sigma, t, s.channel_dim).to(w.dtype))
    sigma_masked = _sn_sigma(module, hook)
    if float(sigma_masked) != 0.0:
        module._buffers[hook.name + "_u"].mul_(sigma / sigma_masked)


def _export_weight_norm(module, s, t) -> None:
    """v ⊙ M with M = step(|g·v/‖v‖| − t); g is rescaled by ‖v ⊙ M‖ / ‖v‖ so g·(v⊙M)/‖v⊙M‖ = (g·v/‖v‖) ⊙ M."""
    from torch.nn.utils.weight_norm import WeightNorm
    hook = _norm_hook(module, WeightNorm)
    v, g = module._parameters[hook.name + "_v"], module._parameters[hook.name + "_g"]
    before = torch.norm_except_dim(v, 2, hook.dim)
    v.mul_(R.hard_mask(g * v / before, t, s.channel_dim).to(v.dtype))
    after = torch.norm_except_dim(v, 2, hook.dim)
    g.mul_(torch.where(after > 0, after / before, torch.zeros_like(after)))
