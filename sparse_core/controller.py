"""SparseController: the one object a training loop talks to.

Call order in a training loop (see README "sparse_core API"):

    ctrl = sparse_core.prepare(cfg, G=G, D=D)            # after construction/resume, before G_ema copy and optimizers
    G_ema = copy.deepcopy(G)                             # masks / thresholds are copied with it
    ctrl.bind(G_ema=G_ema, opt_G=opt_G, opt_D=opt_D, sched_G=[...], sched_D=[...])
    ctrl.measure_flops('G', lambda: G(z), batch=len(z), train_samples=...)   # optional accounting
    loop:
        loss_D = loss_D + ctrl.regularizer('D');  loss_D.backward()
        ctrl.optimizer_step('D', opt_D)                  # = before_step('D'); opt_D.step(); after_step('D')
        ... same for G ...
        (EMA update);  ctrl.after_ema()
        ctrl.advance(real_images_this_iteration)         # counters, FLOPs, Re-GAN phase changes
        at metric time:  ctrl.feed_metric(fid)           # RG-GAN augmented regeneration
        per tick:        stats.update(ctrl.stats())
        snapshot:        snap['sparse'] = ctrl.state_dict();   resume: ctrl.load_state_dict(snap['sparse'])
    end: sparse_G, dense_G = ctrl.export('G_ema', sparse=True), ctrl.export('G_ema', sparse=False)
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
import torch.distributed as dist
from torch import nn

from . import regan, rggan
from .accounting import FlopAccount, IterationCost
from .config import ConfigError, ReGANConfig, RGGANConfig, TicketConfig, config_from_dict, config_to_dict
from .lr import LRScaler
from .selection import OWN_SUFFIXES, Site, find_sites

STATE_VERSION = 1
NETS = ("G", "D")


def _broadcast(t: torch.Tensor) -> None:
    """Keep masks bit-identical on every DDP rank (rank 0 decides)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast(t, src=0)


class SparseController:
    def __init__(self, config, G: nn.Module, D: nn.Module | None = None,
                 masks: dict[str, dict[str, torch.Tensor]] | None = None) -> None:
        if not isinstance(config, (ReGANConfig, RGGANConfig, TicketConfig)):
            raise ConfigError(f"config must be ReGANConfig, RGGANConfig or TicketConfig, got {type(config).__name__}")
        if not isinstance(G, nn.Module):
            raise ConfigError(f"G must be an nn.Module, got {type(G).__name__}")
        if D is not None and not isinstance(D, nn.Module):
            raise ConfigError(f"D must be an nn.Module or None, got {type(D).__name__}")
        self.config = config
        self.method = config.method
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
        self.iteration = 0
        self.nimg = 0
        self.metric_history: list[float] = []
        self.flops = FlopAccount()
        self._stash: dict[str, list] = {}
        self._owner_density: dict[tuple[str, str], object] = {}

        if self.method == "rggan":
            self.mode = "sparse"
            for n in self.targets:
                self._install_thresholds(self.nets[n], n)
        else:
            for n in self.targets:
                for s in self.sites[n]:
                    p = s.param(self.nets[n])
                    s.module(self.nets[n]).register_buffer(s.mask_attr, torch.ones_like(p.detach()))
            if self.method == "regan":
                self._init_stats = {(n, s.name): (float(s.param(self.nets[n]).detach().float().mean()),
                                                  regan.init_std(s.param(self.nets[n])))
                                    for n in self.targets for s in self.sites[n]}
                self.phase = regan.phase_at(0, config.warmup, config.interval)
                if self.phase == regan.SPARSE:
                    self._prune()
            else:  # fixed ticket mask
                self.phase = "ticket"
                self._load_ticket_masks(masks or {})
        for n in self.nets:
            self.lr[n].scale = self._lr_scale_for(n)   # applied to optimizers when they are bound
        self._refresh_static_density()

    # ------------------------------------------------------------------ set-up
    def _install_thresholds(self, net: nn.Module, net_name: str) -> set[str]:
        """Thresholds on every owner of `net` that lacks them; returns the owners that got new ones."""
        fresh: set[str] = set()
        by_owner: dict[str, list[Site]] = {}
        for s in self.sites[net_name]:
            by_owner.setdefault(s.module_name, []).append(s)
        for owner, sites in by_owner.items():
            module = net.get_submodule(owner) if owner else net
            if rggan.state_of(module) is None:
                rggan.install(module, [(s.attr, s.channel_dim) for s in sites], self.config.official)
                fresh.add(owner)
        return fresh

    def _load_ticket_masks(self, masks: dict[str, dict[str, torch.Tensor]]) -> None:
        for n in self.targets:
            given = masks.get(n, {})
            for s in self.sites[n]:
                buf = getattr(s.module(self.nets[n]), s.mask_attr)
                if s.name in given:
                    if tuple(given[s.name].shape) != tuple(buf.shape):
                        raise ConfigError(f"masks[{n!r}][{s.name!r}] has shape {tuple(given[s.name].shape)}, "
                                          f"expected {tuple(buf.shape)}")
                    buf.copy_(given[s.name])
            self._apply_masks(self.nets[n], n)

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

    def _bind_ema(self, G_ema) -> None:
        if isinstance(G_ema, nn.Module):
            self._bind_ema_module(G_ema)
        elif isinstance(G_ema, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in G_ema):
            self._bind_ema_list(list(G_ema))
        else:
            raise ConfigError(f"G_ema must be an nn.Module or a list of tensors aligned with G.parameters(), "
                              f"got {type(G_ema).__name__}")

    def _bind_ema_list(self, tensors: list) -> None:
        G = self.nets["G"]
        named = list(G.named_parameters())
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
        self.after_ema()

    def _ema_tensor(self, s: Site) -> torch.Tensor:
        """G_ema's copy of site `s` (module or list EMA)."""
        if self._ema_list is not None:
            return self._ema_list[self._ema_index[s.name]]
        return s.module(self.G_ema)._parameters[s.attr]

    def _bind_ema_module(self, G_ema: nn.Module) -> None:
        if G_ema is self.nets["G"]:
            raise ConfigError("G_ema is G itself; bind a copy (copy.deepcopy(G)) or leave G_ema out")
        if "G" in self.targets:
            G = self.nets["G"]
            for s in self.sites["G"]:
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
        if "G" not in self.targets:
            return
        G = self.nets["G"]
        if self.method == "rggan":
            # A copy made after prepare() (or restored from a snapshot) already holds its thresholds: keep them.
            # Only a copy made before prepare() gets thresholds here, initialised from G's.
            fresh = self._install_thresholds(G_ema, "G")
            with torch.no_grad():
                for s in self.sites["G"]:
                    m, m_ema = s.module(G), s.module(G_ema)
                    if s.threshold_attr not in m_ema._parameters:
                        raise ConfigError(f"G_ema module {s.module_name!r} has RG-GAN hooks but no {s.threshold_attr}")
                    if s.module_name in fresh:
                        m_ema._parameters[s.threshold_attr].copy_(m._parameters[s.threshold_attr])
            self._set_mode(self.mode)
        else:
            # Masks are schedule state, not EMA state: G_ema's always equals G's.
            for s in self.sites["G"]:
                m_ema = s.module(G_ema)
                mask = getattr(s.module(G), s.mask_attr)
                if s.mask_attr not in m_ema._buffers:
                    m_ema.register_buffer(s.mask_attr, mask.detach().clone())
                else:
                    m_ema._buffers[s.mask_attr].copy_(mask)
            self.after_ema()

    # ------------------------------------------------------------------ masking around optimizer steps
    def _masking_active(self) -> bool:
        if self.method == "rggan":
            return self.mode == "sparse"
        return self.phase in (regan.SPARSE, "ticket")

    @torch.no_grad()
    def _apply_masks(self, net: nn.Module, net_name: str, grads: bool = False) -> None:
        for s in self.sites[net_name]:
            m = s.module(net)
            p = m._parameters[s.attr]
            mask = m._buffers[s.mask_attr]
            if grads:
                if p.grad is not None:
                    p.grad.mul_(mask)
            else:
                p.mul_(mask)

    def before_step(self, net_name: str) -> None:
        """Call right before `opt.step()` of network `net_name` (after backward)."""
        if net_name not in self.targets or not self._masking_active():
            return
        net = self.nets[net_name]
        if self.method == "rggan":
            # Snapshot what must stay frozen: the optimizer (momentum, weight decay) may move entries with zero grad.
            stash = []
            for s in self.sites[net_name]:
                m = s.module(net)
                w, t = m._parameters[s.attr], m._parameters[s.threshold_attr]
                stash.append((w.detach().clone(), rggan.hard_mask(w, t, s.channel_dim)))
            self._stash[net_name] = stash
        else:
            self._apply_masks(net, net_name, grads=True)

    def after_step(self, net_name: str) -> None:
        """Call right after `opt.step()` of network `net_name`."""
        if net_name not in self.targets or not self._masking_active():
            return
        net = self.nets[net_name]
        if self.method == "rggan":
            stash = self._stash.pop(net_name, None)
            if stash is None:
                raise RuntimeError(f"after_step({net_name!r}) without before_step({net_name!r})")
            with torch.no_grad():
                for s, (w_before, keep) in zip(self.sites[net_name], stash):
                    m = s.module(net)
                    w, t = m._parameters[s.attr], m._parameters[s.threshold_attr]
                    torch.where(keep, w, w_before, out=w)   # in place: no temporary of the weight's size
                    d = rggan.apply_reset_rule(keep, t, self.config.reset_density)
                    self._owner_density[(net_name, s.module_name)] = d
        else:
            self._apply_masks(net, net_name)

    def optimizer_step(self, net_name: str, optimizer: torch.optim.Optimizer) -> None:
        self.before_step(net_name)
        optimizer.step()
        self.after_step(net_name)

    def after_ema(self) -> None:
        """Call after every G_ema update: pruned entries of G_ema are zeroed too (Re-GAN / tickets)."""
        if "G" not in self.targets or self.method == "rggan" or not self._masking_active():
            return
        if self.G_ema is not None:
            self._apply_masks(self.G_ema, "G")
        elif self._ema_list is not None:
            with torch.no_grad():
                for s in self.sites["G"]:
                    self._ema_tensor(s).mul_(s.module(self.nets["G"])._buffers[s.mask_attr])

    # ------------------------------------------------------------------ Re-GAN phase changes
    def _networks_with_sites(self, net_name: str):
        yield self.nets[net_name]
        if net_name == "G" and self.G_ema is not None:
            yield self.G_ema

    @torch.no_grad()
    def _prune(self) -> None:
        rho = self.config.sparsity
        for n in self.targets:
            for s in self.sites[n]:
                mask = regan.magnitude_mask(s.param(self.nets[n]), rho)
                _broadcast(mask)
                for net in self._networks_with_sites(n):
                    m = s.module(net)
                    m._buffers[s.mask_attr].copy_(mask)
                    m._parameters[s.attr].mul_(mask)
                if n == "G" and self._ema_list is not None:
                    self._ema_tensor(s).mul_(mask)

    @torch.no_grad()
    def _grow(self) -> None:
        for n in self.targets:
            for s in self.sites[n]:
                m = s.module(self.nets[n])
                mask = m._buffers[s.mask_attr]
                if self.config.regrow == "random":
                    mean, std = self._init_stats[(n, s.name)]
                    fresh = regan.fresh_values(m, s.attr, mean, std)
                    _broadcast(fresh)
                    p = m._parameters[s.attr]
                    p.copy_(torch.where(mask.bool(), p, fresh))
                for net in self._networks_with_sites(n):
                    s.module(net)._buffers[s.mask_attr].fill_(1)

    def _lr_scale_for(self, net_name: str) -> float:
        if self.method == "regan" and net_name in self.targets and self.phase == regan.DENSE:
            return float(self.config.dense_lr_scale)
        return 1.0

    def _enter_phase(self, phase: str) -> None:
        if phase == regan.SPARSE:
            self._prune()
        elif phase == regan.DENSE:
            self._grow()
        self.phase = phase
        for n in self.nets:
            self.lr[n].set_scale(self._lr_scale_for(n))
        self._refresh_static_density()

    # ------------------------------------------------------------------ RG-GAN modes
    def _set_mode(self, mode: str) -> None:
        self.mode = mode
        nets = [self.nets[n] for n in self.targets] + ([self.G_ema] if self.G_ema is not None else [])
        for net in nets:
            for m in net.modules():
                st = rggan.state_of(m)
                if st is not None:
                    st.active = mode == "sparse"

    def regularizer(self, net_name: str) -> torch.Tensor:
        """RG-GAN's λ·Σexp(−t) for `net_name`'s thresholds, to add to that network's loss (0 otherwise).

        Zero while dense: the thresholds then do not act on the forward, and pushing them up blindly would
        prune by stale thresholds on the return to sparse training.
        """
        net = self.nets[net_name]
        if self.method != "rggan" or net_name not in self.targets or self.mode != "sparse":
            return torch.zeros((), device=next(net.parameters()).device)
        ts = [s.module(net)._parameters[s.threshold_attr] for s in self.sites[net_name]]
        return rggan.regularizer(ts, self.config.lam)

    def feed_metric(self, value: float) -> str | None:
        """Give the loop's periodic quality metric (lower is better, e.g. FID of G_ema) to augmented regeneration.

        Returns the mode for the coming period ('sparse' / 'dense') or None when the method does not use it.
        """
        value = float(value)
        if value != value:
            raise ValueError("feed_metric got NaN")
        self.metric_history.append(value)
        if self.method != "rggan" or not self.config.augmented:
            return None
        decision = rggan.regeneration_decision(self.metric_history, self.config.history_weights)
        if decision is not None and decision != self.mode:
            self._set_mode(decision)
        return self.mode

    # ------------------------------------------------------------------ iteration bookkeeping
    def advance(self, real_images: int) -> str | None:
        """Call once per training iteration with the number of real images D saw in it.

        Returns the name of the phase entered at this boundary (Re-GAN), else None.
        """
        if real_images < 0:
            raise ValueError(f"real_images must be >= 0, got {real_images}")
        self.flops.add_iteration(self._density)
        self.iteration += 1
        self.nimg += int(real_images)
        if self.method == "regan":
            nxt = regan.phase_at(self.iteration, self.config.warmup, self.config.interval)
            if nxt != self.phase:
                self._enter_phase(nxt)
                return nxt
        return None

    def measure_flops(self, net_name: str, run: Callable[[], object], batch: int,
                      forward_samples: float = 0.0, train_samples: float = 0.0) -> None:
        """Count `net_name`'s forward FLOPs per sample once (run() = one forward of `batch` samples) and say how
        many samples it processes per iteration forward-only and forward+backward."""
        if net_name not in self.nets:
            raise ConfigError(f"unknown network {net_name!r}; expected one of {tuple(self.nets)}")
        owners = {s.module_name for s in self.sites.get(net_name, [])}
        self.flops.measure(net_name, self.nets[net_name], run, batch, owners,
                           IterationCost(float(forward_samples), float(train_samples)))

    def _refresh_static_density(self) -> None:
        """Densities that only change at phase boundaries (Re-GAN, tickets), as plain floats."""
        if self.method == "rggan":
            if not self._owner_density:
                for n in self.targets:
                    for s in self.sites[n]:
                        self._owner_density[(n, s.module_name)] = 1.0
            return
        self._owner_density = {}
        for n in self.targets:
            # Ascending size: an owner with several masked tensors (scope 'all') ends up with its largest one's
            # density, i.e. the weight's, which is what its FLOPs scale with.
            for s in sorted(self.sites[n], key=lambda s: s.param(self.nets[n]).numel()):
                mask = s.module(self.nets[n])._buffers[s.mask_attr]
                self._owner_density[(n, s.module_name)] = float(mask.mean()) if self._masking_active() else 1.0

    def _density(self, net_name: str, owner: str):
        if self.method == "rggan" and self.mode != "sparse":
            return 1.0
        return self._owner_density.get((net_name, owner), 1.0)

    # ------------------------------------------------------------------ reporting
    @torch.no_grad()
    def layer_density(self, net_name: str) -> dict[str, float]:
        """Kept fraction of every masked tensor of `net_name` as the forward sees it now."""
        out = {}
        net = self.nets[net_name]
        for s in self.sites.get(net_name, []):
            m = s.module(net)
            if self.method == "rggan":
                if self.mode == "sparse":
                    w, t = m._parameters[s.attr], m._parameters[s.threshold_attr]
                    out[s.name] = float(rggan.hard_mask(w, t, s.channel_dim).float().mean())
                else:
                    out[s.name] = 1.0
            else:
                out[s.name] = float(m._buffers[s.mask_attr].mean())
        return out

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
        return self.mode if self.method == "rggan" else self.phase

    def stats(self, per_layer: bool = True) -> dict:
        """Flat dict for stats.jsonl (keys of SPEC §3)."""
        out = {
            "sparse/method": self.method,
            "sparse/phase": self.current_phase(),
            "sparse/iteration": self.iteration,
            "sparse/lr_scale": self.lr["G"].scale if "G" in self.targets else self.lr[self.targets[0]].scale,
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
        if self.method == "rggan":
            for n in self.targets:
                ts = [s.module(self.nets[n])._parameters[s.threshold_attr] for s in self.sites[n]]
                out[f"sparse/{n}/threshold_mean"] = float(torch.cat([t.detach().flatten() for t in ts]).mean())
        return out

    # ------------------------------------------------------------------ persistence
    def _tensor_items(self):
        for n in self.targets:
            for s in self.sites[n]:
                m = s.module(self.nets[n])
                attr = s.threshold_attr if self.method == "rggan" else s.mask_attr
                yield f"{n}/{s.module_name + '.' if s.module_name else ''}{attr}", m, attr

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
            "tensors": {k: (m._parameters.get(a) if a in m._parameters else m._buffers[a]).detach().clone()
                        for k, m, a in self._tensor_items()},
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Restore a saved controller. Raises ConfigError (nothing changed) if it came from another config."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ConfigError("not a sparse_core controller state (missing or unknown 'version')")
        saved = config_from_dict(state["config"])
        if saved != self.config:
            mine, theirs = config_to_dict(self.config), config_to_dict(saved)
            diff = {k: (theirs.get(k), mine.get(k)) for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k)}
            raise ConfigError("checkpoint was written with a different sparse config; differing fields "
                              "(saved, current): " + ", ".join(f"{k}={v[0]!r} vs {v[1]!r}" for k, v in sorted(diff.items())))
        tensors = state["tensors"]
        items = list(self._tensor_items())
        expected = {k for k, _, _ in items}
        if set(tensors) != expected:
            missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
            raise ConfigError(f"controller state does not match these networks: missing {missing[:5]}, "
                              f"unexpected {extra[:5]}")
        for k, m, a in items:
            dst = m._parameters[a] if a in m._parameters else m._buffers[a]
            if tuple(tensors[k].shape) != tuple(dst.shape):
                raise ConfigError(f"controller state tensor {k!r} has shape {tuple(tensors[k].shape)}, "
                                  f"expected {tuple(dst.shape)}")
        # All checks passed: now change things.
        for k, m, a in items:
            dst = m._parameters[a] if a in m._parameters else m._buffers[a]
            dst.copy_(tensors[k])
        self.iteration = int(state["iteration"])
        self.nimg = int(state["nimg"])
        self.metric_history = [float(v) for v in state["metric_history"]]
        self.flops.load_state_dict(state["flops"])
        # Restored optimizers / schedulers carry the scale they were saved with (lr.MARK), so this only changes
        # those not restored yet or never scaled; bind() before or after gives the same LRs.
        for n, sc in state["lr_scale"].items():
            if n in self.lr:
                self.lr[n].set_scale(float(sc))
        if self.method == "rggan":
            self._owner_density = {}
            self._set_mode(state["phase"])
            self._refresh_static_density()
        else:
            self.phase = state["phase"]
            if self.G_ema is not None and "G" in self.targets:
                for s in self.sites["G"]:
                    s.module(self.G_ema)._buffers[s.mask_attr].copy_(s.module(self.nets["G"])._buffers[s.mask_attr])
            self._refresh_static_density()

    # ------------------------------------------------------------------ export
    def export(self, which: str = "G", sparse: bool = True) -> nn.Module:
        """A plain copy of G / G_ema / D with the vendor's own state_dict keys (no masks, thresholds or hooks).

        sparse=True applies the masks (Re-GAN: the current mask in a sparse phase, otherwise a fresh magnitude
        prune at ρ, i.e. the model a sparse phase would start from; RG-GAN: step(|W| − t)), the papers'
        "Sparse_*" model; sparse=False keeps every weight, the "Dense_*" model.
        """
        ema_list = which == "G_ema" and self._ema_list is not None
        source = {"G": self.nets.get("G"), "D": self.nets.get("D"),
                  "G_ema": self.nets["G"] if ema_list else self.G_ema}.get(which)
        if source is None:
            raise ConfigError(f"cannot export {which!r}: expected 'G', 'G_ema' or 'D' among the bound networks")
        net_name = "D" if which == "D" else "G"
        out = copy.deepcopy(source)
        if ema_list:   # G's structure with the EMA's values
            with torch.no_grad():
                for k, p in out.named_parameters():
                    if k in self._ema_index:
                        p.copy_(self._ema_list[self._ema_index[k]])
        sites = self.sites.get(net_name, [])
        with torch.no_grad():
            for s in sites:
                m = s.module(out)
                p = m._parameters[s.attr]
                if sparse:
                    if self.method == "rggan":
                        p.mul_(rggan.hard_mask(p, m._parameters[s.threshold_attr], s.channel_dim).to(p.dtype))
                    elif self._masking_active():
                        p.mul_(m._buffers[s.mask_attr])
                    else:
                        p.mul_(regan.magnitude_mask(p, self.config.sparsity))
            for s in sites:
                m = s.module(out)
                rggan.uninstall(m)
                m._buffers.pop(s.mask_attr, None)
        out.train(source.training)
        return out


def prepare(config, G: nn.Module, D: nn.Module | None = None,
            masks: dict[str, dict[str, torch.Tensor]] | None = None) -> SparseController:
    """Attach masks (Re-GAN, tickets) or thresholds (RG-GAN) to G (and D) and return the controller.

    Call it after the networks are built (and resumed), before copying G into G_ema and before creating
    optimizers: thresholds are new parameters the optimizers must see, masks are buffers the copy must carry.
    """
    return SparseController(config, G, D, masks=masks)
