"""The method registry: one strategy class per sparse-training method.

A method is one file: a `Method` subclass (see `base.py` for the protocol) with its config class and its
command-line flags, registered with `register`. The controller, the argparse / click flags and saved-state
loading all look methods up here, so nothing else names them.
"""
from __future__ import annotations

from ..config import ConfigError
from .base import Flag, Method

_REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Add a method (usable as a class decorator). Its config class's `method` must equal `cls.name`."""
    if not (isinstance(cls, type) and issubclass(cls, Method)) or not cls.name:
        raise TypeError(f"{cls!r} is not a named sparse_core Method subclass")
    if getattr(cls.config_cls, "method", None) != cls.name:
        raise TypeError(f"{cls.__name__}.config_cls.method must be {cls.name!r}")
    _REGISTRY[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def get(name) -> type[Method]:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown sparse training method {name!r}; known: {names()}") from None


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def all_methods() -> tuple[type[Method], ...]:
    return tuple(_REGISTRY.values())


from . import none, regan, rggan, ticket  # noqa: E402,F401  (registers the built-in methods)

__all__ = ["Flag", "Method", "register", "unregister", "get", "names", "all_methods"]
