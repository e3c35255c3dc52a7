"""The one safe path by which every vendor reads a checkpoint and builds objects named in it.

Two rules (SPEC section 8):
- a checkpoint is read with torch.load(weights_only=True): tensors and plain containers only, so
  opening a file never runs code;
- a class named in a file (a `class_name` entry of recorded constructor arguments) is built only if
  it is on an explicit allow-list given by the caller; anything else is refused with an error that
  names the refused entry. Nothing named in a file is ever imported.

Errors are `CheckpointError` (a ValueError) naming the file and the problem in our own words: torch's
messages for unsafe files advise loading with weights_only=False, which is exactly what must not be
done with a file one does not trust, so they are never passed on verbatim.
"""
from __future__ import annotations

import numbers
import os
import re
import warnings

import numpy as np
import torch

__all__ = ["CheckpointError", "load_checkpoint", "construct", "check_spec", "plain_data", "refuse_nested_names", "CLASS_KEYS"]


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, unsafe, or names something that is not allowed."""


# Keys whose value names something to import or call. Outside the top-level `class_name` of a spec
# (checked against the allow-list) such an entry is refused wherever it appears.
CLASS_KEYS = ("class_name", "func_name", "module_src", "module_name")

_ZIP_MAGIC = b"PK\x03\x04"


def _describe_torch_error(error: BaseException) -> str:
    """A short, honest description of why torch could not read a file, without its advice to turn the
    safety off (any sentence mentioning weights_only / safe globals is dropped)."""
    text = str(error)
    found = re.search(r"(?:Unsupported global|GLOBAL|global):? ?([A-Za-z_][\w.]*\.[A-Za-z_]\w*)", text)
    if found:
        return (f"it names {found.group(1)}, which is not a tensor or a plain container; "
                f"such files are never loaded (only weights and plain data are read)")
    if isinstance(error, EOFError) or re.search(r"(?i)truncat|unexpected end|EOF|failed finding central directory"
                                                r"|invalid header|not a zip|ran out of input", text):
        return "the file is truncated or not a checkpoint"
    opcode = re.search(r"Unsupported operand (\d+)", text)
    if opcode:
        return (f"the file is not a torch checkpoint of weights (pickle opcode {opcode.group(1)} is outside "
                f"what a weights-only reader accepts; a plain pickle?)")
    keep = []
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", text):
        if re.search(r"(?i)weights.only|safe_globals|unpickler|documentation|docs\.|http|trusted source"
                     r"|re-running|arbitrary code", sentence):
            continue
        if sentence.strip():
            keep.append(sentence.strip())
    detail = " ".join(keep)[:300] or "unreadable content"
    return f"the file is not a readable checkpoint ({type(error).__name__}: {detail})"


def load_checkpoint(path, map_location="cpu") -> dict:
    """torch.load(path, weights_only=True) that returns a dict or raises CheckpointError naming `path`."""
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise CheckpointError(f"{name}: file not found")
    try:
        with warnings.catch_warnings():  # torch's own warnings about the format advise weights_only: not passed on
            warnings.simplefilter("ignore", UserWarning)
            data = torch.load(name, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for truncated / foreign / unsafe files
        raise CheckpointError(f"{name}: refused: {_describe_torch_error(error)}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{name}: holds a {type(data).__name__}, not a checkpoint dict")
    return data


def is_zip_checkpoint(path) -> bool:
    """True when the file starts like torch.save's (zip) format."""
    with open(path, "rb") as handle:
        return handle.read(4) == _ZIP_MAGIC


def plain_data(obj, where: str = "value"):
    """A copy of `obj` made of None/bool/int/float/str and lists/dicts of them (tuples become lists,
    numpy scalars become Python numbers). Anything else raises CheckpointError naming `where`."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, np.generic) and obj.dtype.kind in "biuf":
        return obj.item()
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        return float(obj)
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise CheckpointError(f"{where}: key {key!r} is not a string")
            out[key] = plain_data(value, f"{where}.{key}")
        return out
    if isinstance(obj, (list, tuple)):
        return [plain_data(value, f"{where}[{i}]") for i, value in enumerate(obj)]
    raise CheckpointError(f"{where}: holds a {type(obj).__module__}.{type(obj).__name__}, "
                          f"only plain data is accepted here")


def refuse_nested_names(obj, where: str) -> None:
    """Refuse any entry below the top level that names something to import (class_name, ...)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in CLASS_KEYS or str(key).endswith("_class_name"):
                raise CheckpointError(f"{where}.{key} = {value!r}: refused, a class or function named inside "
                                      f"recorded arguments is never constructed")
            refuse_nested_names(value, f"{where}.{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            refuse_nested_names(value, f"{where}[{i}]")


def check_spec(spec, allowed, where: str = "spec") -> dict:
    """Validate a recorded constructor spec ({'class_name': ..., **kwargs}) without building it.

    `allowed` is a collection of class names (or a dict keyed by them). Returns a plain-data copy
    (tuples -> lists, numpy scalars -> numbers). Raises CheckpointError naming the refused entry."""
    if not isinstance(spec, dict):
        raise CheckpointError(f"{where}: expected a dict of constructor arguments, got {type(spec).__name__}")
    spec = plain_data(spec, where)
    class_name = spec.get("class_name")
    if class_name not in allowed:
        names = ", ".join(sorted(allowed)) or "none"
        raise CheckpointError(f"{where}.class_name = {class_name!r}: refused, not on the allow-list ({names})")
    rest = {key: value for key, value in spec.items() if key != "class_name"}
    refuse_nested_names(rest, where)
    return spec


def construct(class_name: str, kwargs: dict, allowed: dict, where: str = "kwargs"):
    """Build allowed[class_name](**kwargs), but only if `class_name` is on the allow-list and `kwargs`
    is plain data naming no further class. Constructor errors become CheckpointError."""
    if not isinstance(class_name, str) or class_name not in allowed:
        names = ", ".join(sorted(allowed)) or "none"
        raise CheckpointError(f"{where}.class_name = {class_name!r}: refused, not on the allow-list ({names})")
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{where}: expected a dict of constructor arguments, got {type(kwargs).__name__}")
    kwargs = plain_data(kwargs, where)
    kwargs.pop("class_name", None)
    refuse_nested_names(kwargs, where)
    cls = allowed[class_name]
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, AssertionError, KeyError, IndexError, ZeroDivisionError, OverflowError) as error:
        raise CheckpointError(f"{where}: {class_name} refused the recorded arguments "
                              f"({type(error).__name__}: {error})") from None
    except RuntimeError as error:  # e.g. absurd sizes torch cannot allocate
        raise CheckpointError(f"{where}: {class_name} could not be built from the recorded arguments "
                              f"({error})") from None
