"""Validated configuration of the three methods.

Every check raises `ConfigError` naming the offending argument, so a typo in a flag fails before
any model is touched.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence


class ConfigError(ValueError):
    """A sparse_core argument is out of range or inconsistent; the message names the argument."""


_TARGETS = ("G", "D", "both")
_SCOPES = ("weights", "all")


def _number(value) -> bool:
    """A real, finite number (bools are not numbers here): NaN / ±inf would poison every later step."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def _check_common(target: str, scope: str, include: Sequence[str], exclude: Sequence[str]) -> None:
    if target not in _TARGETS:
        raise ConfigError(f"target must be one of {_TARGETS}, got {target!r}")
    if scope not in _SCOPES:
        raise ConfigError(f"scope must be one of {_SCOPES}, got {scope!r}")
    for name, pats in (("include", include), ("exclude", exclude)):
        if isinstance(pats, str) or not all(isinstance(p, str) for p in pats):
            raise ConfigError(f"{name} must be a list of name patterns (regular expressions), got {pats!r}")


@dataclasses.dataclass(frozen=True)
class ReGANConfig:
    """Re-GAN (Saxena et al., CVPR 2023): dense warm-up, then alternate sparse and dense phases.

    sparsity:        fraction ρ of each masked tensor pruned when a sparse phase starts (uniform per tensor).
    interval:        g, length of every sparse and every dense phase, in iterations.
    warmup:          dense iterations before the first prune.
    target:          'G' (paper default), 'D' or 'both'.
    regrow:          'zero' (paper) or 'random' (Re-GAN-RI ablation: pruned entries restart from the initializer).
    dense_lr_scale:  LR multiplier of the targeted networks' optimizers in dense phases (1.0 = Re-GAN-lr ablation).
    scope:           'weights' (conv / linear / modulated weights, ndim >= 2) or 'all' (every parameter, as the
                     official code: biases, BatchNorm affine, constants, noise strengths too).
    include/exclude: regular expressions matched (re.search) against parameter names, e.g. exclude=['torgb'].
    """

    sparsity: float = 0.3
    interval: int = 5000
    warmup: int = 0
    target: str = "G"
    regrow: str = "zero"
    dense_lr_scale: float = 0.1
    scope: str = "weights"
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()

    method = "regan"

    def __post_init__(self) -> None:
        if not _number(self.sparsity) or not 0.0 <= float(self.sparsity) < 1.0:
            raise ConfigError(f"sparsity must be in [0, 1), got {self.sparsity!r}")
        if not isinstance(self.interval, int) or isinstance(self.interval, bool) or self.interval <= 0:
            raise ConfigError(f"interval must be a positive integer number of iterations, got {self.interval!r}")
        if not isinstance(self.warmup, int) or isinstance(self.warmup, bool) or self.warmup < 0:
            raise ConfigError(f"warmup must be a non-negative integer number of iterations, got {self.warmup!r}")
        if self.regrow not in ("zero", "random"):
            raise ConfigError(f"regrow must be 'zero' or 'random', got {self.regrow!r}")
        if not _number(self.dense_lr_scale) or not float(self.dense_lr_scale) > 0.0:
            raise ConfigError(f"dense_lr_scale must be a finite number > 0, got {self.dense_lr_scale!r}")
        _check_common(self.target, self.scope, self.include, self.exclude)

    def targets(self) -> tuple[str, ...]:
        return ("G", "D") if self.target == "both" else (self.target,)


@dataclasses.dataclass(frozen=True)
class RGGANConfig:
    """RG-GAN (Saxena et al., AAAI 2024): learned per-output-channel thresholds, recurrent and augmented regeneration.

    lam:             λ of the sparsity regulariser λ·Σ exp(−t) added to the G and D losses (paper 5e-12; the
                     official code uses 1e-12).
    reset_density:   a layer whose kept fraction falls to or below this is reset (thresholds back to 0); 0.01.
    official:        reproduce the official code's detached (bool-cast) mask: thresholds learn only from the
                     regulariser. Off by default; for comparisons only.
    augmented:       run augmented regeneration from the metric values fed in (feed_metric); False keeps training
                     sparse throughout (dynamic pruning + recurrent regeneration only).
    target:          networks that get thresholds; the paper prunes both.
    """

    lam: float = 5e-12
    reset_density: float = 0.01
    official: bool = False
    augmented: bool = True
    target: str = "both"
    scope: str = "weights"
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()

    method = "rggan"
    # Weights of f_-4 .. f_0 in the augmented-regeneration rule (official code).
    history_weights = (0.1, 0.1, 0.2, 0.2, 0.4)

    def __post_init__(self) -> None:
        if not _number(self.lam) or float(self.lam) < 0.0:
            raise ConfigError(f"lam (rg-lambda) must be a finite number >= 0, got {self.lam!r}")
        if not _number(self.reset_density) or not 0.0 <= float(self.reset_density) < 1.0:
            raise ConfigError(f"reset_density must be in [0, 1), got {self.reset_density!r}")
        if self.scope != "weights":
            raise ConfigError("scope must be 'weights' for RG-GAN: thresholds are per output channel of conv/linear weights")
        _check_common(self.target, self.scope, self.include, self.exclude)

    def targets(self) -> tuple[str, ...]:
        return ("G", "D") if self.target == "both" else (self.target,)


@dataclasses.dataclass(frozen=True)
class TicketConfig:
    """A fixed mask (GAN-tickets baseline, Chen et al. 2021): masks come from `tickets.prune_and_rewind` and stay
    fixed for the whole run; the controller keeps pruned weights at zero exactly like a Re-GAN sparse phase."""

    target: str = "G"
    scope: str = "weights"
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()

    method = "ticket"

    def __post_init__(self) -> None:
        _check_common(self.target, self.scope, self.include, self.exclude)

    def targets(self) -> tuple[str, ...]:
        return ("G", "D") if self.target == "both" else (self.target,)


@dataclasses.dataclass(frozen=True)
class NoneConfig:
    """No sparse training (`--sparse none`): the controller's hooks do nothing, steps just step."""

    method = "none"

    def targets(self) -> tuple[str, ...]:
        return ()


def config_to_dict(cfg) -> dict:
    d = dataclasses.asdict(cfg)
    d["method"] = cfg.method
    for k in ("include", "exclude"):
        if k in d:
            d[k] = list(d[k])
    return d


def config_from_dict(d: dict):
    """The config a saved controller state was written with (classes from the method registry only)."""
    from . import methods
    d = dict(d)
    method = d.pop("method", None)
    try:
        cls = methods.get(method).config_cls
    except ConfigError:
        raise ConfigError(f"unknown method {method!r} in saved controller state") from None
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - fields)
    if unknown:
        raise ConfigError(f"saved {method} config has unknown fields {unknown}")
    return cls(**{k: (tuple(v) if k in ("include", "exclude") else v) for k, v in d.items()})
