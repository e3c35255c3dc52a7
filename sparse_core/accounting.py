"""Training-cost accounting: FLOPs (dense and mask-aware) and real images shown.

FLOPs are found once per network by running one forward with real input shapes under a dispatch mode that
sees every convolution / matrix product at the ATen level (so custom layers that call F.conv2d on a derived
weight, like StyleGAN2's modulated conv, are counted too). Each product is attributed to the innermost
module on the call stack that owns a masked tensor; products outside any owner are dense by definition.

Conventions (SPEC §2.5): conv 2·N·Hout·Wout·Cout·(Cin/groups)·k², transposed conv 2·N·Hin·Win·Cin·(Cout/groups)·k²,
matrix product 2·M·N·K; a training pass (forward + backward) costs 3× the forward; a masked layer's
FLOPs scale with its density. The training loop says how many samples each network processes per
iteration forward-only and forward+backward (`IterationCost`); averages are fine for periodic passes
(e.g. lazy regularisation every 16 iterations adds 1/16 of a pass).
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
UNOWNED = ""


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def op_flops(func, args, out) -> int:
    """FLOPs of one ATen call, 0 for anything that is not a convolution or a matrix product."""
    packet = getattr(func, "overloadpacket", None)
    if packet is aten.convolution:
        x, w = args[0], args[1]
        transposed = bool(args[6])
        if transposed:
            # weight [Cin, Cout/groups, k...]: every input element meets Cout/groups·k² weights.
            return 2 * x.numel() * _numel(w.shape[1:])
        return 2 * out.numel() * _numel(w.shape[1:])
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


def forward_flops(net: nn.Module, run: Callable[[], object], owners: set[str]) -> dict[str, int]:
    """Run `run()` (a forward of `net`) once and return FLOPs per owner module name ('' = not owned).

    owners: names (inside `net`) of modules that own masked tensors.
    """
    names = {id(m): n for n, m in net.named_modules()}
    stack: list[str] = []

    def push(module, args):
        n = names.get(id(module))
        if n is not None and n in owners:
            stack.append(n)

    def pop(module, args, output):
        n = names.get(id(module))
        if n is not None and n in owners and stack and stack[-1] == n:
            stack.pop()

    h1 = nn.modules.module.register_module_forward_pre_hook(push)
    h2 = nn.modules.module.register_module_forward_hook(pop, always_call=True)
    mode = _CountingMode(stack)
    # eval mode: the measuring forward must not move BatchNorm running stats or spectral-norm vectors,
    # or a patched run would diverge from the unmodified one it is compared with.
    was_training = [(m, m.training) for m in net.modules()]
    net.eval()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    try:
        # fork_rng: a forward that draws noise must not shift the training run's random stream either.
        with torch.random.fork_rng(devices=devices), torch.no_grad(), mode:
            run()
    finally:
        h1.remove()
        h2.remove()
        for m, t in was_training:
            m.training = t
    return dict(mode.flops)


@dataclasses.dataclass
class IterationCost:
    """Samples one network processes per training iteration: forward only, and forward + backward."""

    forward_samples: float = 0.0
    train_samples: float = 0.0

    def passes(self) -> float:
        return self.forward_samples + 3.0 * self.train_samples


class FlopAccount:
    """Per-network forward FLOPs per sample by owner, and cumulative training FLOPs."""

    def __init__(self) -> None:
        self.per_sample: dict[str, dict[str, float]] = {}
        self.cost: dict[str, IterationCost] = {}
        self.total = 0.0          # mask-aware cumulative training FLOPs
        self.dense_equiv = 0.0    # what the same iterations cost dense

    def measure(self, net_name: str, net: nn.Module, run: Callable[[], object], batch: int,
                owners: set[str], cost: IterationCost) -> None:
        if batch <= 0:
            raise ValueError(f"batch must be positive, got {batch}")
        counts = forward_flops(net, run, owners)
        self.per_sample[net_name] = {k: v / batch for k, v in counts.items()}
        self.cost[net_name] = cost

    @property
    def measured(self) -> bool:
        return bool(self.per_sample)

    def dense_per_iteration(self) -> float:
        return sum(sum(d.values()) * self.cost[n].passes() for n, d in self.per_sample.items())

    def sparse_per_iteration(self, density: Callable[[str, str], float]) -> float:
        """density(net_name, owner_name) -> kept fraction of the owner's weight (1.0 where unmasked)."""
        total = 0.0
        for n, d in self.per_sample.items():
            passes = self.cost[n].passes()
            for owner, f in d.items():
                # density may be a 0-d device tensor (RG-GAN): summing it avoids a host sync per step.
                total = total + f * passes * (1.0 if owner == UNOWNED else density(n, owner))
        return total

    def add_iteration(self, density: Callable[[str, str], float]) -> None:
        if self.measured:
            self.total += self.sparse_per_iteration(density)
            self.dense_equiv += self.dense_per_iteration()

    def state_dict(self) -> dict:
        return {"total": float(self.total), "dense_equiv": float(self.dense_equiv),
                "per_sample": {n: dict(d) for n, d in self.per_sample.items()},
                "cost": {n: [c.forward_samples, c.train_samples] for n, c in self.cost.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.total = float(state["total"])
        self.dense_equiv = float(state["dense_equiv"])
        self.per_sample = {n: {k: float(v) for k, v in d.items()} for n, d in state["per_sample"].items()}
        self.cost = {n: IterationCost(float(a), float(b)) for n, (a, b) in state["cost"].items()}
