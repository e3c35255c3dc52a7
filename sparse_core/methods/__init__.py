"""The sparse-training methods, one file each (regan, rggan, ticket, none, static, set_ (SET; the file name
keeps the builtin `set` unshadowed here), rigl, stugan, adapt; dst.py is the dynamic-sparse-training base they
share), on the contract in `base.py`; the registry is the only place that names them. docs/METHODS.md shows a new
method written in one file."""
import dataclasses

from ..config import ConfigError, require
from .base import EMA, Context, Flag, MaskMethod, Method, all_methods, get, names, register, unregister
from . import none, regan, rggan, ticket, static, set_, rigl  # noqa: E402,F401  (registers the built-in methods)
from . import stugan, adapt  # noqa: E402,F401  (STU-GAN, ADAPT: on dst.py)


def config_from_dict(d: dict):
    """The config a saved controller state was written with (classes from the registry only)."""
    d = dict(d)
    method = d.pop("method", None)
    try:
        cls = get(method).config_cls
    except ConfigError:
        raise ConfigError(f"unknown method {method!r} in saved controller state") from None
    unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
    require(not unknown, f"saved {method} config has unknown fields {unknown}")
    return cls(**{k: (tuple(v) if k in ("include", "exclude") else v) for k, v in d.items()})


__all__ = ["Flag", "Method", "MaskMethod", "Context", "EMA", "register", "unregister", "get", "names",
           "all_methods", "config_from_dict"]
