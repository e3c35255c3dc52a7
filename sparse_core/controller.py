"""SparseController: the one object a training loop talks to (call order: README "sparse_core API"). It holds
what every method shares (the `Context`, LR scaling, FLOPs, persistence), checks the call order and loaded state,
and delegates everything method-specific to the method, which sees only the context."""
import copy
import functools
import itertools
import math
import warnings
import weakref
from typing import Callable, Sequence

import torch
from torch import nn

from . import accounting, methods, ops
from .accounting import FlopAccount
from .config import ConfigError, config_to_dict, count, number, require
from .lr import LRScaler
from .selection import find_sites

STATE_VERSION = 2
# higher_is_better of well-known metrics by name prefix (lower-is-better first: 'ppl' before 'pr')
_DIRECTIONS = {False: ("fid", "kid", "ppl", "lpips"), True: ("is", "pr", "precision", "recall", "confident")}


def metric_direction(name: str | None) -> bool | None:
    return next((higher for higher, prefixes in _DIRECTIONS.items() if (name or "").lower().startswith(prefixes)), None)


class SparseController:
    def __init__(self, config, G: nn.Module, D: nn.Module | None = None, **method_kwargs) -> None:
        name = getattr(type(config), "method", None)
        known = ", ".join(m.config_cls.__name__ for m in methods.all_methods())
        require(name in methods.names() and isinstance(config, methods.get(name).config_cls),
                f"config must be one of the method configs ({known}), got {type(config).__name__}")
        for n, net in (("G", G), ("D", D)):
            require(isinstance(net, nn.Module) or (n == "D" and net is None),
                    f"{n} must be an nn.Module, got {type(net).__name__}")
        self.config, self.method = config, name
        self.nets: dict[str, nn.Module] = {"G": G} if D is None else {"G": G, "D": D}
        targets = tuple(config.targets())
        for t in targets:
            require(t in self.nets, f"target {config.target!r} needs network {t} but it was not given to prepare()")
        sites = {n: find_sites(self.nets[n], config.scope, config.include, config.exclude, net_name=n) for n in targets}
        self.ctx = methods.Context(self.nets, targets, sites)
        self.from_dense = False            # integration.controller_from_flags: --sparse-from-dense
        self.metric_history: list[float] = []
        self.metric_higher_is_better: bool | None = None
        # run-time counted passes are charged at the density the method reports for each layer
        self.flops = FlopAccount(density=self._owner_density)
        self._ops_since = ops.backend_counts()   # stats() reports which backend served the ops from here on
        self.strategy = methods.get(name)(self.ctx, config, **method_kwargs)
        self.strategy.attach()
        self.lr = {n: LRScaler(self.strategy.lr_scale(n)) for n in self.nets}   # reaches optimizers when bound

    # the context's fields under their public names
    targets = property(lambda self: self.ctx.targets)
    sites = property(lambda self: self.ctx.sites)
    iteration = property(lambda self: self.ctx.iteration)
    paused = property(lambda self: self.ctx.paused)

    def _net(self, net_name: str, what: str) -> str:
        require(net_name in self.nets, f"{what}: unknown network {net_name!r}; this controller has {tuple(self.nets)}")
        return net_name

    # ------------------------------------------------------------------ bind
    def bind(self, G_ema: nn.Module | Sequence[torch.Tensor] | None = None,
             opt_G: torch.optim.Optimizer | None = None, opt_D: torch.optim.Optimizer | None = None,
             sched_G: Sequence | None = None, sched_D: Sequence | None = None) -> None:
        """Objects created after prepare(); idempotent (README "sparse_core API")."""
        given = [(n, o, s) for n, o, s in (("G", opt_G, sched_G), ("D", opt_D, sched_D))
                 if o is not None or s is not None]
        for n, opt, sch in given:
            self._net(n, f"bind(opt_{n}=...)")
            if opt is not None:
                held = {id(p) for g in getattr(opt, "param_groups", []) for p in g["params"]}
                missing = [t for t in self.strategy.added_parameters(n) if id(t) not in held]
                require(not missing, f"opt_{n} does not train {len(missing)} parameters {self.method} added to {n} "
                        f"(its thresholds): create the optimizer after sc.prepare(...), from {n}.parameters()")
        if G_ema is not None:
            self.ctx.ema.bind(G_ema)
            self.strategy.attach_ema()
        for n, opt, sch in given:
            fresh = opt is not None and opt is not self.lr[n].optimizer
            self.lr[n].bind(opt, None if sch is None else list(sch))   # a list: read twice
            if fresh:   # registered again after another optimizer: the hook is idempotent
                opt.register_load_state_dict_pre_hook(functools.partial(_with_added_params, weakref.ref(self)))

    # ------------------------------------------------------------------ training-loop hooks
    def pause(self, paused: bool = True) -> None:
        """Hold the method: dense training exactly as without sparse_core (not saved: the loop re-derives it)."""
        self.ctx.paused = bool(paused)
        self.strategy.set_paused(self.ctx.paused)

    def _owner_density(self, net_name: str, owner: str):
        return 1.0 if self.paused else self.strategy.owner_density(net_name, owner)

    def _check_bound(self, net_name: str, what: str) -> None:
        require(net_name not in self.targets or self.lr[net_name].optimizer is not None,
                f"{what} before ctrl.bind(opt_{net_name}=...): bind {net_name}'s optimizer first (the method's LR "
                f"scale and parameters reach the optimizer through it)")

    def before_step(self, net_name: str) -> None:
        self._check_bound(self._net(net_name, "before_step"), f"before_step({net_name!r})")
        if not self.paused:
            self.strategy.before_step(net_name)

    def after_step(self, net_name: str) -> None:
        if not self.paused:
            self.strategy.after_step(self._net(net_name, "after_step"))

    def optimizer_step(self, net_name: str, optimizer: torch.optim.Optimizer) -> None:
        self.before_step(net_name)
        optimizer.step()
        self.after_step(net_name)

    def after_ema(self) -> None:
        """Call after every G_ema update: pruned entries of G_ema are zeroed too (mask methods)."""
        if self.ctx.ema.bound and not self.paused:
            self.strategy.after_ema()

    def observe_real(self, real: torch.Tensor) -> None:
        """Call where the loop reads D's real batch (before augmentation): ADAPT's balance ratio scores it."""
        self.strategy.observe_real(real)

    def regularizer(self, net_name: str) -> torch.Tensor:
        """The method's loss term for `net_name` (RG-GAN: λ·Σexp(−t) while sparse), else a zero tensor."""
        net = self.nets[self._net(net_name, "regularizer")]
        term = None if self.paused else self.strategy.regularizer(net_name)
        return torch.zeros((), device=next(net.parameters()).device) if term is None else term

    def feed_metric(self, value: float, higher_is_better: bool | None = None, name: str | None = None) -> str | None:
        """The loop's periodic quality metric and its direction; returns the coming period's mode, if any."""
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"feed_metric got {value} ({name or 'metric'}): a non-finite metric cannot steer training")
        direction = metric_direction(name) if higher_is_better is None else bool(higher_is_better)
        require(direction is not None or not self.strategy.uses_metric,
                f"feed_metric: the direction of metric {name or '(unnamed)'!r} is unknown; pass higher_is_better=True "
                f"(e.g. IS, precision) or False (e.g. FID)")
        if direction is not None and self.metric_higher_is_better not in (None, direction):
            raise ConfigError(f"feed_metric: metric {name or ''!r} has higher_is_better={direction}, the values fed "
                              f"before had {self.metric_higher_is_better}: feed one metric throughout a run")
        if direction is not None:
            self.metric_higher_is_better = direction
        self.metric_history.append(value)
        return self.strategy.on_metric([-v if direction else v for v in self.metric_history])

    def advance(self, real_images: int) -> str | None:
        """Once per training iteration with the real images D saw; returns the phase entered (Re-GAN) or None."""
        if not count(real_images) or real_images < 0:
            raise ValueError(f"real_images must be an integer >= 0, got {real_images!r}")
        for n in self.targets:
            self._check_bound(n, "advance()")
        self.flops.add_iteration()
        self.ctx.nimg += int(real_images)
        if self.paused:
            return None
        self.ctx.iteration += 1
        entered = self.strategy.on_iteration(self.iteration)
        if entered is not None:
            for n in self.nets:
                self.lr[n].set_scale(self.strategy.lr_scale(n))
        return entered

    def check_run_length(self, iterations: int, warn: bool = True) -> str | None:
        """Warn (and return the message) when a run of `iterations` never reaches the method's sparse training."""
        msg = self.strategy.schedule_warning(int(iterations)) if self.targets else None
        if msg and warn:
            warnings.warn(f"sparse_core ({self.method}): {msg}", stacklevel=2)
        return msg

    def measure_flops(self, net_name: str, run: Callable[[], object], batch: int,
                      forward_samples: float | None = None, train_samples: float | None = None) -> None:
        """Count `net_name`'s FLOPs per sample once (run(): one forward of `batch` samples), then charge every
        executed training pass, or the declared cost per iteration (forward_samples / train_samples)."""
        owners = {s.layer for s in self.sites.get(self._net(net_name, "measure_flops"), [])}
        declared = None if forward_samples is None and train_samples is None else \
            (float(forward_samples or 0.0), float(train_samples or 0.0))
        self.flops.measure(net_name, self.nets[net_name], run, batch, owners, declared)

    # ------------------------------------------------------------------ reporting
    def layer_density(self, net_name: str) -> dict[str, float]:
        """Kept fraction of every masked tensor as the next forward sees it (non-finite weights raise)."""
        if self._net(net_name, "layer_density") not in self.targets:
            return {}
        for s in self.sites[net_name]:
            if not bool(torch.isfinite(s.param(self.nets[net_name])).all()):
                raise FloatingPointError(f"{net_name} layer {s.name!r} holds non-finite weights (NaN / inf): "
                                         f"sparse_core does not report them as pruned")
        if self.paused:   # the forward reads every weight while the method is held
            return {s.name: 1.0 for s in self.sites[net_name]}
        return self.strategy.layer_density(net_name)

    def sparsity(self, net_name: str, densities: dict[str, float] | None = None) -> float:
        """Fraction of masked-tensor entries the next forward prunes in `net_name` (0 if not targeted)."""
        dens = self.layer_density(net_name) if densities is None else densities
        if not dens:
            return 0.0
        sizes = {s.name: s.param(self.nets[net_name]).numel() for s in self.sites[net_name]}
        return 1.0 - sum(dens[k] * sizes[k] for k in sizes) / sum(sizes.values())

    def current_phase(self) -> str:
        return self.strategy.phase()

    def stats(self) -> dict:
        """Flat dict for stats.jsonl (keys of SPEC §3)."""
        lead = "G" if "G" in self.targets or not self.targets else self.targets[0]
        out = {"sparse/method": self.method, "sparse/phase": "paused" if self.paused else self.current_phase(),
               "sparse/iteration": self.iteration, "sparse/lr_scale": self.lr[lead].scale,
               "progress/real_images": self.ctx.nimg, "flops/train_total": float(self.flops.total),
               "flops/train_dense_equiv": float(self.flops.dense_equiv)}
        for n in self.nets:
            dens = self.layer_density(n)
            out[f"sparse/{n}/sparsity"] = self.sparsity(n, dens)
            out[f"sparse/{n}/lr_scale"] = self.lr[n].scale
            out.update({f"sparse/{n}/kept/{k}": d for k, d in dens.items()})
        # share of this run's calls served by the native kernels
        out.update({f"sparse/native/{family}": share for family, share in ops.native_shares(self._ops_since).items()})
        out.update(self.strategy.stats())
        return out

    def progress(self) -> str:
        """Progress-line fields from stats() (one source): `sparse <method>/<phase>  G 31.2%  D 1.5%  flops -14.8%`
        (each network's sparsity, FLOPs so far against the dense run; `flops ?` before any is charged)."""
        s = self.stats()
        dense, nets = s["flops/train_dense_equiv"], "".join(f"  {n} {100 * s[f'sparse/{n}/sparsity']:.1f}%"
                                                            for n in self.nets)
        flops = f"{100 * (s['flops/train_total'] / dense - 1):+.1f}%" if dense else "?"
        return f"sparse {s['sparse/method']}/{s['sparse/phase']}{nets}  flops {flops}"

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        """Everything needed to continue the same schedule; plain values only (torch.load(weights_only=True))."""
        return {"version": STATE_VERSION, "config": config_to_dict(self.config), "iteration": self.iteration,
                "nimg": self.ctx.nimg, "phase": self.current_phase(),
                "lr_scale": {n: self.lr[n].scale for n in self.nets}, "metric_history": list(self.metric_history),
                "metric_higher_is_better": self.metric_higher_is_better, "flops": self.flops.state_dict(),
                "tensors": {k: t.detach().clone() for k, t in self.strategy.tensors()},
                "method_state": self.strategy.state_dict()}

    @torch.no_grad()
    def load_state_dict(self, state: dict | None, allow_dense: bool = False, source: str | None = None) -> None:
        """The one resume entry point: everything is checked before anything changes (README "sparse_core API")."""
        where = f"{source}: " if source else ""
        dense = not state or (isinstance(state, dict) and isinstance(state.get("config"), dict)
                              and state["config"].get("method") == "none")
        if dense and self.targets:
            require(allow_dense or self.from_dense, f"{where}the snapshot was written by a dense run (--sparse none); "
                    f"pass --sparse-from-dense (allow_dense=True) to start --sparse {self.method} from it")
            self.strategy.restart_from_dense()
            return
        if not state:
            return
        self._check_state(state, where)
        for k, dst in self.strategy.tensors():
            dst.copy_(state["tensors"][k])
        self.ctx.iteration, self.ctx.nimg = int(state["iteration"]), int(state["nimg"])
        self.metric_history = [float(v) for v in state["metric_history"]]
        self.metric_higher_is_better = state.get("metric_higher_is_better")
        self.flops.load_state_dict(state["flops"])
        self.strategy.load_state_dict(state.get("method_state", {}), state["phase"])
        # restored optimizers carry the scale they were saved with (lr.MARK): bind() before or after is the same
        for n, sc in state["lr_scale"].items():
            if n in self.lr:
                self.lr[n].set_scale(float(sc))

    def _check_state(self, state, where: str) -> None:
        def check(ok, entry, why):
            require(ok, f"{where}sparse_core state entry {entry!r} {why}")

        require(isinstance(state, dict) and "version" in state,
                f"{where}not a sparse_core controller state (no 'version')")
        check(state["version"] == STATE_VERSION, "version",
              f"is {state['version']!r}; this sparse_core reads and writes {STATE_VERSION}")
        mine, theirs = config_to_dict(self.config), state.get("config")
        check(isinstance(theirs, dict), "config", "is not a dict of settings")
        if theirs != mine:
            keys = sorted(set(mine) | set(theirs), key=lambda k: (k != "method", k))
            diff = [f"{k}: saved {theirs.get(k, '<unset>')!r}, given {mine.get(k, '<unset>')!r}"
                    for k in keys if mine.get(k, "<unset>") != theirs.get(k, "<unset>")]
            raise ConfigError(f"{where}the snapshot was written with different sparse-training settings; "
                              + "; ".join(diff))
        for k in ("iteration", "nimg"):
            check(count(state.get(k)) and state[k] >= 0, k, f"must be an integer >= 0, got {state.get(k)!r}")
        phases, phase = self.strategy.phases, state.get("phase")
        check(isinstance(phase, str) and (not phases or phase in phases), "phase",
              f"is {phase!r}; {self.method}'s phases are {phases}")
        hist, lr = state.get("metric_history"), state.get("lr_scale")
        check(isinstance(hist, list) and all(number(v) for v in hist), "metric_history",
              "must be a list of finite numbers")
        check(state.get("metric_higher_is_better") in (None, True, False), "metric_higher_is_better",
              "must be true, false or null")
        check(isinstance(lr, dict) and all(number(v) and v > 0 for v in lr.values()), "lr_scale",
              "must map networks to finite scales > 0")
        check(FlopAccount.state_ok(state.get("flops")), "flops",
              "is not a FLOP account (finite totals, per-sample costs, declared costs)")
        tensors, items = state.get("tensors"), list(self.strategy.tensors())
        got, expected = set(tensors) if isinstance(tensors, dict) else set(), {k for k, _ in items}
        missing, extra = sorted(expected - got), sorted(got - expected)
        check(isinstance(tensors, dict) and got == expected, "tensors",
              f"does not match these networks (same settings, different architecture?): "
              f"{len(missing)} missing (e.g. {missing[:3]}), {len(extra)} unexpected (e.g. {extra[:3]})")
        for k, dst in items:
            t = tensors[k]
            check(isinstance(t, torch.Tensor) and tuple(t.shape) == tuple(dst.shape) and t.is_floating_point(),
                  f"tensors.{k}", f"must be a float tensor of shape {tuple(dst.shape)}, got "
                                  f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
            why = self.strategy.check_tensor(k, t) or (None if bool(torch.isfinite(t).all()) else "has non-finite values")
            check(not why, f"tensors.{k}", why)
        for n in self.targets:
            masks = [t for k, t in tensors.items() if k.startswith(n + "/") and k.endswith("_mask")]
            check(not masks or any(bool(t.any()) for t in masks), "tensors",
                  f"masks every weight of {n} (all-zero masks): that network could not train")
        method_state = state.get("method_state", {})
        check(isinstance(method_state, dict), "method_state", "must be a dict")
        self.strategy.check_state(method_state)

    # ------------------------------------------------------------------ export
    def export(self, which: str = "G", sparse: bool = True) -> nn.Module:
        """A plain copy of G / G_ema / D with the vendor's state_dict keys: the "Sparse_*" or the "Dense_*" model."""
        ema = self.ctx.ema
        ema_list = which == "G_ema" and ema.is_list
        source = {"G": self.nets.get("G"), "D": self.nets.get("D"),
                  "G_ema": self.nets["G"] if ema_list else ema.module}.get(which)
        require(source is not None, f"cannot export {which!r}: expected 'G', 'G_ema' or 'D' among the bound networks")
        net_name = "D" if which == "D" else "G"
        out = _copy(source)
        with torch.no_grad():
            if ema_list:   # G's structure with the EMA's values
                for k, p in out.named_parameters():
                    if k in ema.values:
                        p.copy_(ema.values[k])
            for s in self.sites.get(net_name, []):
                self.strategy.export_site(s.module(out), s, sparse)
            self.strategy.export_done(out)
        accounting.strip(out)   # FLOP-charging hooks (inert on a copy) go too
        out.train(source.training)
        return out

    def export_files(self, out_dir: str) -> list[str]:
        """The method's own end-of-run files (tickets: ticket.pt) written into `out_dir`."""
        return self.strategy.export_files(out_dir)


def _copy(net: nn.Module) -> nn.Module:
    """deepcopy, also of a network holding non-leaf weights a pre-hook derived (weight norm, equalised LR), which
    deepcopy refuses: the copy gets them detached (its next forward derives them again)."""
    derived = [(m, k, v) for m in net.modules() for k, v in m.__dict__.items()
               if isinstance(v, torch.Tensor) and v.grad_fn is not None]
    try:
        for m, k, v in derived:
            m.__dict__[k] = v.detach()
        return copy.deepcopy(net)
    finally:
        for m, k, v in derived:
            m.__dict__[k] = v


def _with_added_params(ctrl_ref, optimizer, state_dict):
    """Optimizer load pre-hook: a state saved without the method's added parameters (RG-GAN thresholds) gets fresh
    entries for them, so the loop's own load succeeds; the controller's load decides whether it may start this run."""
    ctrl = ctrl_ref()
    extra = {id(t) for t in ctrl.strategy.added_parameters()} if ctrl is not None else set()
    groups = state_dict.get("param_groups", [])
    if not extra or len(groups) != len(optimizer.param_groups):
        return None
    plain = [[p for p in g["params"] if id(p) not in extra] for g in optimizer.param_groups]
    if not all(len(sg["params"]) == len(pl) for sg, pl in zip(groups, plain)) or \
            all(len(sg["params"]) == len(g["params"]) for sg, g in zip(groups, optimizer.param_groups)):
        return None
    fresh = itertools.count(1 + max((i for sg in groups for i in sg["params"]), default=-1))
    saved = iter([i for sg in groups for i in sg["params"]])   # each group holds as many as it has plain params
    new_groups = [{**sg, "params": [next(fresh) if id(p) in extra else next(saved) for p in g["params"]]}
                  for sg, g in zip(groups, optimizer.param_groups)]
    return {**state_dict, "param_groups": new_groups}


def prepare(config, G: nn.Module, D: nn.Module | None = None, **method_kwargs) -> SparseController:
    """Attach the method's masks or thresholds to G (and D) and return the controller (README "sparse_core API")."""
    return SparseController(config, G, D, **method_kwargs)
