"""Training FLOPs, dense and mask-aware (SPEC §2.5). One measuring forward under a dispatch mode attributes every
ATen convolution / matrix product to the innermost module owning a masked tensor (its FLOPs scale with its
density). Then every executed training-mode forward is charged at its real batch, its backward when a gradient
reaches it (2×; 6× when it builds a graph: R1, path length), or a declared per-iteration cost is added."""
from __future__ import annotations

import dataclasses
import math
import weakref
from collections import defaultdict
from typing import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
UNOWNED = ""


def op_flops(func, args, out) -> int:
    """FLOPs of one ATen call, 0 for anything that is not a convolution or a matrix product."""
    packet = getattr(func, "overloadpacket", None)
    if packet is aten.convolution:
        # transposed: weight [Cin, Cout/groups, k...], every input element meets Cout/groups·k² weights
        return 2 * (args[0] if args[6] else out).numel() * math.prod(int(s) for s in args[1].shape[1:])
    if packet in (aten.mm, aten.addmm):
        a, b = (args[0], args[1]) if packet is aten.mm else (args[1], args[2])
        return 2 * a.shape[0] * a.shape[1] * b.shape[1]
    if packet in (aten.bmm, aten.baddbmm):
        a, b = (args[0], args[1]) if packet is aten.bmm else (args[1], args[2])
        return 2 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
    return 0


class _CountingMode(TorchDispatchMode):
    def __init__(self, owner_stack: list[str]):
        super().__init__()
        self.owner_stack = owner_stack
        self.flops: dict[str, int] = defaultdict(int)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        f = op_flops(func, args, out)
        if f:
            self.flops[self.owner_stack[-1] if self.owner_stack else UNOWNED] += f
        return out


def _leading_batch(args) -> int | None:
    for a in args:
        if isinstance(a, torch.Tensor):
            return int(a.shape[0]) if a.dim() > 0 else None
    return None


def _owner_of(name: str, owners: set[str]) -> str:
    """The innermost module in `owners` that is `name` or encloses it ('' = none)."""
    return max((o for o in owners if o in (name, "") or name.startswith(o + ".")), key=len, default=UNOWNED)


def module_flops(net: nn.Module, run: Callable[[], object]) -> dict[str, tuple[int, int]]:
    """Run `run()` (a forward of `net`) once; {module name: (FLOPs done directly by it, its summed batch: the
    leading size of the first tensor argument of each call)}."""
    names = {id(m): n for n, m in net.named_modules()}
    stack: list[str] = []
    batch: dict[str, int] = defaultdict(int)

    def push(module, args):
        n = names.get(id(module))
        if n is not None:
            stack.append(n)
            batch[n] += _leading_batch(args) or 0

    def pop(module, args, output):
        n = names.get(id(module))
        if n is not None and stack and stack[-1] == n:
            stack.pop()

    hooks = (nn.modules.module.register_module_forward_pre_hook(push),
             nn.modules.module.register_module_forward_hook(pop, always_call=True))
    mode = _CountingMode(stack)
    # eval mode and fork_rng: the measuring forward must not move BatchNorm / spectral-norm buffers or the RNG
    was_training = [(m, m.training) for m in net.modules()]
    net.eval()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad(), mode:
            run()
    finally:
        for h in hooks:
            h.remove()
        for m, t in was_training:
            m.training = t
    return {n: (f, batch.get(n, 0)) for n, f in mode.flops.items()}


class _Site:
    """Per-module charging state in the module's __dict__ (the hook is a plain function); a copy (G_ema, pickles)
    gets a detached site that charges nothing."""

    def __init__(self, account, net_name: str, owner: str, per_sample: float, module: nn.Module):
        self.account = weakref.ref(account) if account is not None else None
        self.net_name, self.owner, self.per_sample = net_name, owner, per_sample
        self.module_id = id(module)

    def __deepcopy__(self, memo):
        return _Site(None, self.net_name, self.owner, self.per_sample, _Detached)

    def __getstate__(self):
        return {"net_name": self.net_name, "owner": self.owner, "per_sample": self.per_sample}

    def __setstate__(self, state):
        self.__init__(None, state["net_name"], state["owner"], state["per_sample"], _Detached)


_Detached = object()
SITE_ATTR = "_sparse_core_flop_site"


def _charge_forward(module: nn.Module, args, kwargs, output):
    site: _Site | None = module.__dict__.get(SITE_ATTR)
    live = site is not None and site.account is not None and site.module_id == id(module) and module.training
    account = site.account() if live else None
    batch = None if account is None else _leading_batch(args)
    batch = _leading_batch(kwargs.values()) if batch is None and account is not None else batch
    if batch is None:
        return None
    flops = site.per_sample * batch
    account.charge(site.net_name, site.owner, flops)
    out = output if isinstance(output, torch.Tensor) else next(
        (o for o in (output if isinstance(output, (tuple, list)) else ()) if isinstance(o, torch.Tensor)), None)
    if out is not None and out.requires_grad:
        charged = []

        def charge_backward(grad):
            if not charged:   # a later backward through the same call (R1's second pass) is already paid for
                charged.append(True)
                # a graph-building backward will itself be differentiated: charge that second backward now
                account.charge(site.net_name, site.owner, flops * (6.0 if torch.is_grad_enabled() else 2.0))
            return None
        out.register_hook(charge_backward)
    return None


def strip(net: nn.Module) -> None:
    """Remove the charging hooks and state from `net` (an exported copy carries neither)."""
    for m in net.modules():
        if m.__dict__.pop(SITE_ATTR, None) is not None:
            for key in [k for k, fn in m._forward_hooks.items() if fn is _charge_forward]:
                m._forward_hooks.pop(key)
                m._forward_hooks_with_kwargs.pop(key, None)


@dataclasses.dataclass
class IterationCost:
    """Samples one network processes per training iteration: forward only, and forward + backward."""

    forward_samples: float = 0.0
    train_samples: float = 0.0

    def passes(self) -> float:
        return self.forward_samples + 3.0 * self.train_samples


class FlopAccount:
    """Per-network forward FLOPs per sample by owner, and cumulative training FLOPs."""

    def __init__(self, density: Callable[[str, str], float] | None = None) -> None:
        self.per_sample: dict[str, dict[str, float]] = {}
        self.cost: dict[str, IterationCost] = {}   # declared per-iteration costs (networks not counted at run time)
        self.counted: set[str] = set()             # networks whose passes are counted at run time
        self.density = density or (lambda net_name, owner: 1.0)
        self._total = 0.0         # mask-aware cumulative training FLOPs (python float64 part)
        self._tensor_total = 0.0  # the part charged at tensor densities (RG-GAN), a float64 device tensor
        self._pending: dict[tuple[str, str], list] = {}   # owner -> [density object, dense FLOPs charged at it]
        self.dense_equiv = 0.0    # what the same iterations cost dense
        self._hooks: dict[str, list] = {}

    def measure(self, net_name: str, net: nn.Module, run: Callable[[], object], batch: int,
                owners: set[str], cost: IterationCost | None = None) -> None:
        """Measure `net`'s forward FLOPs per sample; then count its executed passes (cost None) or charge `cost`."""
        if batch <= 0:
            raise ValueError(f"batch must be positive, got {batch}")
        per_module = module_flops(net, run)
        by_owner: dict[str, float] = defaultdict(float)
        for name, (f, _) in per_module.items():
            by_owner[_owner_of(name, owners)] += f / batch
        self.per_sample[net_name] = dict(by_owner)
        for h in self._hooks.pop(net_name, []):
            h.remove()
        self.cost.pop(net_name, None)
        self.counted.discard(net_name)
        if cost is not None:
            self.cost[net_name] = cost
            return
        self.counted.add(net_name)
        self._hooks[net_name] = []
        for name, (f, b) in per_module.items():
            m = net.get_submodule(name)
            # per sample of this module's own calls (its batch may differ from the net's: none do in our vendors)
            m.__dict__[SITE_ATTR] = _Site(self, net_name, _owner_of(name, owners), f / b if b else f / batch, m)
            self._hooks[net_name].append(m.register_forward_hook(_charge_forward, with_kwargs=True))

    def charge(self, net_name: str, owner: str, flops: float) -> None:
        """Add one executed pass of `flops` dense FLOPs done by `owner` of `net_name`."""
        self.dense_equiv += flops
        d = 1.0 if owner == UNOWNED else self.density(net_name, owner)
        if not isinstance(d, torch.Tensor):
            self._total += flops * float(d)
            return
        # A 0-d device tensor (RG-GAN, refreshed once per optimizer step): sum the dense FLOPs charged at the same
        # density object as a python float and multiply once when it changes, in float64 (no per-call kernels,
        # no host sync, no float32 accumulation).
        key = (net_name, owner)
        entry = self._pending.get(key)
        if entry is not None and entry[0] is d:
            entry[1] += flops
            return
        if entry is not None:
            self._tensor_total = self._tensor_total + entry[0].double() * entry[1]
        self._pending[key] = [d, flops]

    @property
    def total(self):
        """Mask-aware cumulative training FLOPs (a float, or a 0-d float64 tensor while RG-GAN charges are open)."""
        pending = sum((d.double() * f for d, f in self._pending.values()), 0.0)
        return self._total + self._tensor_total + pending

    def add_iteration(self, density: Callable[[str, str], float]) -> None:
        """Charge the declared networks' cost (counted ones are charged as they run); density(net, owner) may be
        a 0-d device tensor (RG-GAN): summing it avoids a host sync per step."""
        if not self.cost:
            return
        x, dense = 0.0, 0.0
        for n, d in self.per_sample.items():
            if n in self.cost:
                passes = self.cost[n].passes()
                dense += sum(d.values()) * passes
                for owner, f in d.items():
                    x = x + f * passes * (1.0 if owner == UNOWNED else density(n, owner))
        self._tensor_total = self._tensor_total + (x.double() if isinstance(x, torch.Tensor) else x)
        self.dense_equiv += dense

    def state_dict(self) -> dict:
        return {"total": float(self.total), "dense_equiv": float(self.dense_equiv),
                "per_sample": {n: dict(d) for n, d in self.per_sample.items()},
                "cost": {n: [c.forward_samples, c.train_samples] for n, c in self.cost.items()},
                "counted": sorted(self.counted)}

    def load_state_dict(self, state: dict) -> None:
        self._total, self._tensor_total, self._pending = float(state["total"]), 0.0, {}
        self.dense_equiv = float(state["dense_equiv"])
        # Costs measured in this process (measure() before load) win: they describe the networks as built now.
        for n, d in state["per_sample"].items():
            self.per_sample.setdefault(n, {k: float(v) for k, v in d.items()})
        for n, (a, b) in state["cost"].items():
            if n not in self.counted:
                self.cost.setdefault(n, IterationCost(float(a), float(b)))
