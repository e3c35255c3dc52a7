"""The sparse-training methods, one file each (regan, rggan, ticket, none, static, set_ (SET; the file name
keeps the builtin `set` unshadowed here), rigl, stugan, adapt; dst.py is the dynamic-sparse-training base they
share), on the contract in `base.py`; the registry is the only place that names them. docs/METHODS.md shows a new
method written in one file."""
from .base import EMA, Context, Flag, MaskMethod, Method, all_methods, get, names, register, unregister
from . import none, regan, rggan, ticket, static, set_, rigl  # noqa: E402,F401  (registers the built-in methods)
from . import stugan, adapt  # noqa: E402,F401  (STU-GAN, ADAPT: on dst.py)


__all__ = ["Flag", "Method", "MaskMethod", "Context", "EMA", "register", "unregister", "get", "names",
           "all_methods"]
