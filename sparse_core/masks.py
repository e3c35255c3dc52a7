"""Fixed-pattern masks (Re-GAN, tickets): `<attr>_mask` buffers next to the masked tensors.

The buffers are in the networks' state_dicts (and in the controller's). A load pre-hook lets a state_dict
without them (a dense run's snapshot) load with the current masks; whether such a snapshot may start this run
is decided on the controller's state (integration.load_resume_state, --sparse-from-dense).
Masking keeps pruned entries at exactly zero: gradients are masked before the optimizer step and weights
after it (Adam's momentum or weight decay would revive them otherwise), G_ema after every EMA update.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from .config import ConfigError
from .methods.base import Method


def _fill_missing_masks(module, state_dict, prefix, *args):
    for name, buf in module._buffers.items():
        if name.endswith("_mask") and name[: -len("_mask")] in module._parameters and prefix + name not in state_dict:
            state_dict[prefix + name] = buf.detach().clone()


def _add_mask(module: nn.Module, attr: str, value: torch.Tensor) -> None:
    module.register_buffer(attr + "_mask", value)
    if not any(getattr(h, "hook", h) is _fill_missing_masks for h in module._load_state_dict_pre_hooks.values()):
        module.register_load_state_dict_pre_hook(_fill_missing_masks)


def _remove_masks(module: nn.Module, mask_attr: str) -> None:
    module._buffers.pop(mask_attr, None)
    if not any(k.endswith("_mask") for k in module._buffers):
        hooks = module._load_state_dict_pre_hooks
        for key in [k for k, h in hooks.items() if getattr(h, "hook", h) is _fill_missing_masks]:
            hooks.pop(key)


def broadcast(t: torch.Tensor) -> None:
    """Keep masks bit-identical on every DDP rank (rank 0 decides)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast(t, src=0)


class MaskMethod(Method):
    """Shared part of the mask-buffer methods; subclasses decide when masks change (`masking_active`)."""

    def masking_active(self) -> bool:
        return True

    # ------------------------------------------------------------------ attaching
    def attach(self) -> None:
        c = self.ctrl
        for n in c.targets:
            for s in c.sites[n]:
                p = s.param(c.nets[n])
                _add_mask(s.module(c.nets[n]), s.attr, torch.ones_like(p.detach()))
        self._static = {}

    def attach_ema(self, G_ema: nn.Module) -> None:
        # Masks are schedule state, not EMA state: G_ema's always equals G's.
        c = self.ctrl
        if "G" not in c.targets:
            return
        for s in c.sites["G"]:
            m_ema = s.module(G_ema)
            mask = self.mask(s, "G")
            if s.mask_attr not in m_ema._buffers:
                _add_mask(m_ema, s.attr, mask.detach().clone())
            else:
                m_ema._buffers[s.mask_attr].copy_(mask)
        self.after_ema()

    def mask(self, s, net_name: str) -> torch.Tensor:
        return s.module(self.ctrl.nets[net_name])._buffers[s.mask_attr]

    # ------------------------------------------------------------------ masking
    @torch.no_grad()
    def apply_masks(self, net_name: str, grads: bool = False) -> None:
        net = self.ctrl.nets[net_name]
        for s in self.ctrl.sites[net_name]:
            m = s.module(net)
            p, mask = m._parameters[s.attr], m._buffers[s.mask_attr]
            if grads:
                if p.grad is not None:
                    p.grad.mul_(mask)
            else:
                p.mul_(mask)

    @torch.no_grad()
    def set_masks(self, net_name: str, masks: dict) -> None:
        """New masks {site name: mask} for `net_name`, on G_ema too, and zero what they prune."""
        c = self.ctrl
        for s in c.sites[net_name]:
            if s.name not in masks:
                continue
            mask = masks[s.name]
            for net in ([c.nets[net_name]] + ([c.G_ema] if net_name == "G" and c.G_ema is not None else [])):
                m = s.module(net)
                m._buffers[s.mask_attr].copy_(mask)
                m._parameters[s.attr].mul_(mask)
            if net_name == "G" and c.ema_is_list:
                c.ema_tensor(s).mul_(mask)

    def before_step(self, net_name: str) -> None:
        if net_name in self.ctrl.targets and self.masking_active():
            self.apply_masks(net_name, grads=True)

    def after_step(self, net_name: str) -> None:
        if net_name in self.ctrl.targets and self.masking_active():
            self.apply_masks(net_name)

    @torch.no_grad()
    def after_ema(self) -> None:
        c = self.ctrl
        if "G" not in c.targets or not self.masking_active() or not c.ema_bound:
            return
        for s in c.sites["G"]:
            c.ema_tensor(s).mul_(self.mask(s, "G"))

    # ------------------------------------------------------------------ reporting
    def refresh_density(self) -> None:
        """Densities only change when masks do: cache them as plain floats for the per-step FLOPs sum."""
        c = self.ctrl
        self._static = {}
        for n in c.targets:
            # Ascending size: a layer with several masked tensors (scope 'all') ends up with its largest one's
            # density, i.e. the weight's, which is what its FLOPs scale with.
            for s in sorted(c.sites[n], key=lambda s: s.param(c.nets[n]).numel()):
                self._static[(n, s.layer)] = float(self.mask(s, n).mean()) if self.masking_active() else 1.0

    def owner_density(self, net_name: str, layer: str):
        return self._static.get((net_name, layer), 1.0)

    @torch.no_grad()
    def layer_density(self, net_name: str) -> dict[str, float]:
        return {s.name: float(self.mask(s, net_name).mean()) for s in self.ctrl.sites.get(net_name, [])}

    # ------------------------------------------------------------------ export / persistence
    @torch.no_grad()
    def export_site(self, module: nn.Module, s, sparse: bool) -> None:
        p = module._parameters[s.attr]
        if sparse:
            p.mul_(self.export_mask(module, s, p))
        _remove_masks(module, s.mask_attr)

    def export_mask(self, module: nn.Module, s, p: torch.Tensor) -> torch.Tensor:
        return module._buffers[s.mask_attr]

    def tensors(self):
        c = self.ctrl
        for n in c.targets:
            for s in c.sites[n]:
                yield f"{n}/{s.module_name + '.' if s.module_name else ''}{s.mask_attr}", self.mask(s, n)

    def after_load(self) -> None:
        c = self.ctrl
        if "G" in c.targets and c.G_ema is not None:
            for s in c.sites["G"]:
                s.module(c.G_ema)._buffers[s.mask_attr].copy_(self.mask(s, "G"))
        self.refresh_density()

    def check_masks(self, masks: dict, what: str) -> None:
        c = self.ctrl
        for n, given in masks.items():
            if n not in c.targets:
                raise ConfigError(f"{what} has masks for {n}, which is not a target ({c.targets})")
            shapes = {s.name: tuple(s.param(c.nets[n]).shape) for s in c.sites[n]}
            for k, v in given.items():
                if k not in shapes:
                    raise ConfigError(f"{what}: {n} has no masked tensor {k!r}")
                if tuple(v.shape) != shapes[k]:
                    raise ConfigError(f"{what}: mask {n}/{k} has shape {tuple(v.shape)}, expected {shapes[k]}")
