"""Which parameter tensors get a mask, and how the forward derives its weight from them (`Site.kind`):
'plain' (the parameter itself), 'sn' / 'wn' (old-API spectral / weight norm: the site is `weight_orig` /
`weight_v`), 'param' (torch.nn.utils.parametrize spectral / weight norm: the site is the original; any other
parametrization is refused), 'hook' (another forward pre-hook derives the weight, e.g. equalised LR: a probe runs
the layer's pre-hooks on a pattern and on the pattern masked; the attribute that follows is the derived weight,
and masking must commute with the derivation, or the layer is refused naming the exclude= that skips it).
For every kind, zeros of the site stay zeros of the weight the forward reads."""
import dataclasses
import re
from typing import Sequence

import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize
from torch.nn.utils.spectral_norm import SpectralNorm
from torch.nn.utils.weight_norm import WeightNorm

from .config import ConfigError, require

_WEIGHT_ATTRS = ("weight", "weight_orig")   # the trainable weight of a conv / linear / modulated layer
OWN_SUFFIXES = ("_mask", "_threshold")


@dataclasses.dataclass(frozen=True)
class Site:
    name: str          # full parameter name inside the network, e.g. 'model.0.residual.0.weight_orig'
    module_name: str   # owner module name ('' for the root)
    attr: str          # attribute on the owner, e.g. 'weight_orig'
    channel_dim: int   # output-channel dimension (1 for transposed convolutions)
    kind: str = "plain"   # 'plain' | 'sn' | 'wn' | 'param' | 'hook' (see the module docstring)
    layer: str = ""       # the layer whose forward uses the weight (FLOPs owner); == module_name except 'param'
    derived: str | None = None   # 'sn' / 'wn' / 'hook': the attribute a pre-hook derives from the site (forward's)

    @property
    def mask_attr(self) -> str:
        return self.attr + "_mask"

    @property
    def threshold_attr(self) -> str:
        return self.attr + "_threshold"

    def key(self, net_name: str, attr: str) -> str:
        """This site's `attr` (mask / threshold) in a controller state: 'G/<module>.<attr>'."""
        return f"{net_name}/{self.module_name + '.' if self.module_name else ''}{attr}"

    def module(self, net: nn.Module) -> nn.Module:
        return net.get_submodule(self.module_name)

    def param(self, net: nn.Module) -> torch.Tensor:
        return self.module(net)._parameters[self.attr]


def _hook_kind(module: nn.Module, attr: str) -> tuple[str, str | None]:
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, SpectralNorm) and attr == hook.name + "_orig":
            return "sn", hook.name
        if isinstance(hook, WeightNorm) and attr in (hook.name + "_v", hook.name + "_g"):
            return "wn", hook.name
    return "plain", None


def _masked_original(plist: nn.Module) -> str | None:
    """The original to mask of a known zero-preserving ParametrizationList (None: an unknown parametrization)."""
    for original, cls in (("original", "_SpectralNorm"), ("original1", "_WeightNorm")):
        if len(plist) == 1 and isinstance(plist[0], getattr(parametrizations, cls, ())):
            return original
    return None


@torch.no_grad()
def run_pre_hooks(module: nn.Module, hooks) -> dict[str, torch.Tensor]:
    """Run forward pre-hooks as a call would, with no inputs (derivations of weights do not read them), and return
    the tensor attributes they leave; the module's buffers and tensor attributes are then put back as they were."""
    buffers = {k: b.clone() for k, b in module._buffers.items() if b is not None}
    attrs = {k: v for k, v in module.__dict__.items() if isinstance(v, torch.Tensor)}
    try:
        for k, h in hooks:
            h(module, (), {}) if k in module._forward_pre_hooks_with_kwargs else h(module, ())
        return {k: v for k, v in module.__dict__.items() if isinstance(v, torch.Tensor)}
    finally:
        for k, b in buffers.items():
            module._buffers[k].copy_(b)
        for k in [k for k, v in module.__dict__.items() if isinstance(v, torch.Tensor) and k not in attrs]:
            del module.__dict__[k]
        module.__dict__.update(attrs)


@torch.no_grad()
def _probe_derivation(module: nn.Module, attr: str, net_name: str, module_name: str, full: str) -> str | None:
    """The attribute a foreign pre-hook derives from `attr` (None: none follows it); refuses a derivation that
    masking does not commute with. Leaves the module as it found it."""
    hooks = [(k, h) for k, h in module._forward_pre_hooks.items()   # neither old-API norms nor sparse_core's own
             if not isinstance(h, (SpectralNorm, WeightNorm)) and not getattr(h, "sparse_core_hook", False)]
    if not hooks:
        return None
    p = module._parameters[attr]
    saved = p.detach().clone()
    g = torch.Generator().manual_seed(0)
    pattern = (torch.rand(p.shape, generator=g) + 0.5) * (torch.randint(0, 2, p.shape, generator=g) * 2 - 1)
    pattern = pattern.to(p.device, p.dtype)
    keep = (torch.arange(p.numel(), device=p.device) % 3 != 0).view(p.shape).to(p.dtype)
    where = f"{net_name}: layer {module_name or '<root>'!r}"
    fix = f"exclude it (exclude=[{re.escape(module_name or full)!r}])"
    outs = []
    try:
        for values in (pattern, pattern * keep):
            p.copy_(values)
            outs.append({k: v.detach().clone() for k, v in run_pre_hooks(module, hooks).items()
                         if tuple(v.shape) == tuple(p.shape)})
    except Exception as e:  # noqa: BLE001  (any failure means we cannot know what the forward reads)
        raise ConfigError(f"{where} has forward pre-hooks ({_names(hooks)}) that sparse_core cannot run to see how "
                          f"they derive its weight from {full!r} ({type(e).__name__}: {e}); {fix}") from None
    finally:
        p.copy_(saved)
    whole, masked = outs
    follow = [k for k in masked if k in whole and not torch.equal(whole[k], masked[k])]
    if not follow:
        return None
    require(len(follow) == 1 and torch.equal(masked[follow[0]], whole[follow[0]] * keep),
            f"{where} derives the weight its forward reads ({', '.join(follow)}) from {full!r} in forward pre-hooks "
            f"({_names(hooks)}) that do not carry a mask through (derive(W * M) != derive(W) * M): sparse_core "
            f"cannot make its mask reach that forward; {fix}")
    return follow[0]


def _names(hooks) -> str:
    return ", ".join(getattr(h, "__qualname__", type(h).__name__) for _, h in hooks)


def find_sites(net: nn.Module, scope: str, include: Sequence[str] = (), exclude: Sequence[str] = (),
               net_name: str = "network") -> list[Site]:
    """The masked sites of `net` in parameter order. scope 'weights': weight / weight_orig with ndim >= 2, weight-norm
    directions, parametrized weights; 'all': every parameter but norm magnitudes. include / exclude: regexes."""
    sites, seen = [], set()   # a tensor tied into several layers is one site, owned by its first holder
    for module_name, module in net.named_modules():
        plist = isinstance(module, parametrize.ParametrizationList)   # holds a parametrized tensor's originals
        layer = module_name.rpartition("parametrizations.")[0].rstrip(".") if plist else module_name
        tname = module_name.rpartition(".")[2]   # a ParametrizationList's: the parametrized tensor's name
        holder = net.get_submodule(layer)
        dim = 1 if isinstance(holder, nn.modules.conv._ConvTransposeNd) or getattr(holder, "transposed", False) else 0
        known = _masked_original(module) if plist else None
        for attr, p in module._parameters.items():
            if p is None or attr.endswith(OWN_SUFFIXES) or id(p) in seen:
                continue
            seen.add(id(p))
            full = f"{module_name}.{attr}" if module_name else attr
            kind, derived = ("param", None) if plist else _hook_kind(module, attr)
            if (kind == "wn" and attr.endswith("_g")) or known not in (None, attr):
                continue   # a norm's magnitude: zeroing it would zero whole output channels, not weights
            weight = tname == "weight" if plist else attr in _WEIGHT_ATTRS or kind == "wn"
            if scope == "weights" and not (p.ndim >= 2 and weight):
                continue
            if include and not any(re.search(r, full) for r in include) or any(re.search(r, full) for r in exclude):
                continue
            if plist and known is None:
                raise ConfigError(f"{net_name}: layer {layer or '<root>'!r} has its {tname!r} parametrized by "
                                  f"{', '.join(type(x).__name__ for x in module)}; sparse_core cannot tell whether "
                                  f"masking {full!r} masks the forward's weight. Exclude it "
                                  f"(exclude=[{re.escape(layer)!r}]) or use spectral_norm / weight_norm")
            if kind == "plain":
                derived = _probe_derivation(module, attr, net_name, module_name, full)
                kind = "hook" if derived else kind
            sites.append(Site(full, module_name, attr, dim if p.ndim >= 2 else 0, kind, layer, derived))
    require(sites, f"{net_name} has nothing to mask with scope={scope!r}, include={list(include)}, "
            f"exclude={list(exclude)}")
    return sites
