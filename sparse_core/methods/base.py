"""The method contract: the registry, the `Context` a method sees (`self.ctx`), the `Method` base class (hooks
the controller calls; the defaults do nothing) and `MaskMethod`, the mask-buffer methods' shared part.
A new method is one file (docs/METHODS.md)."""
import dataclasses
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist
from torch import nn

from ..config import ConfigError, require
from ..selection import OWN_SUFFIXES, Site

_REGISTRY: dict[str, type] = {}


def register(cls):
    """Add a method (usable as a class decorator). Its config class's `method` must equal `cls.name`."""
    if not (isinstance(cls, type) and issubclass(cls, Method)) or not cls.name:
        raise TypeError(f"{cls!r} is not a named sparse_core Method subclass")
    if getattr(cls.config_cls, "method", None) != cls.name:
        raise TypeError(f"{cls.__name__}.config_cls.method must be {cls.name!r}")
    _REGISTRY[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def get(name):
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown sparse training method {name!r}; known: {names()}") from None


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def all_methods() -> tuple:
    return tuple(_REGISTRY.values())


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


class EMA:
    """G_ema as the methods see it: nothing, a module copy of G, or a list of tensors aligned with G.parameters()
    (`values`: G's parameter names -> the list's tensors)."""

    def __init__(self, G: nn.Module, sites: list[Site]) -> None:
        self.G, self.sites = G, sites
        self.module: nn.Module | None = None
        self.values: dict[str, torch.Tensor] | None = None

    @property
    def bound(self) -> bool:
        return self.module is not None or self.values is not None

    @property
    def is_list(self) -> bool:
        return self.values is not None

    def tensor(self, s: Site) -> torch.Tensor:
        return self.values[s.name] if self.values is not None else s.module(self.module)._parameters[s.attr]

    def bind(self, ema) -> None:
        if isinstance(ema, nn.Module):
            require(ema is not self.G, "G_ema is G itself; bind a copy (copy.deepcopy(G)) or leave G_ema out")
            params = dict(ema.named_parameters(remove_duplicate=False))
            for s in self.sites:
                shape = tuple(s.param(self.G).shape)
                require(s.name in params and tuple(params[s.name].shape) == shape,
                        f"G_ema has no parameter {s.name!r} of G's shape {shape}: it must be a copy of G")
            self.module, self.values = ema, None
            return
        require(isinstance(ema, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in ema), f"G_ema must be "
                f"an nn.Module or a list of tensors aligned with G.parameters(), got {type(ema).__name__}")
        named = list(self.G.named_parameters())
        plain = [(k, p) for k, p in named if not k.endswith(OWN_SUFFIXES)]
        aligned = named if len(ema) == len(named) else plain if len(ema) == len(plain) else None
        require(aligned is not None, f"G_ema list has {len(ema)} tensors; G.parameters() has {len(named)} "
                f"({len(plain)} without sparse_core's thresholds): it must be aligned with G.parameters()")
        for (k, p), t in zip(aligned, ema):
            require(t.shape == p.shape,
                    f"G_ema list entry for {k!r} has shape {tuple(t.shape)}, G has {tuple(p.shape)}")
        self.module, self.values = None, {k: t for (k, _), t in zip(aligned, ema)}


class Context:
    """The narrow view of a run a method works against (`self.ctx`; its fields: docs/METHODS.md)."""

    def __init__(self, nets: dict[str, nn.Module], targets: tuple[str, ...], sites: dict[str, list[Site]]) -> None:
        self.nets, self.targets, self.sites = nets, targets, sites
        self.ema = EMA(nets["G"], sites.get("G", []))
        self.iteration = 0
        self.nimg = 0
        self.paused = False

    def param(self, net_name: str, s: Site) -> torch.Tensor:
        return s.param(self.nets[net_name])

    def module(self, net_name: str, s: Site) -> nn.Module:
        return s.module(self.nets[net_name])

    def each(self, net_name: str | None = None) -> list[tuple[str, Site]]:
        """(network, site) of every target's sites, in order, or of `net_name`'s."""
        return [(n, s) for n in self.targets if net_name in (None, n) for s in self.sites[n]]


class Method:
    """A sparse-training method: the hooks the controller calls, each doing nothing by default (their contract:
    docs/ARCHITECTURE.md "sparse_core.methods"; a method written against it: docs/METHODS.md)."""

    name: str = ""
    config_cls: type = type(None)
    flags: tuple[Flag, ...] = ()
    phases: tuple[str, ...] = ()   # the names phase() returns (empty: not checked on load)
    uses_metric = False   # True: feed_metric must know the metric's direction

    @classmethod
    def config_from_flags(cls, values: dict):
        kwargs = {f.field: (f.parse(values[f.dest]) if f.parse else values[f.dest]) for f in cls.flags
                  if f.field is not None and values.get(f.dest) is not None}
        return cls.config_cls(**kwargs)

    @classmethod
    def prepare_kwargs(cls, values: dict) -> dict:
        return {}

    def __init__(self, ctx: Context, config, **kwargs) -> None:
        if kwargs:
            raise TypeError(f"{self.name}: unexpected prepare() arguments {sorted(kwargs)}")
        self.ctx, self.config = ctx, config

    # attaching: install masks / thresholds at prepare(); G_ema (a module) bound: never overwrite its state
    def attach(self) -> None: ...

    def attach_ema(self) -> None: ...

    def added_parameters(self, net_name: str | None = None) -> list[torch.Tensor]:
        return []

    def restart_from_dense(self) -> None:
        """The loop restored a dense run's weights into the attached networks (--sparse-from-dense)."""

    # training loop
    def before_step(self, net_name: str) -> None: ...

    def after_step(self, net_name: str) -> None: ...

    def after_ema(self) -> None: ...

    def observe_real(self, images: torch.Tensor) -> None:
        """The loop's real batch for D, as read (before augmentation); only methods that score it keep it."""

    def on_iteration(self, iteration: int) -> str | None: ...

    def on_metric(self, history: list[float]) -> str | None: ...

    def regularizer(self, net_name: str) -> torch.Tensor | None: ...

    def lr_scale(self, net_name: str) -> float:
        return 1.0

    def phase(self) -> str:
        return self.phases[0] if self.phases else "dense"

    def set_paused(self, paused: bool) -> None:
        """The controller holds (or releases) the method: the forward must then read the plain weights."""

    def schedule_warning(self, run_length: int) -> str | None: ...

    # reporting: as the next forward sees the weights
    def owner_density(self, net_name: str, layer: str):
        return 1.0

    def layer_density(self, net_name: str) -> dict[str, float]:
        return {s.name: 1.0 for s in self.ctx.sites.get(net_name, [])}

    def stats(self) -> dict:
        return {}

    # export / persistence
    def export_site(self, module: nn.Module, site: Site, sparse: bool) -> None: ...

    def export_done(self, net: nn.Module) -> None:
        """On an exported copy, after every site: remove what remains of the method (e.g. hooks on tied layers)."""

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        return iter(())

    def check_tensor(self, key: str, value: torch.Tensor) -> str | None:
        """Why a saved tensor cannot be loaded (None: it can; the controller checks shape and finiteness)."""

    def state_dict(self) -> dict:
        return {}

    def check_state(self, state: dict) -> None: ...

    def load_state_dict(self, state: dict, phase: str) -> None: ...

    def export_files(self, out_dir: str) -> list[str]:
        return []


# ---------------------------------------------------------------------------------------------- own state
def _own_names(module: nn.Module) -> list[str]:
    return [k for k in (*module._parameters, *module._buffers) if k.endswith(OWN_SUFFIXES)]


def _loaded_without_own_state(module, incompatible_keys) -> None:
    """Load post-hook: a state_dict without this layer's masks / thresholds (a dense or another method's run) keeps
    the current ones. A plain function: copies rebuilt from reduce arguments and pickles carry no dead hook."""
    own = tuple("." + k for k in _own_names(module))
    missing = incompatible_keys.missing_keys
    missing[:] = [k for k in missing if not ("." + k).endswith(own)]


def track_own_state(module: nn.Module) -> None:
    hooks = module._load_state_dict_post_hooks
    registered = [k for k, h in hooks.items() if h is _loaded_without_own_state]
    if not _own_names(module):
        for key in registered:
            hooks.pop(key)
    elif not registered:
        module.register_load_state_dict_post_hook(_loaded_without_own_state)


def add_mask(module: nn.Module, attr: str, value: torch.Tensor) -> None:
    module.register_buffer(attr + "_mask", value)
    track_own_state(module)


def broadcast(t: torch.Tensor) -> None:
    """Keep masks bit-identical on every DDP rank (rank 0 decides)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast(t, src=0)


class MaskMethod(Method):
    """`<attr>_mask` buffers next to the masked tensors, pruned entries kept exactly zero (docs/METHODS.md);
    subclasses decide when masks change (`set_masks`) and whether they act (`masking_active`)."""

    def masking_active(self) -> bool:
        return True

    def attach(self) -> None:
        for n, s in self.ctx.each():
            add_mask(self.ctx.module(n, s), s.attr, torch.ones_like(self.ctx.param(n, s).detach()))
        self._static = {}

    def mask(self, s: Site, net_name: str) -> torch.Tensor:
        return self.ctx.module(net_name, s)._buffers[s.mask_attr]

    @torch.no_grad()
    def sync_ema(self, zero_only: bool = False) -> None:
        """G_ema's masks are G's (schedule state, not EMA state); its pruned entries are zero."""
        c = self.ctx
        if "G" not in c.targets or not c.ema.bound:
            return
        for s in c.sites["G"]:
            mask = self.mask(s, "G")
            if c.ema.module is not None and not zero_only:
                m_ema = s.module(c.ema.module)
                if s.mask_attr not in m_ema._buffers:
                    add_mask(m_ema, s.attr, mask.detach().clone())
                m_ema._buffers[s.mask_attr].copy_(mask)
            if self.masking_active():
                c.ema.tensor(s).mul_(mask)

    def attach_ema(self) -> None:
        self.sync_ema()

    def after_ema(self) -> None:
        self.sync_ema(zero_only=True)

    def restart_from_dense(self) -> None:
        for n in self.ctx.targets:   # the loop replaced the weights the masks were applied to
            self.apply_masks(n)
        self.sync_ema()

    @torch.no_grad()
    def apply_masks(self, net_name: str, grads: bool = False) -> None:
        for s in self.ctx.sites[net_name]:
            p, mask = self.ctx.param(net_name, s), self.mask(s, net_name)
            if not grads:
                p.mul_(mask)
            elif p.grad is not None:
                p.grad.mul_(mask)

    @torch.no_grad()
    def set_masks(self, net_name: str, masks: dict) -> None:
        """New masks {site name: mask} for `net_name` (and G_ema), zeroing what they prune."""
        for s in self.ctx.sites[net_name]:
            if s.name in masks:
                self.mask(s, net_name).copy_(masks[s.name])
        self.apply_masks(net_name)
        self.sync_ema()
        self.refresh_density()

    def before_step(self, net_name: str) -> None:
        if net_name in self.ctx.targets and self.masking_active():
            self.apply_masks(net_name, grads=True)

    def after_step(self, net_name: str) -> None:
        if net_name in self.ctx.targets and self.masking_active():
            self.apply_masks(net_name)

    def refresh_density(self) -> None:
        """Densities only change when masks do: cache them as plain floats for the per-step FLOPs sum."""
        c = self.ctx
        # ascending size: a layer with several masked tensors (scope 'all') gets its largest one's (the weight's)
        self._static = {(n, s.layer): float(self.mask(s, n).mean()) if self.masking_active() else 1.0
                        for n in c.targets for s in sorted(c.sites[n], key=lambda s: c.param(n, s).numel())}

    def owner_density(self, net_name: str, layer: str):
        return self._static.get((net_name, layer), 1.0)

    @torch.no_grad()
    def layer_density(self, net_name: str) -> dict[str, float]:
        return {s.name: float(self.mask(s, net_name).float().mean()) if self.masking_active() else 1.0
                for s in self.ctx.sites.get(net_name, [])}

    @torch.no_grad()
    def export_site(self, module: nn.Module, s: Site, sparse: bool) -> None:
        p = module._parameters[s.attr]
        if sparse:
            p.mul_(self.export_mask(module, s, p))
        module._buffers.pop(s.mask_attr, None)
        track_own_state(module)

    def export_mask(self, module: nn.Module, s: Site, p: torch.Tensor) -> torch.Tensor:
        return module._buffers[s.mask_attr]

    def tensors(self):
        return ((s.key(n, s.mask_attr), self.mask(s, n)) for n, s in self.ctx.each())

    def check_tensor(self, key: str, value: torch.Tensor) -> str | None:
        return None if bool(((value == 0) | (value == 1)).all()) else "is not a 0/1 mask"

    def after_load(self) -> None:
        self.sync_ema()
        self.refresh_density()
