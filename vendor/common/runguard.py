"""Runs that stop safely: a non-finite loss or weight, or a failed write, ends the run with one message.

- FiniteGuard: the training loops hand it every loss as it is computed (`guard.loss(step, G=loss_G)`, no
  device sync: the first non-finite value and its step are kept on the device) and call `guard.check()`
  before each stats row and `guard.check_weights(step, G=net_G, ...)` before each snapshot or export
  write. Either raises NonFiniteError naming the step and the loss (or the tensor), so nothing computed
  from a diverged state is ever written: the newest snapshot on disk is the last finite one.
- run_cli: the scripts' entry points run `main` through it; a NonFiniteError or an OSError (a full disk, a
  read-only folder: the writers in runlog / sparse_core raise them naming the final file) becomes ONE line
  `error: ...` on stderr and exit status 1, instead of a traceback. This is the one place that words it.
"""
from __future__ import annotations

import math
import sys

import torch


class NonFiniteError(RuntimeError):
    """A loss or a network tensor of the run is nan or inf."""


def _number(value) -> str:
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _where(step) -> str:
    """`step 12` for a step number; a loop that counts otherwise passes its own words (`tick 3 (kimg 0.1)`)."""
    return f"step {step}" if isinstance(step, int) else str(step)


class FiniteGuard:
    """Remembers the first non-finite value of each named loss (and the step it came at) without a device
    sync per step; `check` reads them once."""

    def __init__(self):
        self._first: dict[str, list] = {}  # name -> [step tensor (-1: none yet), value tensor]

    def loss(self, step: int, **losses) -> None:
        for name, value in losses.items():
            if not isinstance(value, torch.Tensor):
                value = torch.tensor(float(value), dtype=torch.float64)
            value = value.detach().reshape(-1)
            # any nan/inf element makes the loss non-finite; its sum is then non-finite too, which is what we keep
            value = value.sum() if value.numel() != 1 else value[0]
            slot = self._first.get(name)
            if slot is None:
                slot = self._first[name] = [torch.full((), -1, dtype=torch.int64, device=value.device),
                                            torch.zeros((), dtype=value.dtype, device=value.device)]
            new = (~torch.isfinite(value)) & (slot[0] < 0)
            slot[0] = torch.where(new, torch.full_like(slot[0], int(step)), slot[0])
            slot[1] = torch.where(new, value.to(slot[1].dtype), slot[1])

    def first_bad(self):
        """(step, name, value) of the earliest non-finite loss seen, or None."""
        found = []
        for name, (step, value) in self._first.items():
            step = int(step)
            if step >= 0:
                found.append((step, name, float(value)))
        return min(found, key=lambda item: item[0]) if found else None

    def check(self) -> None:
        bad = self.first_bad()
        if bad is not None:
            step, name, value = bad
            raise NonFiniteError(f"{_where(step)}: loss {name} is {_number(value)}; the run stopped before writing "
                                 f"anything from this state (any snapshot on disk is from an earlier, finite step; "
                                 f"a lower learning rate may help)")

    def check_weights(self, step: int, **networks) -> None:
        """check(), then every floating tensor of each network (parameters and buffers) must be finite."""
        self.check()
        check_finite_weights(step, **networks)


def check_finite_weights(step: int, **networks) -> None:
    """Raise NonFiniteError naming the network and the first tensor holding nan/inf. A network may be an
    nn.Module, a state_dict, or a list of tensors (e.g. an EMA parameter list)."""
    for net_name, net in networks.items():
        if net is None:
            continue
        if isinstance(net, torch.nn.Module):
            items = list(net.state_dict(keep_vars=True).items())
        elif isinstance(net, dict):
            items = list(net.items())
        else:
            items = [(str(i), t) for i, t in enumerate(net)]
        for name, tensor in items:
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
                finite = torch.isfinite(tensor.detach())
                if not bool(finite.all()):
                    count = int((~finite).sum())
                    raise NonFiniteError(f"{_where(step)}: {net_name} weights are not finite ({name}: {count} of "
                                         f"{tensor.numel()} values nan/inf); the run stopped before writing "
                                         f"anything from this state (any snapshot on disk is from an earlier, "
                                         f"finite step)")


def check_finite_stats(where, stats: dict, prefix: str = "Loss/") -> None:
    """For loops that log per-tick means (StyleGAN2-ADA's stats collector: {name: {num, mean, std}}):
    every `prefix*` mean must be finite, or NonFiniteError names it and `where` (a mean over the tick is
    non-finite exactly when some step's value was)."""
    for name in sorted(stats):
        value = stats[name]
        mean = value.get("mean") if isinstance(value, dict) else value
        if name.startswith(prefix) and isinstance(mean, (int, float)) and not math.isfinite(mean):
            raise NonFiniteError(f"{_where(where)}: loss {name} is {_number(mean)} (a mean over the tick); the run "
                                 f"stopped before writing anything from this state (any snapshot on disk is from an "
                                 f"earlier, finite step; a lower learning rate may help)")


def failure_message(error: BaseException) -> str:
    """The one-line wording of a run-stopping failure."""
    if isinstance(error, NonFiniteError):
        return f"error: {error}"
    if isinstance(error, OSError):
        cause = error.strerror or str(error)
        if error.filename is not None:
            return (f"error: cannot write {error.filename}: {cause}; the run stopped, and the file under that "
                    f"name (if any) is unchanged" if getattr(error, "during_write", False)
                    else f"error: {error.filename}: {cause}")
        return f"error: {cause}"
    return f"error: {error}"


def write_failed(path: str, error: OSError) -> OSError:
    """The OSError a failed write of `path` raises: the cause of `error`, the final file's name."""
    failed = OSError(error.errno, error.strerror or str(error), path)
    failed.during_write = True
    return failed


def run_cli(main, *args, **kwargs) -> int:
    """Call main(*args, **kwargs); a NonFiniteError or OSError ends it with one message on stderr and
    exit status 1 (usage errors keep their own SystemExit(2))."""
    try:
        return main(*args, **kwargs)
    except (NonFiniteError, OSError) as error:
        print(failure_message(error), file=sys.stderr, flush=True)
        return 1
