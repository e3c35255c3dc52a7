"""The sparse-training methods, one file each on the contract in `base.py` (set_.py is SET: the builtin `set` stays
unshadowed; dst.py is the dynamic-sparse-training base); docs/METHODS.md shows a new method written in one file."""
from .base import EMA, Context, Flag, MaskMethod, Method, all_methods, get, names, register, unregister
from . import none, regan, rggan, ticket, static, set_, rigl  # noqa: E402,F401  (registers the built-in methods)
from . import stugan, adapt  # noqa: E402,F401  (STU-GAN, ADAPT: on dst.py)


__all__ = ["Flag", "Method", "MaskMethod", "Context", "EMA", "register", "unregister", "get", "names",
           "all_methods"]
