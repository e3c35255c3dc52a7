"""Checks of what a loaded checkpoint holds, against the live objects it is about to fill.

A file read by vendor.common.safeload.load_checkpoint holds only tensors and plain containers, but
nothing says they are the right ones: a list where a counter belongs, a NaN weight, an optimizer state
of another shape, a garbage RNG state or a sampler position far past the data all end in a traceback
(or a NaN run) later, often after files were written. Every vendor calls these checks where it loads a
file, before anything is written, and turns the CheckpointError into its CLI's one usage message.

Each check names the entry (`where`, e.g. "optim_G.state.3.exp_avg") and what is wrong; the caller adds
the file name. The reference is always the live object (its state_dict), so nothing is hard-coded per
network.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

import torch

from vendor.common.safeload import CheckpointError

__all__ = ["CheckpointError", "require", "plain_finite", "tensor", "tensors_like", "module_state",
           "tensor_list_like", "optimizer_state", "scheduler_state", "generator_state", "rng_state", "counter",
           "seconds", "number", "permutation_sampler", "in_file"]

# Counters (steps, images, ticks, epochs) beyond this are refused: 10^15 images is ~30 million GPU-years.
MAX_COUNT = 10 ** 15


def in_file(path, error: CheckpointError) -> CheckpointError:
    """The error prefixed with the file name (once)."""
    text = str(error)
    path = str(path)
    return CheckpointError(text if text.startswith(path) else f"{path}: {text}")


def _kind(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor {tuple(value.shape)} {value.dtype}"
    return f"a {type(value).__name__}"


def require(state, key: str, where: str = ""):
    """state[key], with an error naming the entry if `state` is not a dict or lacks it."""
    name = f"{where}.{key}" if where else key
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{where or 'the file'}: is {_kind(state)}, expected a dict")
    if key not in state:
        raise CheckpointError(f"entry {name!r} is missing")
    return state[key]


def number(value, where: str, low: float | None = None, high: float | None = None, integer: bool = False,
           low_open: bool = False):
    """A finite int/float (a one-element tensor is accepted) within [low, high]; returns a Python number."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.dtype.is_complex:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise CheckpointError(f"entry {where!r} is {_kind(value)}, expected a number")
    if integer and not isinstance(value, numbers.Integral):
        if not (math.isfinite(value) and float(value).is_integer()):
            raise CheckpointError(f"entry {where!r} = {value!r}, expected a whole number")
    if not math.isfinite(value):
        raise CheckpointError(f"entry {where!r} = {value!r}, expected a finite number")
    if low is not None and (value < low or (low_open and value == low)):
        raise CheckpointError(f"entry {where!r} = {value!r}, expected {'>' if low_open else '>='} {low}")
    if high is not None and value > high:
        raise CheckpointError(f"entry {where!r} = {value!r}, expected <= {high}")
    return int(value) if integer else float(value)


def counter(value, where: str, low: int = 0, high: int = MAX_COUNT) -> int:
    """A whole number in [low, high] (steps, images, ticks, epochs)."""
    return number(value, where, low, high, integer=True)


def seconds(value, where: str) -> float:
    """A finite, non-negative duration."""
    return number(value, where, 0.0, None)


def plain_finite(value, where: str):
    """Plain data (None/bool/int/float/str, lists and string-keyed dicts of them) whose floats are all
    finite; e.g. recorded network kwargs. Returns `value` unchanged."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return value
    if isinstance(value, numbers.Real):
        if not math.isfinite(value):
            raise CheckpointError(f"entry {where!r} = {value!r}, expected a finite number")
        return value
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CheckpointError(f"entry {where!r}: key {key!r} is not a string")
            plain_finite(item, f"{where}.{key}")
        return value
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            plain_finite(item, f"{where}[{i}]")
        return value
    raise CheckpointError(f"entry {where!r} is {_kind(value)}, expected plain data")


def _same_kind(a: torch.dtype, b: torch.dtype) -> bool:
    def kind(dtype):
        return "bool" if dtype == torch.bool else "float" if dtype.is_floating_point else \
            "complex" if dtype.is_complex else "int"
    return kind(a) == kind(b)


def tensor(value, where: str, like: torch.Tensor | None = None, shape=None, dtype=None,
           finite: bool = True) -> torch.Tensor:
    """A tensor with `like`'s shape and kind of dtype (float / int / bool), or the given shape / dtype;
    floating values must be finite."""
    if not isinstance(value, torch.Tensor):
        raise CheckpointError(f"entry {where!r} is {_kind(value)}, expected a tensor")
    if like is not None:
        shape, kind_of = tuple(like.shape), like.dtype
        if not _same_kind(value.dtype, kind_of):
            raise CheckpointError(f"entry {where!r} is {value.dtype}, expected {kind_of}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise CheckpointError(f"entry {where!r} has shape {tuple(value.shape)}, expected {tuple(shape)}")
    if dtype is not None and value.dtype != dtype:
        raise CheckpointError(f"entry {where!r} is {value.dtype}, expected {dtype}")
    if finite and (value.dtype.is_floating_point or value.dtype.is_complex) and value.numel():
        bad = ~torch.isfinite(value.detach())
        if bool(bad.any()):
            raise CheckpointError(f"entry {where!r} holds {int(bad.sum())} non-finite value(s) (NaN or inf) "
                                  f"of {value.numel()}")
    return value


def tensors_like(state, reference: Mapping[str, torch.Tensor], where: str, extra_ok: bool = False,
                 missing_ok: bool = False) -> None:
    """`state` is a dict of tensors with exactly the reference's names (extra names allowed with
    extra_ok, missing ones with missing_ok), each of the reference's shape and kind of dtype, floats finite."""
    if not isinstance(state, Mapping):
        raise CheckpointError(f"entry {where!r} is {_kind(state)}, expected a dict of tensors")
    missing = [k for k in reference if k not in state]
    if missing and not missing_ok:
        raise CheckpointError(f"entry {where!r} lacks {len(missing)} tensor(s) of the network, e.g. "
                              f"{where}.{missing[0]}")
    if not extra_ok:
        extra = [k for k in state if k not in reference]
        if extra:
            raise CheckpointError(f"entry {where!r} has {len(extra)} tensor(s) the network does not have, e.g. "
                                  f"{where}.{extra[0]}")
    for key, ref in reference.items():
        if key in state:
            tensor(state[key], f"{where}.{key}", like=ref)
    if extra_ok:
        for key, value in state.items():
            if key not in reference:
                tensor(value, f"{where}.{key}")


def module_state(state, module: torch.nn.Module, where: str, extra_ok: bool = False) -> None:
    """A state_dict that fits `module`: no names the module lacks (unless extra_ok), every tensor of the
    module's shape and kind of dtype, finite floats. Names the file lacks are left to the module's strict
    load_state_dict, which knows the entries a module fills in itself (load hooks)."""
    tensors_like(state, module.state_dict(), where, extra_ok=extra_ok, missing_ok=True)


def tensor_list_like(value, tensors: Sequence[torch.Tensor], where: str) -> None:
    """A list of tensors matching `tensors` one by one (e.g. an EMA list of G's parameters)."""
    if not isinstance(value, (list, tuple)):
        raise CheckpointError(f"entry {where!r} is {_kind(value)}, expected a list of tensors")
    if len(value) != len(tensors):
        raise CheckpointError(f"entry {where!r} has {len(value)} tensors, expected {len(tensors)}")
    for i, (item, ref) in enumerate(zip(value, tensors)):
        tensor(item, f"{where}[{i}]", like=ref)


def _hyper(value, ref, where: str) -> None:
    """An optimizer / scheduler setting of the same type as the live one's (numbers finite)."""
    if isinstance(ref, bool) or ref is None:
        if not (value is None or isinstance(value, bool)):
            raise CheckpointError(f"entry {where!r} is {_kind(value)}, expected a bool or None")
    elif isinstance(ref, numbers.Real) and not isinstance(ref, torch.Tensor):
        number(value, where)
    elif isinstance(ref, torch.Tensor):
        if isinstance(value, torch.Tensor):
            tensor(value, where)
        else:
            number(value, where)
    elif isinstance(ref, (list, tuple)):
        if not isinstance(value, (list, tuple)) or len(value) != len(ref):
            raise CheckpointError(f"entry {where!r} is {_kind(value)}, expected {len(ref)} values")
        for i, (item, r) in enumerate(zip(value, ref)):
            _hyper(item, r, f"{where}[{i}]")
    elif isinstance(ref, str):
        if not isinstance(value, str):
            raise CheckpointError(f"entry {where!r} is {_kind(value)}, expected a string")


def optimizer_state(state, optimizer: torch.optim.Optimizer, where: str) -> None:
    """An optimizer state_dict that fits `optimizer`: the same groups and parameter counts, settings of the
    same types (finite), and per-parameter state whose tensors have the parameter's shape (or are scalars,
    e.g. Adam's step) and finite values."""
    ref = optimizer.state_dict()
    groups = require(state, "param_groups", where)
    per_param = require(state, "state", where)
    if not isinstance(groups, (list, tuple)) or len(groups) != len(ref["param_groups"]):
        count = len(groups) if isinstance(groups, (list, tuple)) else _kind(groups)
        raise CheckpointError(f"entry '{where}.param_groups' has {count} group(s), expected "
                              f"{len(ref['param_groups'])}")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    ids = []
    for g, (group, ref_group) in enumerate(zip(groups, ref["param_groups"])):
        gwhere = f"{where}.param_groups[{g}]"
        ids_here = require(group, "params", gwhere)
        if not isinstance(ids_here, (list, tuple)) or len(ids_here) != len(ref_group["params"]):
            count = len(ids_here) if isinstance(ids_here, (list, tuple)) else _kind(ids_here)
            raise CheckpointError(f"entry '{gwhere}.params' lists {count} parameter(s), the network has "
                                  f"{len(ref_group['params'])}")
        for i, pid in enumerate(ids_here):
            counter(pid, f"{gwhere}.params[{i}]", 0, 2 ** 62)
        ids.extend(int(pid) for pid in ids_here)
        for key, value in group.items():
            if key != "params" and key in ref_group:
                _hyper(value, ref_group[key], f"{gwhere}.{key}")
        if "lr" in group:
            number(group["lr"], f"{gwhere}.lr", 0.0)
    if len(set(ids)) != len(ids):
        raise CheckpointError(f"entry '{where}.param_groups' lists a parameter id twice")
    if not isinstance(per_param, Mapping):
        raise CheckpointError(f"entry '{where}.state' is {_kind(per_param)}, expected a dict")
    by_id = dict(zip(ids, params))
    for pid, entries in per_param.items():
        pwhere = f"{where}.state.{pid}"
        if pid not in by_id:
            raise CheckpointError(f"entry {pwhere!r} belongs to no parameter of the param_groups")
        if not isinstance(entries, Mapping):
            raise CheckpointError(f"entry {pwhere!r} is {_kind(entries)}, expected a dict")
        param = by_id[pid]
        for key, value in entries.items():
            ewhere = f"{pwhere}.{key}"
            if isinstance(value, torch.Tensor):
                if value.dim() == 0 or (value.numel() == 1 and param.numel() != 1):
                    number(value, ewhere, 0.0 if key == "step" else None)
                else:
                    tensor(value, ewhere, like=param)
            else:
                number(value, ewhere, 0.0 if key == "step" else None)


def scheduler_state(state, scheduler, where: str) -> None:
    """An LR scheduler state_dict whose entries have the live one's value types (numbers finite); of the
    live one's keys only base_lrs and last_epoch must be there (other torch versions add or drop the rest)."""
    ref = scheduler.state_dict()
    if not isinstance(state, Mapping):
        raise CheckpointError(f"entry {where!r} is {_kind(state)}, expected a dict")
    for key, ref_value in ref.items():
        if key not in state:
            if key in ("base_lrs", "last_epoch"):
                raise CheckpointError(f"entry '{where}.{key}' is missing")
            continue
        value = state[key]
        if key in ("last_epoch", "_step_count"):
            counter(value, f"{where}.{key}", -1)
        elif key == "lr_lambdas":  # functions are not saved: None per group (or callables' dicts)
            if not isinstance(value, (list, tuple)) or len(value) != len(ref_value):
                raise CheckpointError(f"entry '{where}.{key}' is {_kind(value)}, expected {len(ref_value)} entries")
        else:
            _hyper(value, ref_value, f"{where}.{key}")


def generator_state(value, where: str) -> torch.Tensor:
    """A torch CPU generator state (uint8 tensor of the right size) that torch accepts; tried on a
    throw-away generator, so no live stream changes."""
    reference = torch.Generator().get_state()
    tensor(value, where, shape=reference.shape, dtype=reference.dtype)
    try:
        torch.Generator().set_state(value)
    except (RuntimeError, ValueError, TypeError) as error:
        raise CheckpointError(f"entry {where!r} is not a valid random generator state ({error})") from None
    return value


def rng_state(state, where: str = "rng", cuda_key: str = "cuda") -> None:
    """{'torch': CPU generator state, optionally 'cuda': one state per device (a tensor or a list)}."""
    generator_state(require(state, "torch", where), f"{where}.torch")
    cuda = state.get(cuda_key)
    if cuda is None:
        return
    states = cuda if isinstance(cuda, (list, tuple)) else [cuda]
    size = None
    if torch.cuda.is_available():
        size = torch.cuda.get_rng_state().shape
    for i, item in enumerate(states):
        name = f"{where}.{cuda_key}[{i}]" if isinstance(cuda, (list, tuple)) else f"{where}.{cuda_key}"
        tensor(item, name, shape=size, dtype=torch.uint8)


def permutation_sampler(state, size: int, where: str, order_key: str = "order", position_key: str = "position",
                        generator_key: str = "generator") -> None:
    """A shuffling sampler's state: its generator, an order that is a permutation of range(size) and a
    position in [0, size]."""
    generator_state(require(state, generator_key, where), f"{where}.{generator_key}")
    if order_key is None:
        return
    order = require(state, order_key, where)
    tensor(order, f"{where}.{order_key}", shape=(size,))
    if order.dtype.is_floating_point or order.dtype == torch.bool or order.dtype.is_complex:
        raise CheckpointError(f"entry '{where}.{order_key}' is {order.dtype}, expected integer indices")
    if size and not torch.equal(torch.sort(order.to(torch.int64)).values, torch.arange(size)):
        raise CheckpointError(f"entry '{where}.{order_key}' is not a permutation of the {size} images")
    counter(require(state, position_key, where), f"{where}.{position_key}", 0, size)
