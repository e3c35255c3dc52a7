"""Flag value types and the flags several methods declare alike (network target, tensor scope, exclusions)."""
import argparse
import math

from .base import Flag


def finite_float(text) -> float:
    """argparse / click type: a finite float (NaN and ±inf are refused by the flag's name)."""
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return v


def integer(text) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None


def split_patterns(text) -> tuple[str, ...]:
    return tuple(p for p in (text or "").split(",") if p)


def scope_flags() -> tuple[Flag, ...]:
    """--prune-target / --sparse-scope / --sparse-exclude, declared by each method that honours them."""
    return (
        Flag("--prune-target", "prune_target", str, None, "networks to sparsify: G | D | both (default: Re-GAN and "
             "tickets G, RG-GAN and the DST methods both)", "target", choices=("G", "D", "both")),
        Flag("--sparse-scope", "sparse_scope", str, None, "mask conv/linear 'weights' or 'all' parameters "
             "(Re-GAN, tickets; default weights)", "scope", choices=("weights", "all")),
        Flag("--sparse-exclude", "sparse_exclude", str, "", "comma-separated regexes of parameter names never "
             "masked", "exclude", parse=split_patterns),
    )
