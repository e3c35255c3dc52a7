"""Flag checks shared by the vendor trees' command lines.

Each check raises FlagError (a ValueError) whose message names the flag and the value; the vendor's
argument parsing turns it into its CLI's usage error (argparse `parser.error`, click `ctx.fail`), exit 2,
before anything is written. `check(on_error, fn, *args)` is the one-line form for a call site.
"""
from __future__ import annotations

import argparse
import math
import numbers
import os
import sys
import tempfile

__all__ = ["ArgumentParser", "FlagError", "check", "finite", "finite_positive", "finite_nonneg", "unit_interval", "seed",
           "out_dir", "device", "SEED_LIMIT"]

SEED_LIMIT = 2 ** 32  # numpy's RandomState and most seeding code take seeds in [0, 2^32)
# Pseudo file systems: a run folder there cannot hold files (writes fail or go to the kernel).
_PSEUDO_ROOTS = ("/proc", "/sys", "/dev")


class FlagError(ValueError):
    """A flag value that cannot work; the message names the flag."""


def check(on_error, fn, *args, **kwargs):
    """fn(*args, **kwargs), with a FlagError passed to on_error (e.g. parser.error) as its message."""
    try:
        return fn(*args, **kwargs)
    except FlagError as error:
        on_error(str(error))
        raise


def _real(value, flag: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise FlagError(f"{flag}: expected a number, got {value!r}")
    return float(value)


def finite(value, flag: str) -> float:
    """A finite number (not nan, not inf)."""
    if not math.isfinite(_real(value, flag)):
        raise FlagError(f"{flag}: must be a finite number, got {value}")
    return value


def finite_positive(value, flag: str) -> float:
    """A finite number > 0 (learning rates, lengths)."""
    finite(value, flag)
    if value <= 0:
        raise FlagError(f"{flag}: must be > 0, got {value}")
    return value


def finite_nonneg(value, flag: str) -> float:
    """A finite number >= 0 (loss weights)."""
    finite(value, flag)
    if value < 0:
        raise FlagError(f"{flag}: must be >= 0, got {value}")
    return value


def unit_interval(value, flag: str, high_closed: bool = False) -> float:
    """A number in [0, 1) (Adam betas, decays), or [0, 1] with high_closed."""
    finite(value, flag)
    if value < 0 or value > 1 or (value == 1 and not high_closed):
        raise FlagError(f"{flag}: must be in [0, 1{']' if high_closed else ')'}, got {value}")
    return value


def seed(value, flag: str) -> int:
    """An integer seed in [0, 2^32)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise FlagError(f"{flag}: expected an integer seed, got {value!r}")
    if not 0 <= value < SEED_LIMIT:
        raise FlagError(f"{flag}: a seed must be in [0, 2^32), got {value}")
    return value


def _under_pseudo_fs(path: str) -> str | None:
    real = os.path.realpath(path)
    for root in _PSEUDO_ROOTS:
        if real == root or real.startswith(root + os.sep):
            return root
    return None


def out_dir(path, flag: str) -> str:
    """A folder a run can write into: an existing folder, or one that can be created below the nearest
    existing folder. Refused: a file (or a file on the way), a folder that is not writable, a place under
    /proc, /sys or /dev. Nothing is created (a probe file is made and removed in the nearest existing folder)."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise FlagError(f"{flag}: expected a folder name, got {path!r}")
    path = os.fspath(path)
    root = _under_pseudo_fs(path)
    if root is not None:
        raise FlagError(f"{flag} {path}: is under {root}, which cannot hold a run's files")
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        what = "exists and is not a folder" if probe == os.path.abspath(path) else f"{probe} is a file, not a folder"
        raise FlagError(f"{flag} {path}: {what}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise FlagError(f"{flag} {path}: {probe} is not writable")
    try:
        handle, name = tempfile.mkstemp(prefix=".write-probe-", dir=probe)
    except OSError as error:
        raise FlagError(f"{flag} {path}: cannot write in {probe} ({error.strerror or error})") from None
    os.close(handle)
    os.remove(name)
    return path


def device(value, flag: str = "--device"):
    """A torch device that exists here: 'cuda' needs a CUDA device (and the index one of them)."""
    import torch

    try:
        dev = torch.device(value)
    except (RuntimeError, TypeError, ValueError) as error:
        raise FlagError(f"{flag} {value}: {error}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise FlagError(f"{flag} {value}: no CUDA device is available here (use --device cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise FlagError(f"{flag} {value}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise FlagError(f"{flag} {value}: MPS is not available here")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise FlagError(f"{flag} {value}: only cpu and cuda devices are supported")
    return dev


def _spelling(option: str) -> str:
    return option.replace("_", "-")


class ArgumentParser(argparse.ArgumentParser):
    """argparse.ArgumentParser whose long flags take '-' and '_' alike: `--data_ratio` and `--data-ratio`,
    `--rg_lambda` and `--rg-lambda` name the same flag, whichever spelling was registered, also for flags added
    after construction (argument groups included, e.g. the sparse-training flags a patch adds). A word on the
    command line is respelled only when it is not a registered flag itself and exactly one registered flag has
    the same name up to '-' / '_'; values (`--flag=value`, the word after a flag) and everything after `--` are
    left as they are. `--help` shows the registered spellings and says that both are accepted."""

    NOTE = "Long flags may be written with '-' or '_' alike (--data_ratio = --data-ratio)."

    def __init__(self, *args, **kwargs):
        epilog = kwargs.get("epilog")
        kwargs["epilog"] = f"{epilog} {self.NOTE}" if epilog else self.NOTE
        super().__init__(*args, **kwargs)

    def respell(self, args: list[str]) -> list[str]:
        """`args` with each long flag in the spelling the parser registered (see the class docstring)."""
        registered = self._option_string_actions
        by_spelling: dict[str, set] = {}
        for option, action in registered.items():
            if option.startswith("--"):
                by_spelling.setdefault(_spelling(option), set()).add((option, id(action)))
        out = []
        for i, arg in enumerate(args):
            if arg == "--":
                out.extend(args[i:])
                break
            if isinstance(arg, str) and arg.startswith("--") and len(arg) > 2:
                name, eq, value = arg.partition("=")
                if name not in registered:
                    candidates = by_spelling.get(_spelling(name), set())
                    if len({action for _, action in candidates}) == 1:
                        arg = min(option for option, _ in candidates) + eq + value
            out.append(arg)
        return out

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(self.respell(args), namespace)
