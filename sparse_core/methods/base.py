"""The method protocol: what a sparse-training method does at each point of a training loop.

The controller owns what every method shares (networks, selected sites, LR scaling, EMA binding, FLOPs,
counters, persistence) and calls these hooks; a method owns its masks / thresholds and schedule. The
defaults do nothing, so a method overrides only what it uses. `self.ctrl` gives the shared things:
`nets`, `targets`, `sites`, `G_ema` (module or None), `ema_tensor(site)` (module or list EMA),
`iteration`, `metric_history`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class Flag:
    """One command-line flag of a method. `field` is the config field it sets (None: read by the method's
    own `config_from_flags` / `prepare_kwargs`); `parse` turns the flag's value into the field's value."""

    flag: str
    dest: str
    type: Any
    default: Any
    help: str
    field: str | None = None
    choices: tuple | None = None
    parse: Callable[[Any], Any] | None = None

    @property
    def is_switch(self) -> bool:
        return self.type is bool


class Method:
    name: str = ""
    config_cls: type = type(None)
    flags: tuple[Flag, ...] = ()

    # ------------------------------------------------------------------ construction from flags
    @classmethod
    def config_from_flags(cls, values: dict):
        """Config from flag values (dest -> value, defaults filled in)."""
        kwargs = {}
        for f in cls.flags:
            if f.field is not None and values.get(f.dest) is not None:
                v = values[f.dest]
                kwargs[f.field] = f.parse(v) if f.parse else v
        return cls.config_cls(**kwargs)

    @classmethod
    def prepare_kwargs(cls, values: dict) -> dict:
        """Extra keyword arguments for prepare() taken from the flags (e.g. a ticket file's masks)."""
        return {}

    def __init__(self, ctrl, config, **kwargs) -> None:
        if kwargs:
            raise TypeError(f"{self.name}: unexpected prepare() arguments {sorted(kwargs)}")
        self.ctrl = ctrl
        self.config = config

    # ------------------------------------------------------------------ attaching
    def attach(self) -> None:
        """Install masks / thresholds on the selected sites of the targeted networks (at prepare())."""

    def attach_ema(self, G_ema: nn.Module) -> None:
        """G_ema (a module copy of G) was bound; never overwrite state it already holds."""

    def added_parameters(self) -> list[torch.Tensor]:
        """Parameters the method added to the networks (RG-GAN thresholds); the optimizers train them."""
        return []

    def restart_from_dense(self) -> None:
        """The loop restored a dense run's weights into the attached networks (--sparse-from-dense)."""

    # ------------------------------------------------------------------ training loop
    def before_step(self, net_name: str) -> None: ...

    def after_step(self, net_name: str) -> None: ...

    def after_ema(self) -> None: ...

    def on_iteration(self, iteration: int) -> str | None:
        """Called after the counters moved to `iteration`; return the phase entered, if any."""
        return None

    def on_metric(self, history: list[float]) -> str | None:
        return None

    def regularizer(self, net_name: str) -> torch.Tensor | None:
        return None

    def lr_scale(self, net_name: str) -> float:
        return 1.0

    def phase(self) -> str:
        return "dense"

    # ------------------------------------------------------------------ reporting
    def owner_density(self, net_name: str, layer: str):
        """Kept fraction of `layer`'s weight for FLOPs (float or 0-d tensor); 1.0 where unmasked."""
        return 1.0

    def layer_density(self, net_name: str) -> dict[str, float]:
        return {s.name: 1.0 for s in self.ctrl.sites.get(net_name, [])}

    def stats(self) -> dict:
        return {}

    # ------------------------------------------------------------------ export
    def export_site(self, module: nn.Module, site, sparse: bool) -> None:
        """On an exported copy: bake the mask into the site's tensor (sparse=True), then remove own state."""

    # ------------------------------------------------------------------ persistence
    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(key, tensor) of every tensor state_dict() saves and load_state_dict() restores in place."""
        return iter(())

    def state_dict(self) -> dict:
        return {}

    def check_state(self, state: dict) -> None:
        """Raise ConfigError if `state` (this method's part of a saved state) cannot be loaded."""

    def load_state_dict(self, state: dict, phase: str) -> None: ...

    def export_files(self, out_dir: str) -> list[str]:
        """Extra files written at the end of a run (export_generators)."""
        return []
