"""The method flags for a training script whose command line is absl.flags (the PyTorch GAN collection's
sngan.py): the same flags, spellings and per-codebase defaults as `integration.add_argparse_flags` /
`click_options`, defined on absl's FlagValues, and their values as the dict `controller_from_flags` takes.

    sparse_absl.define_flags(interval=15625)            # next to the script's own flags.DEFINE_* calls
    ctrl = sparse.controller_from_flags(sparse_absl.values(), G, D, on_error=sparse_absl.usage_error)

A bad value is absl's own one-line flag error; a bad combination found when the controller is built is an
`app.UsageError` (absl prints it with the usage and exits with status 2).
"""
from __future__ import annotations

import argparse

from .. import cli, integration


def _flag_values(flag_values):
    from absl import flags
    return flags.FLAGS if flag_values is None else flag_values


def _name(f) -> str:
    return f.flag[2:]   # '--sparse-exclude' -> 'sparse-exclude': the spelling every other codebase's CLI uses


def _parser(f):
    """An absl parser that converts with the flag's own type (its range checks included)."""
    from absl import flags

    class _Checked(flags.ArgumentParser):
        def parse(self, argument):
            if not isinstance(argument, str):
                return argument
            try:
                return f.type(argument)
            except (argparse.ArgumentTypeError, TypeError, ValueError) as e:
                raise ValueError(str(e) or f"invalid value {argument!r}") from None

        def flag_type(self):
            return getattr(f.type, "__name__", "value")
    return _Checked()


def define_flags(interval: int | None, warmup: int | None = None, exclude: str = "", flag_values=None) -> None:
    """Define --sparse and every method's flags (defaults as in the argparse / click versions) on absl's FLAGS."""
    from absl import flags
    fv = _flag_values(flag_values)
    # cli._with_defaults is the one place the per-codebase defaults are applied to the flag list
    for f, default in cli._with_defaults(interval, warmup, exclude):
        name, help_ = _name(f), f.help
        if name in fv:
            raise ValueError(f"absl flag --{name} is defined already: the script defines a flag of sparse_core's")
        if f.type is bool:
            flags.DEFINE_bool(name, bool(default), help_, flag_values=fv)
        elif f.choices:
            flags.DEFINE_enum(name, default, list(f.choices), help_, flag_values=fv)
        else:
            flags.DEFINE(_parser(f), name, default, help_, flag_values=fv)


def values(flag_values=None) -> dict:
    """{dest: value} of the method flags, the form `integration.controller_from_flags` takes."""
    fv = _flag_values(flag_values)
    return {f.dest: fv[_name(f)].value for f in integration.all_flags()}


def usage_error(message: str) -> None:
    """`on_error` for controller_from_flags in an absl program: one message, exit status 2 (via app.run)."""
    from absl import app
    raise app.UsageError(message, exitcode=2)
