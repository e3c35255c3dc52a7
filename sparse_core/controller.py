"""SparseController: the one object a training loop talks to.

Call order in a training loop (see README "sparse_core API"):

    ctrl = sparse_core.prepare(cfg, G=G, D=D)            # after construction, before G_ema copy and optimizers
    G_ema = copy.deepcopy(G)                             # masks / thresholds are copied with it
    ctrl.bind(G_ema=G_ema, opt_G=opt_G, opt_D=opt_D, sched_G=[...], sched_D=[...])
    ctrl.measure_flops('G', lambda: G(z), batch=len(z), train_samples=...)   # optional accounting
    loop:
        loss_D = loss_D + ctrl.regularizer('D');  loss_D.backward()
        ctrl.optimizer_step('D', opt_D)                  # = before_step('D'); opt_D.step(); after_step('D')
        ... same for G ...
        (EMA update);  ctrl.after_ema()
        ctrl.advance(real_images_this_iteration)         # counters, FLOPs, phase changes
        at metric time:  ctrl.feed_metric(fid)           # RG-GAN augmented regeneration
        per tick:        stats.update(ctrl.stats())
        snapshot:        snap['sparse'] = ctrl.state_dict();   resume: ctrl.load_state_dict(snap['sparse'])
    end: sparse_G, dense_G = ctrl.export('G_ema', sparse=True), ctrl.export('G_ema', sparse=False)

The controller holds what every method shares (networks, selected sites, LR scaling, EMA binding, FLOPs,
counters, persistence); the method itself is a strategy from `sparse_core.methods` chosen by the
config's `method` name, and nothing here branches on that name.
"""
from __future__ import annotations

import copy
import weakref
from typing import Callable, Sequence

import torch
from torch import nn

from . import methods
from .accounting import FlopAccount, IterationCost
from .config import ConfigError, config_from_dict, config_to_dict
from .lr import LRScaler
from .selection import OWN_SUFFIXES, Site, find_sites

STATE_VERSION = 2
NETS = ("G", "D")


class SparseController:
    def __init__(self, config, G: nn.Module, D: nn.Module | None = None, **method_kwargs) -> None:
        method_name = getattr(type(config), "method", None)
        if not isinstance(method_name, str) or method_name not in methods.names() \
                or not isinstance(config, methods.get(method_name).config_cls):
            raise ConfigError(f"config must be one of the method configs "
                              f"({', '.join(m.config_cls.__name__ for m in methods.all_methods())}), "
                              f"got {type(config).__name__}")
        if not isinstance(G, nn.Module):
            raise ConfigError(f"G must be an nn.Module, got {type(G).__name__}")
        if D is not None and not isinstance(D, nn.Module):
            raise ConfigError(f"D must be an nn.Module or None, got {type(D).__name__}")
        self.config = config
        self.method = method_name
        self.nets: dict[str, nn.Module] = {"G": G} if D is None else {"G": G, "D": D}
        for t in config.targets():
            if t not in self.nets:
                raise ConfigError(f"target {config.target!r} needs network {t} but it was not given to prepare()")
        self.targets = tuple(config.targets())
        self.sites: dict[str, list[Site]] = {
            n: find_sites(self.nets[n], config.scope, config.include, config.exclude, net_name=n) for n in self.targets}
        self.G_ema: nn.Module | None = None
        self._ema_list: list[torch.Tensor] | None = None
        self._ema_index: dict[str, int] = {}
        self.lr = {n: LRScaler() for n in self.nets}
        self._adapted: set[int] = set()
        self.from_dense = False   # set by integration.controller_from_flags (--sparse-from-dense)
        self.iteration = 0
        self.nimg = 0
        self.metric_history: list[float] = []
        self.flops = FlopAccount()
        self.strategy = methods.get(method_name)(self, config, **method_kwargs)
        self.strategy.attach()
        for n in self.nets:
            self.lr[n].scale = self.strategy.lr_scale(n)   # applied to optimizers when they are bound

    # ------------------------------------------------------------------ EMA access for the methods
    @property
    def ema_bound(self) -> bool:
        return self.G_ema is not None or self._ema_list is not None

    @property
    def ema_is_list(self) -> bool:
        return self._ema_list is not None

    def ema_tensor(self, s: Site) -> torch.Tensor:
        """G_ema's copy of site `s` (module or list EMA)."""
        if self._ema_list is not None:
            return self._ema_list[self._ema_index[s.name]]
        return s.module(self.G_ema)._parameters[s.attr]

    # ------------------------------------------------------------------ bind
    def bind(self, G_ema: nn.Module | Sequence[torch.Tensor] | None = None,
             opt_G: torch.optim.Optimizer | None = None, opt_D: torch.optim.Optimizer | None = None,
             sched_G: Sequence | None = None, sched_D: Sequence | None = None) -> None:
        """Tell the controller about objects created after prepare(): the EMA generator, optimizers, schedulers.

        Idempotent, and safe to call again whenever the loop rebuilds one of them: a new optimizer (or
        scheduler list) for a network replaces the previous one and gets the current LR scale exactly once.
        `G_ema` is a module (a copy of G) or a list of tensors aligned with `G.parameters()` (an EMA kept as
        plain tensors); binding it never overwrites thresholds it already holds. Order with load_state_dict
        does not matter.
        """
        if G_ema is not None:
            self._bind_ema(G_ema)
        for n, opt, sch in (("G", opt_G, sched_G), ("D", opt_D, sched_D)):
            if opt is None and sch is None:
                continue
            if n not in self.nets:
                raise ConfigError(f"opt_{n} / sched_{n} given but no network {n} was given to prepare()")
            self.lr[n].bind(opt, None if sch is None else list(sch))
            if opt is not None and id(opt) not in self._adapted:
                opt.register_load_state_dict_pre_hook(_AddedParamsAdapter(self))
                self._adapted.add(id(opt))

    def _bind_ema(self, G_ema) -> None:
        if isinstance(G_ema, nn.Module):
            self._bind_ema_module(G_ema)
        elif isinstance(G_ema, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in G_ema):
            self._bind_ema_list(list(G_ema))
        else:
            raise ConfigError(f"G_ema must be an nn.Module or a list of tensors aligned with G.parameters(), "
                              f"got {type(G_ema).__name__}")

    def _bind_ema_list(self, tensors: list) -> None:
        named = list(self.nets["G"].named_parameters())
        plain = [(k, p) for k, p in named if not k.endswith(OWN_SUFFIXES)]
        if len(tensors) == len(named):
            aligned = named
        elif len(tensors) == len(plain):
            aligned = plain    # an EMA list taken before prepare() added the thresholds
        else:
            raise ConfigError(f"G_ema list has {len(tensors)} tensors; G.parameters() has {len(named)} "
                              f"({len(plain)} without sparse_core's thresholds): it must be aligned with G.parameters()")
        for (k, p), t in zip(aligned, tensors):
            if tuple(t.shape) != tuple(p.shape):
                raise ConfigError(f"G_ema list entry for {k!r} has shape {tuple(t.shape)}, G has {tuple(p.shape)}")
        self.G_ema = None
        self._ema_list = tensors
        self._ema_index = {k: i for i, (k, _) in enumerate(aligned)}
        self.strategy.after_ema()

    def _bind_ema_module(self, G_ema: nn.Module) -> None:
        if G_ema is self.nets["G"]:
            raise ConfigError("G_ema is G itself; bind a copy (copy.deepcopy(G)) or leave G_ema out")
        G = self.nets["G"]
        for s in self.sites.get("G", []):
            try:
                p_ema = s.module(G_ema)._parameters[s.attr]
            except (AttributeError, KeyError):
                raise ConfigError(f"G_ema has no parameter {s.name!r}: it must be a copy of G") from None
            if p_ema is None or tuple(p_ema.shape) != tuple(s.param(G).shape):
                raise ConfigError(f"G_ema parameter {s.name!r} has shape "
                                  f"{None if p_ema is None else tuple(p_ema.shape)}, G has {tuple(s.param(G).shape)}")
        self.G_ema = G_ema
        self._ema_list = None
        self._ema_index = {}
        self.strategy.attach_ema(G_ema)

    # ------------------------------------------------------------------ training-loop hooks
    def before_step(self, net_name: str) -> None:
        """Call right before `opt.step()` of network `net_name` (after backward)."""
        self.strategy.before_step(net_name)

    def after_step(self, net_name: str) -> None:
        """Call right after `opt.step()` of network `net_name`."""
        self.strategy.after_step(net_name)

    def optimizer_step(self, net_name: str, optimizer: torch.optim.Optimizer) -> None:
        self.before_step(net_name)
        optimizer.step()
        self.after_step(net_name)

    def after_ema(self) -> None:
        """Call after every G_ema update: pruned entries of G_ema are zeroed too (mask methods)."""
        if self.ema_bound:
            self.strategy.after_ema()

    def regularizer(self, net_name: str) -> torch.Tensor:
        """The method's loss term for `net_name` (RG-GAN: λ·Σexp(−t) while sparse), else a zero tensor."""
        term = self.strategy.regularizer(net_name) if net_name in self.nets else None
        if term is None:
            net = self.nets.get(net_name, self.nets["G"])
            return torch.zeros((), device=next(net.parameters()).device)
        return term

    def feed_metric(self, value: float) -> str | None:
        """Give the loop's periodic quality metric (lower is better, e.g. FID of G_ema) to the method.

        Returns the mode for the coming period ('sparse' / 'dense') or None when the method does not use it.
        """
        value = float(value)
        if value != value:
            raise ValueError("feed_metric got NaN")
        self.metric_history.append(value)
        return self.strategy.on_metric(self.metric_history)

    def advance(self, real_images: int) -> str | None:
        """Call once per training iteration with the number of real images D saw in it.

        Returns the name of the phase entered at this boundary (Re-GAN), else None.
        """
        if real_images < 0:
            raise ValueError(f"real_images must be >= 0, got {real_images}")
        self.flops.add_iteration(self.strategy.owner_density)
        self.iteration += 1
        self.nimg += int(real_images)
        entered = self.strategy.on_iteration(self.iteration)
        if entered is not None:
            for n in self.nets:
                self.lr[n].set_scale(self.strategy.lr_scale(n))
        return entered

    def measure_flops(self, net_name: str, run: Callable[[], object], batch: int,
                      forward_samples: float = 0.0, train_samples: float = 0.0) -> None:
        """Count `net_name`'s forward FLOPs per sample once (run() = one forward of `batch` samples) and say how
        many samples it processes per iteration forward-only and forward+backward."""
        if net_name not in self.nets:
            raise ConfigError(f"unknown network {net_name!r}; expected one of {tuple(self.nets)}")
        owners = {s.layer for s in self.sites.get(net_name, [])}
        self.flops.measure(net_name, self.nets[net_name], run, batch, owners,
                           IterationCost(float(forward_samples), float(train_samples)))

    # ------------------------------------------------------------------ reporting
    def layer_density(self, net_name: str) -> dict[str, float]:
        """Kept fraction of every masked tensor of `net_name` as the forward sees it now."""
        return self.strategy.layer_density(net_name) if net_name in self.targets else {}

    def sparsity(self, net_name: str) -> float:
        """Fraction of masked-tensor entries that are currently pruned in `net_name` (0 if not targeted)."""
        if net_name not in self.targets:
            return 0.0
        net = self.nets[net_name]
        dens = self.layer_density(net_name)
        sizes = {s.name: s.param(net).numel() for s in self.sites[net_name]}
        total = sum(sizes.values())
        return 1.0 - sum(dens[k] * sizes[k] for k in sizes) / total

    def current_phase(self) -> str:
        return self.strategy.phase()

    def stats(self, per_layer: bool = True) -> dict:
        """Flat dict for stats.jsonl (keys of SPEC §3)."""
        first = self.targets[0] if self.targets else "G"
        out = {
            "sparse/method": self.method,
            "sparse/phase": self.current_phase(),
            "sparse/iteration": self.iteration,
            "sparse/lr_scale": self.lr["G"].scale if "G" in self.targets else self.lr[first].scale,
            "progress/real_images": self.nimg,
            "flops/train_total": float(self.flops.total),
            "flops/train_dense_equiv": float(self.flops.dense_equiv),
        }
        for n in NETS:
            if n in self.nets:
                out[f"sparse/{n}/sparsity"] = self.sparsity(n)
                out[f"sparse/{n}/lr_scale"] = self.lr[n].scale
                if per_layer and n in self.targets:
                    for name, d in self.layer_density(n).items():
                        out[f"sparse/{n}/kept/{name}"] = d
        out.update(self.strategy.stats())
        return out

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        """Everything needed to continue the same schedule; plain tensors / numbers / strings only, so a
        snapshot holding it loads with torch.load(weights_only=True)."""
        return {
            "version": STATE_VERSION,
            "config": config_to_dict(self.config),
            "iteration": self.iteration,
            "nimg": self.nimg,
            "phase": self.current_phase(),
            "lr_scale": {n: self.lr[n].scale for n in self.nets},
            "metric_history": list(self.metric_history),
            "flops": self.flops.state_dict(),
            "tensors": {k: t.detach().clone() for k, t in self.strategy.tensors()},
            "method_state": self.strategy.state_dict(),
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Restore a saved controller. Raises ConfigError (nothing changed) if it came from another config."""
        if not isinstance(state, dict) or "version" not in state:
            raise ConfigError("not a sparse_core controller state (no 'version')")
        if state["version"] != STATE_VERSION:
            raise ConfigError(f"controller state version {state['version']!r} is not supported by this sparse_core "
                              f"(it writes and reads version {STATE_VERSION})")
        mine = config_to_dict(self.config)
        theirs = dict(state["config"]) if isinstance(state.get("config"), dict) else {}
        if theirs != mine:
            keys = sorted(set(mine) | set(theirs), key=lambda k: (k != "method", k))
            diff = [f"{k}: saved {theirs.get(k, '<unset>')!r}, given {mine.get(k, '<unset>')!r}"
                    for k in keys if mine.get(k, "<unset>") != theirs.get(k, "<unset>")]
            raise ConfigError("the snapshot was written with different sparse-training settings; " + "; ".join(diff))
        config_from_dict(theirs)   # the saved settings are themselves valid
        tensors = state["tensors"]
        items = list(self.strategy.tensors())
        expected = {k for k, _ in items}
        if set(tensors) != expected:
            missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
            raise ConfigError(f"controller state does not match these networks (same settings, different "
                              f"architecture?): {len(missing)} masked tensors missing (e.g. {missing[:3]}), "
                              f"{len(extra)} unexpected (e.g. {extra[:3]})")
        for k, dst in items:
            if tuple(tensors[k].shape) != tuple(dst.shape):
                raise ConfigError(f"controller state tensor {k!r} has shape {tuple(tensors[k].shape)}, "
                                  f"expected {tuple(dst.shape)}")
        method_state = state.get("method_state", {})
        self.strategy.check_state(method_state)
        # All checks passed: now change things.
        for k, dst in items:
            dst.copy_(tensors[k])
        self.iteration = int(state["iteration"])
        self.nimg = int(state["nimg"])
        self.metric_history = [float(v) for v in state["metric_history"]]
        self.flops.load_state_dict(state["flops"])
        self.strategy.load_state_dict(method_state, state["phase"])
        # Restored optimizers / schedulers carry the scale they were saved with (lr.MARK), so this only changes
        # those not restored yet or never scaled; bind() before or after gives the same LRs.
        for n, sc in state["lr_scale"].items():
            if n in self.lr:
                self.lr[n].set_scale(float(sc))

    # ------------------------------------------------------------------ export
    def export(self, which: str = "G", sparse: bool = True) -> nn.Module:
        """A plain copy of G / G_ema / D with the vendor's own state_dict keys (no masks, thresholds or hooks).

        sparse=True applies the method's mask (Re-GAN: the current mask in a sparse phase, otherwise a fresh
        magnitude prune at ρ, i.e. the model a sparse phase would start from; RG-GAN: step(|W| − t)), the
        papers' "Sparse_*" model; sparse=False keeps every weight, the "Dense_*" model.
        """
        ema_list = which == "G_ema" and self._ema_list is not None
        source = {"G": self.nets.get("G"), "D": self.nets.get("D"),
                  "G_ema": self.nets["G"] if ema_list else self.G_ema}.get(which)
        if source is None:
            raise ConfigError(f"cannot export {which!r}: expected 'G', 'G_ema' or 'D' among the bound networks")
        net_name = "D" if which == "D" else "G"
        out = copy.deepcopy(source)
        with torch.no_grad():
            if ema_list:   # G's structure with the EMA's values
                for k, p in out.named_parameters():
                    if k in self._ema_index:
                        p.copy_(self._ema_list[self._ema_index[k]])
            for s in self.sites.get(net_name, []) if net_name in self.targets else []:
                self.strategy.export_site(s.module(out), s, sparse)
        out.train(source.training)
        return out


class _AddedParamsAdapter:
    """Optimizer load pre-hook: an optimizer state saved without the method's own parameters (a dense or
    Re-GAN run's, no RG-GAN thresholds) gets fresh entries for them, so the loop's own
    `optimizer.load_state_dict` succeeds; `integration.load_resume_state` then decides whether that snapshot
    may start this run. Holds the controller weakly (optimizers outlive nothing, but never keep it alive)."""

    def __init__(self, ctrl: SparseController) -> None:
        self._ctrl = weakref.ref(ctrl)

    def __call__(self, optimizer, state_dict):
        ctrl = self._ctrl()
        if ctrl is None:
            return None
        extra = {id(t) for t in ctrl.strategy.added_parameters()}
        groups = state_dict.get("param_groups", [])
        if not extra or len(groups) != len(optimizer.param_groups):
            return None
        plain = [[p for p in g["params"] if id(p) not in extra] for g in optimizer.param_groups]
        if not all(len(sg["params"]) == len(pl) for sg, pl in zip(groups, plain)) or \
                all(len(sg["params"]) == len(g["params"]) for sg, g in zip(groups, optimizer.param_groups)):
            return None
        next_id = 1 + max((i for sg in groups for i in sg["params"]), default=-1)
        new_groups = []
        for sg, g in zip(groups, optimizer.param_groups):
            saved = iter(sg["params"])
            ids = []
            for p in g["params"]:
                if id(p) in extra:
                    ids.append(next_id)
                    next_id += 1
                else:
                    ids.append(next(saved))
            new_groups.append({**sg, "params": ids})
        return {**state_dict, "param_groups": new_groups}


def prepare(config, G: nn.Module, D: nn.Module | None = None,
            masks: dict[str, dict[str, torch.Tensor]] | None = None, **method_kwargs) -> SparseController:
    """Attach the method's masks or thresholds to G (and D) and return the controller.

    Call it after the networks are built, before copying G into G_ema and before creating optimizers:
    thresholds are new parameters the optimizers must see, masks are buffers the copy must carry.
    `masks=` ({'G': {site name: mask}}) and `init=` are the ticket method's fixed mask and rewind values.
    """
    if masks is not None:
        method_kwargs["masks"] = masks
    return SparseController(config, G, D, **method_kwargs)
