"""Training FLOPs, dense and mask-aware (SPEC §2.5). One measuring forward under a dispatch mode attributes every
ATen convolution / matrix product to the innermost module owning a masked tensor (its FLOPs scale with its
density). Then every executed training-mode forward is charged at its real batch, its backward when a gradient
reaches it (2×; 6× when it builds a graph: R1, path length), or a declared per-iteration cost is added."""
import math
import weakref
from collections import defaultdict
from typing import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from .config import number

aten = torch.ops.aten
UNOWNED = ""


def op_flops(func, args, out) -> int:
    packet = getattr(func, "overloadpacket", None)
    if packet is aten.convolution:
        # transposed: weight [Cin, Cout/groups, k...], every input element meets Cout/groups·k² weights
        return 2 * (args[0] if args[6] else out).numel() * math.prod(int(s) for s in args[1].shape[1:])
    if packet in (aten.mm, aten.addmm, aten.bmm, aten.baddbmm):   # [(B,) n, k] @ [(B,) k, m]: 2·(B·)n·k·m
        a, b = args[1:3] if packet in (aten.addmm, aten.baddbmm) else args[:2]
        return 2 * a.numel() * b.shape[-1]
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
    a = next((a for a in args if isinstance(a, torch.Tensor)), None)
    return int(a.shape[0]) if a is not None and a.dim() > 0 else None


def _owner_of(name: str, owners: set[str]) -> str:
    """The innermost module in `owners` that is `name` or encloses it ('' = none)."""
    return max((o for o in owners if o in (name, "") or name.startswith(o + ".")), key=len, default=UNOWNED)


def module_flops(net: nn.Module, run: Callable[[], object]) -> dict[str, tuple[int, int]]:
    """Run `run()` (a forward of `net`) once; {module name: (FLOPs it does itself, the summed batch of its calls)}."""
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


# module -> (account (weak reference), net name, owner, FLOPs per sample) of every module whose training passes are
# charged; copies of it (G_ema, pickles, DataParallel replicas) are other objects and charge nothing.
_SITES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _charge_forward(module: nn.Module, args, kwargs, output):
    site = _SITES.get(module)
    account = site[0]() if site is not None and module.training else None
    batch = None if account is None else _leading_batch(args) or _leading_batch(kwargs.values())
    if batch is None:
        return
    _, net_name, owner, per_sample = site
    flops = per_sample * batch
    account.charge(net_name, owner, flops)
    out = output if isinstance(output, torch.Tensor) else next(
        (o for o in (output if isinstance(output, (tuple, list)) else ()) if isinstance(o, torch.Tensor)), None)
    if out is not None and out.requires_grad:
        charged = []

        def charge_backward(grad):
            if not charged:   # a later backward through the same call (R1's second pass) is already paid for
                charged.append(True)
                # a graph-building backward will itself be differentiated: charge that second backward now
                account.charge(net_name, owner, flops * (6.0 if torch.is_grad_enabled() else 2.0))
        out.register_hook(charge_backward)


def strip(net: nn.Module) -> None:
    for m in net.modules():
        for key in [k for k, fn in m._forward_hooks.items() if fn is _charge_forward]:
            m._forward_hooks.pop(key)
            m._forward_hooks_with_kwargs.pop(key, None)


class FlopAccount:
    """Per-network forward FLOPs per sample by owner, and cumulative training FLOPs."""

    def __init__(self, density: Callable[[str, str], float]) -> None:
        self.per_sample: dict[str, dict[str, float]] = {}
        # declared per-iteration costs of networks not counted at run time: (forward samples, forward + backward)
        self.cost: dict[str, tuple[float, float]] = {}
        self.density = density
        self._total = 0.0         # mask-aware cumulative training FLOPs (python float64 part)
        self._tensor_total = 0.0  # the part charged at tensor densities (RG-GAN), a float64 device tensor
        self._pending: dict[tuple[str, str], list] = {}   # owner -> [density object, dense FLOPs charged at it]
        self.dense_equiv = 0.0    # what the same iterations cost dense
        self._hooks: dict[str, list] = {}   # networks whose passes are counted at run time -> their hooks

    def measure(self, net_name: str, net: nn.Module, run: Callable[[], object], batch: int,
                owners: set[str], cost: tuple[float, float] | None = None) -> None:
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
        if cost is not None:
            self.cost[net_name] = cost
            return
        self._hooks[net_name] = []
        for name, (f, b) in per_module.items():
            m = net.get_submodule(name)
            # per sample of this module's own calls (its batch may differ from the net's: none do in our vendors)
            _SITES[m] = (weakref.ref(self), net_name, _owner_of(name, owners), f / b if b else f / batch)
            self._hooks[net_name].append(m.register_forward_hook(_charge_forward, with_kwargs=True))

    def charge(self, net_name: str, owner: str, flops: float) -> None:
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

    def add_iteration(self) -> None:
        """Charge the declared networks' cost per iteration: forward samples once, trained ones 3× (+ backward)."""
        for n, (forward, train) in self.cost.items():
            for owner, f in self.per_sample.get(n, {}).items():
                self.charge(n, owner, f * (forward + 3.0 * train))

    def state_dict(self) -> dict:
        return {"total": float(self.total), "dense_equiv": float(self.dense_equiv),
                "per_sample": {n: dict(d) for n, d in self.per_sample.items()},
                "cost": {n: list(c) for n, c in self.cost.items()}}

    @staticmethod
    def state_ok(f) -> bool:
        def costs(d):
            return isinstance(d, dict) and all(isinstance(k, str) and number(v) and v >= 0 for k, v in d.items())
        return (isinstance(f, dict) and number(f.get("total")) and number(f.get("dense_equiv"))
                and isinstance(f.get("per_sample"), dict) and all(costs(d) for d in f["per_sample"].values())
                and isinstance(f.get("cost"), dict)
                and all(isinstance(c, (list, tuple)) and len(c) == 2 and all(number(x) and x >= 0 for x in c)
                        for c in f["cost"].values()))

    def load_state_dict(self, state: dict) -> None:
        self._total, self._tensor_total, self._pending = float(state["total"]), 0.0, {}
        self.dense_equiv = float(state["dense_equiv"])
        # Costs measured in this process (measure() before load) win: they describe the networks as built now.
        for n, d in state["per_sample"].items():
            self.per_sample.setdefault(n, {k: float(v) for k, v in d.items()})
        for n, (a, b) in state["cost"].items():
            if n not in self._hooks:
                self.cost.setdefault(n, (float(a), float(b)))
