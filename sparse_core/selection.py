"""Which parameter tensors get a mask.

A `Site` names one masked tensor: the module that owns it and the attribute name. Spectral-norm layers
(torch.nn.utils.spectral_norm) keep the trainable tensor in `weight_orig` and recompute `weight` on every
forward, so the site is `weight_orig`: masking the recomputed `weight` would be undone at the next call.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import torch
from torch import nn

from .config import ConfigError

# Attribute names that hold the trainable weight of a conv / linear / modulated layer.
_WEIGHT_ATTRS = ("weight", "weight_orig")
# Suffixes sparse_core itself adds; never treated as maskable.
OWN_SUFFIXES = ("_mask", "_threshold")


@dataclasses.dataclass(frozen=True)
class Site:
    name: str          # full parameter name inside the network, e.g. 'model.0.residual.0.weight_orig'
    module_name: str   # owner module name ('' for the root)
    attr: str          # attribute on the owner, e.g. 'weight_orig'
    channel_dim: int   # output-channel dimension (1 for transposed convolutions)

    @property
    def mask_attr(self) -> str:
        return self.attr + "_mask"

    @property
    def threshold_attr(self) -> str:
        return self.attr + "_threshold"

    def module(self, net: nn.Module) -> nn.Module:
        return net.get_submodule(self.module_name) if self.module_name else net

    def param(self, net: nn.Module) -> torch.Tensor:
        return self.module(net)._parameters[self.attr]


def _is_transposed(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.conv._ConvTransposeNd) or bool(getattr(module, "transposed", False))


def find_sites(net: nn.Module, scope: str, include: Sequence[str] = (), exclude: Sequence[str] = (),
               net_name: str = "network") -> list[Site]:
    """Return the masked sites of `net` in parameter order.

    scope 'weights': tensors named weight / weight_orig with ndim >= 2 (conv, conv-transpose, linear, modulated
    conv and affine layers); BatchNorm / bias / constants are 1-D or otherwise named and stay dense.
    scope 'all': every parameter (the official Re-GAN code's choice).
    include / exclude are regular expressions searched in the full parameter name; exclude wins.
    """
    inc = [re.compile(p) for p in include]
    exc = [re.compile(p) for p in exclude]
    sites = []
    for module_name, module in net.named_modules():
        for attr, p in module._parameters.items():
            if p is None or attr.endswith(OWN_SUFFIXES):
                continue
            full = f"{module_name}.{attr}" if module_name else attr
            if scope == "weights" and not (attr in _WEIGHT_ATTRS and p.ndim >= 2):
                continue
            if inc and not any(r.search(full) for r in inc):
                continue
            if any(r.search(full) for r in exc):
                continue
            dim = 1 if (_is_transposed(module) and p.ndim >= 2) else 0
            sites.append(Site(full, module_name, attr, dim))
    if not sites:
        raise ConfigError(f"{net_name} has nothing to mask with scope={scope!r}, include={list(include)}, "
                          f"exclude={list(exclude)}")
    return sites

