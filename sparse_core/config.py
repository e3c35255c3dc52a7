"""What every method's configuration shares: the error type, number checks and `SparseConfig` (target / scope /
include / exclude, validated once), which each method's config class subclasses."""
import dataclasses
import math
import re
from typing import Sequence


class ConfigError(ValueError):
    """A sparse_core argument is out of range or inconsistent; the message names the argument."""


def number(value) -> bool:
    """A real, finite number (bools are not numbers here): NaN / ±inf would poison every later step."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SparseConfig:
    """target: 'G', 'D' or 'both'; scope: 'weights' (ndim >= 2 conv / linear / modulated weights) or 'all' (every
    parameter, as the official Re-GAN code); include / exclude: regexes searched in parameter names."""

    target: str = "G"
    scope: str = "weights"
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()

    method = ""
    scopes = ("weights", "all")

    def __post_init__(self) -> None:
        require(self.target in ("G", "D", "both"), f"target must be one of ('G', 'D', 'both'), got {self.target!r}")
        require(self.scope in self.scopes,
                f"scope must be one of {self.scopes} for {self.method or 'this method'}, got {self.scope!r}")
        for name, pats in (("include", self.include), ("exclude", self.exclude)):
            require(not isinstance(pats, str) and all(isinstance(p, str) for p in pats),
                    f"{name} must be a list of name patterns (regular expressions), got {pats!r}")
            for p in pats:
                try:
                    re.compile(p)
                except re.error as e:
                    flag = " (--sparse-exclude)" if name == "exclude" else ""
                    raise ConfigError(f"{name}{flag} pattern {p!r} is not a regular expression: {e}") from None

    def targets(self) -> tuple[str, ...]:
        return ("G", "D") if self.target == "both" else (self.target,)


def config_to_dict(cfg) -> dict:
    d = {k: list(v) if k in ("include", "exclude") else v for k, v in dataclasses.asdict(cfg).items()}
    return {**d, "method": cfg.method}
