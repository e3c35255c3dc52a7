"""Dynamic sparse training (DST) machinery shared by `static`, `set`, `rigl` (and `stugan`, `adapt`): not a method
itself, a base class and pure functions.

Every masked tensor of a targeted network holds a 0/1 mask with a fixed number of active entries. The network's
density (`density_g` / `density_d`) is spread over its tensors `uniform`ly or by ERK (Evci et al. 2020:
density ∝ (sum of dims) / (prod of dims), dense layers clamped to 1 and the scale re-solved); the initial masks
are random with exactly round(density · numel) active entries. Every `update_frequency` iterations (before
`update_end`) a dynamic method drops the round(rate · active) smallest-magnitude active weights of every tensor
and regrows as many inactive entries (the just-dropped ones included), chosen by random scores or by the dense
gradient's magnitude; regrown weights start at zero. `rate` follows the death-rate schedule: cosine
α/2·(1 + cos(π t / T_end)), linear α·(1 − t / T_end) or constant α.

When: `on_iteration(t)` marks an update due for every targeted network; it runs in that network's next
`before_step` (after its backward, before the optimizer step), where the gradient of every entry is present:
masks zero the *weights* (the forward reads them), so autograd computes the dense gradient of pruned entries too,
and it is read only on update steps, before `MaskMethod` masks it. Unlike RigL's TensorFlow code the optimizer
step of an update iteration still runs (with the new masks); optimizer state of regrown entries is not reset.
Random choices come from generators seeded by (mask_seed, purpose, network, tensor, iteration): no RNG state to
save, the same on every DDP rank; new masks are also broadcast from rank 0. T_end: `update_end`, else
`end_fraction` of the run length that `ctrl.check_run_length(N)` (the patches' `run_length=`) gives; a decaying
schedule with neither is refused at the first iteration. The pending updates and T_end are saved in the state.

A subclass (one file, registered) sets:
- `name`, `config_cls` (a subclass of `DSTConfig`, or `DynamicConfig` for methods whose masks change; its field
  defaults are the method's defaults: the shared flags default to None and leave the config's value alone),
  `flags` (`init_flags()` / `dynamic_flags()` + `scope_flags()` + its own);
- `dynamic` (False: masks fixed after attach), `end_fraction` (T_end as a fraction of the run length when
  `update_end` is not given; RigL 0.75);
and may override:
- `grow_mode(net)` -> 'random' | 'gradient' (default: the class attribute `growth`);
- `density(net)` (the network's target density; ADAPT: D's changes), `update_due(t)`, `death_rate(t)`;
- `update(net, t)` (one prune/regrow of one network; `prune_regrow` and `resize` are the building blocks),
  `state_dict` / `check_state` / `load_state_dict` (call super's: they keep the pending updates and T_end).
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import warnings

import torch

from ..config import ConfigError, SparseConfig, count, number
from .base import Flag, MaskMethod, broadcast
from .shared import finite_float, integer

SCHEDULES = ("cosine", "linear", "constant")
DISTRIBUTIONS = ("uniform", "erk")
GROWTH = ("random", "gradient")
SPARSE = "sparse"


# ------------------------------------------------------------------------------------------- pure functions
def erk_densities(shapes: dict[str, tuple[int, ...]], density: float, power: float = 1.0) -> dict[str, float]:
    """ERK per-tensor densities for a network density `density`: d_l = eps · ((Σ dims_l) / (Π dims_l))^power,
    eps solved so that Σ d_l n_l = density · Σ n_l; a tensor whose d_l would exceed 1 is dense and eps is solved
    again over the rest (the largest raw score first, as Evci et al.)."""
    if not 0.0 < density <= 1.0:
        raise ConfigError(f"density must be in (0, 1], got {density!r}")
    numel = {k: math.prod(s) for k, s in shapes.items()}
    raw = {k: (sum(s) / numel[k]) ** power for k, s in shapes.items()}
    total = sum(numel.values())
    dense: set[str] = set()
    while True:
        rest = [k for k in shapes if k not in dense]
        if not rest:
            return {k: 1.0 for k in shapes}
        eps = (density * total - sum(numel[k] for k in dense)) / sum(raw[k] * numel[k] for k in rest)
        top = max(raw[k] for k in rest)
        if eps * top <= 1.0:
            return {k: 1.0 if k in dense else eps * raw[k] for k in shapes}
        dense.update(k for k in rest if raw[k] == top)


def uniform_densities(shapes: dict[str, tuple[int, ...]], density: float) -> dict[str, float]:
    if not 0.0 < density <= 1.0:
        raise ConfigError(f"density must be in (0, 1], got {density!r}")
    return {k: float(density) for k in shapes}


def active_count(density: float, numel: int) -> int:
    """Active entries of a tensor at `density`: round half to even, at least 1."""
    return min(numel, max(1, int(round(float(density) * numel))))


def death_rate_at(schedule: str, alpha: float, t: int, end: int | None) -> float:
    """Fraction of the active weights dropped at an update at iteration t (T_end = `end`)."""
    if schedule == "constant":
        return float(alpha)
    if end is None or end <= 0:
        raise ConfigError(f"death-rate schedule {schedule!r} needs its end iteration (update_end)")
    frac = min(max(t / end, 0.0), 1.0)
    if schedule == "cosine":
        return float(alpha) / 2.0 * (1.0 + math.cos(math.pi * frac))
    if schedule == "linear":
        return float(alpha) * (1.0 - frac)
    raise ConfigError(f"death-rate schedule must be one of {SCHEDULES}, got {schedule!r}")


def _order(score: torch.Tensor, descending: bool) -> torch.Tensor:
    """Flat indices sorted by score; ties in flat-index order (a stable sort)."""
    return torch.sort(score.flatten(), descending=descending, stable=True).indices


def pick(score: torch.Tensor, eligible: torch.Tensor, k: int, largest: bool) -> torch.Tensor:
    """Bool tensor (score's shape) of the k eligible entries with the largest (smallest) score; ties go to the
    lower flat index. Refuses k above the eligible count."""
    n_eligible = int(eligible.sum())
    if k > n_eligible:
        raise ValueError(f"cannot pick {k} entries out of {n_eligible} eligible")
    s = score.detach().flatten().double()
    fill = -math.inf if largest else math.inf
    s = torch.where(eligible.flatten().bool(), s, torch.full_like(s, fill))
    out = torch.zeros(s.numel(), dtype=torch.bool, device=s.device)
    out[_order(s, descending=largest)[:k]] = True
    return out.view(score.shape)


def prune_regrow(weight: torch.Tensor, mask: torch.Tensor, k: int, grow_score: torch.Tensor) -> torch.Tensor:
    """New mask (mask's dtype): the k active entries of smallest |weight| die, then the k inactive entries (the
    ones just dropped included) of largest `grow_score` grow. The active count is unchanged."""
    active = mask.bool()
    if k <= 0:
        return mask.clone()
    dead = pick(weight.detach().abs(), active, k, largest=False)
    kept = active & ~dead
    grown = pick(grow_score, ~kept, k, largest=True)
    return (kept | grown).to(mask.dtype)


def resize(weight: torch.Tensor, mask: torch.Tensor, target: int, grow_score: torch.Tensor) -> torch.Tensor:
    """New mask with exactly `target` active entries: the smallest-|weight| active ones die, or the inactive
    ones of largest `grow_score` grow (a density change, e.g. ADAPT's D)."""
    active = mask.bool()
    n = int(active.sum())
    if target < n:
        return (active & ~pick(weight.detach().abs(), active, n - target, largest=False)).to(mask.dtype)
    if target > n:
        return (active | pick(grow_score, ~active, target - n, largest=True)).to(mask.dtype)
    return mask.clone()


def generator_for(seed: int, *keys) -> torch.Generator:
    """A CPU generator seeded by (seed, keys): the same stream on every rank and after every resume."""
    digest = hashlib.sha256(repr((int(seed),) + tuple(keys)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def random_scores(like: torch.Tensor, seed: int, *keys) -> torch.Tensor:
    """Uniform [0, 1) scores of `like`'s shape (float32, drawn on the CPU, moved to like's device)."""
    return torch.rand(tuple(like.shape), generator=generator_for(seed, *keys)).to(like.device)


def random_mask(like: torch.Tensor, active: int, seed: int, *keys) -> torch.Tensor:
    """A mask (like's dtype) with exactly `active` entries on, chosen uniformly at random."""
    score = random_scores(like, seed, *keys)
    return pick(score, torch.ones_like(score, dtype=torch.bool), active, largest=True).to(like.dtype)


# ------------------------------------------------------------------------------------------------- configs
@dataclasses.dataclass(frozen=True)
class DSTConfig(SparseConfig):
    """density_g / density_d: kept fraction of each network's masked entries; distribution: 'uniform' | 'erk'
    (how the density is spread over the tensors); mask_seed: seed of the random masks (and random growth)."""

    target: str = "both"
    density_g: float = 0.3
    density_d: float = 0.3
    distribution: str = "erk"
    mask_seed: int = 0

    def __post_init__(self) -> None:
        for f in ("density_g", "density_d"):
            v = getattr(self, f)
            if not number(v) or not 0.0 < float(v) <= 1.0:
                raise ConfigError(f"{f} must be in (0, 1], got {v!r}")
        if self.distribution not in DISTRIBUTIONS:
            raise ConfigError(f"distribution must be one of {DISTRIBUTIONS}, got {self.distribution!r}")
        if not count(self.mask_seed) or self.mask_seed < 0:
            raise ConfigError(f"mask_seed must be an integer >= 0, got {self.mask_seed!r}")
        super().__post_init__()


@dataclasses.dataclass(frozen=True)
class DynamicConfig(DSTConfig):
    """update_frequency: iterations between mask updates (ΔT); death_rate: α, the fraction of active weights
    dropped (and regrown) at an update, decayed by death_rate_schedule up to update_end (T_end, iterations;
    None: the method's end_fraction of the run length)."""

    update_frequency: int = 100
    death_rate: float = 0.3
    death_rate_schedule: str = "cosine"
    update_end: int | None = None

    def __post_init__(self) -> None:
        if not count(self.update_frequency) or self.update_frequency <= 0:
            raise ConfigError(f"update_frequency must be a positive integer number of iterations, "
                              f"got {self.update_frequency!r}")
        if not number(self.death_rate) or not 0.0 <= float(self.death_rate) < 1.0:
            raise ConfigError(f"death_rate must be in [0, 1), got {self.death_rate!r}")
        if self.death_rate_schedule not in SCHEDULES:
            raise ConfigError(f"death_rate_schedule must be one of {SCHEDULES}, got {self.death_rate_schedule!r}")
        if self.update_end is not None and (not count(self.update_end) or self.update_end <= 0):
            raise ConfigError(f"update_end must be a positive integer number of iterations, got {self.update_end!r}")
        super().__post_init__()


# --------------------------------------------------------------------------------------------------- flags
def init_flags() -> tuple[Flag, ...]:
    """Flags of every DST method (defaults None: the method's config holds its defaults)."""
    return (
        Flag("--density-G", "density_g", finite_float, None, "DST methods: kept fraction of G's masked weights "
             "(default: the method's; README methods table)", "density_g"),
        Flag("--density-D", "density_d", finite_float, None, "DST methods: kept fraction of D's masked weights "
             "(default: the method's)", "density_d"),
        Flag("--sparse-init", "sparse_init", str, None, "DST methods: distribution of the density over layers: "
             "uniform | erk (default erk)", "distribution", choices=DISTRIBUTIONS),
        Flag("--mask-seed", "mask_seed", integer, None, "DST methods: seed of the random masks and random growth "
             "(default 0)", "mask_seed"),
    )


def dynamic_flags() -> tuple[Flag, ...]:
    """init_flags() and the update schedule of the methods whose masks change."""
    return init_flags() + (
        Flag("--update-frequency", "update_frequency", integer, None, "DST methods: iterations between mask "
             "updates (default: the method's)", "update_frequency"),
        Flag("--death-rate", "death_rate", finite_float, None, "DST methods: fraction of active weights dropped and "
             "regrown per update before decay (default: the method's)", "death_rate"),
        Flag("--death-rate-schedule", "death_rate_schedule", str, None, "DST methods: decay of the death rate: "
             "cosine | linear | constant (default: the method's)", "death_rate_schedule", choices=SCHEDULES),
        Flag("--update-end", "update_end", integer, None, "DST methods: iteration after which masks stop changing "
             "(T_end; default: the method's fraction of the run length)", "update_end"),
    )


# ------------------------------------------------------------------------------------------------ the base
class DST(MaskMethod):
    """Fixed-count masks from prepare() on; dynamic subclasses prune and regrow them on a schedule."""

    phases = (SPARSE,)
    dynamic = True
    growth = "random"          # 'random' | 'gradient'
    end_fraction = 0.75        # T_end / run length when update_end is not given (RigL)

    def attach(self) -> None:
        super().attach()
        self._pending: dict[str, int] = {}   # network -> iteration of the update due at its next before_step
        self._run_end: int | None = None     # T_end from the run length (check_run_length)
        self._saved_end: int | None = None   # T_end a resumed run was started with (wins over the run length)
        self.init_masks()

    # ---------------------------------------------------------------- densities and initial masks
    def density(self, net_name: str) -> float:
        return float(self.config.density_g if net_name == "G" else self.config.density_d)

    def initial_densities(self, net_name: str) -> dict[str, float]:
        c = self.ctx
        shapes = {s.name: tuple(c.param(net_name, s).shape) for s in c.sites[net_name]}
        spread = erk_densities if self.config.distribution == "erk" else uniform_densities
        return spread(shapes, self.density(net_name))

    @torch.no_grad()
    def init_masks(self) -> None:
        c = self.ctx
        for n in c.targets:
            dens = self.initial_densities(n)
            masks = {}
            for i, s in enumerate(c.sites[n]):
                p = c.param(n, s)
                masks[s.name] = random_mask(p, active_count(dens[s.name], p.numel()), self.config.mask_seed,
                                            "init", n, i)
                broadcast(masks[s.name])
            self.set_masks(n, masks)

    def phase(self) -> str:
        return SPARSE

    # ---------------------------------------------------------------- schedule
    def update_end(self) -> int | None:
        """T_end: masks change at iterations t < T_end (None: no end known, or masks never change)."""
        cfg = self.config
        if not self.dynamic:
            return None
        if cfg.update_end is not None:
            return int(cfg.update_end)
        return self._saved_end if self._saved_end is not None else self._run_end

    def update_due(self, iteration: int) -> bool:
        if not self.dynamic or iteration <= 0 or iteration % self.config.update_frequency:
            return False
        end = self.update_end()
        return end is None or iteration < end

    def death_rate(self, iteration: int) -> float:
        return death_rate_at(self.config.death_rate_schedule, self.config.death_rate, iteration, self.update_end())

    def grow_mode(self, net_name: str) -> str:
        return self.growth

    def schedule_warning(self, run_length: int) -> str | None:
        """Also learns the run length: T_end = end_fraction · run_length when update_end is not given."""
        if not self.dynamic:
            return None
        self._run_end = max(1, int(round(self.end_fraction * run_length)))
        end, f = self.update_end(), self.config.update_frequency
        if f >= min(end, run_length + 1):
            return (f"the first mask update is at iteration {f} (--update-frequency), but the run has {run_length} "
                    f"iterations and updates end at {end} (--update-end): the masks never change")
        return None

    def on_iteration(self, iteration: int) -> str | None:
        if self.dynamic and self.update_end() is None and self.config.death_rate_schedule != "constant":
            raise ConfigError(f"{self.name}: the {self.config.death_rate_schedule} death-rate schedule needs its end: "
                              f"give update_end (--update-end) or the run's length (ctrl.check_run_length(N)) "
                              f"before training")
        if self.update_due(iteration):
            self._pending = {n: iteration for n in self.ctx.targets}
        return None

    # ---------------------------------------------------------------- updates
    def before_step(self, net_name: str) -> None:
        if net_name in self._pending:
            self.update(net_name, self._pending.pop(net_name))
        super().before_step(net_name)

    def grow_score(self, net_name: str, index: int, iteration: int, p: torch.Tensor, site) -> torch.Tensor:
        mode = self.grow_mode(net_name)
        if mode == "random":
            return random_scores(p, self.config.mask_seed, "grow", net_name, index, iteration)
        if mode == "gradient":
            if p.grad is None:
                raise RuntimeError(f"{self.name}: {net_name} tensor {site.name!r} has no gradient at the mask update "
                                   f"of iteration {iteration}: gradient growth cannot rank its entries (is the "
                                   f"layer used by {net_name}'s loss?)")
            return p.grad.detach().abs()
        raise ConfigError(f"{self.name}: growth must be one of {GROWTH}, got {mode!r}")

    @torch.no_grad()
    def update(self, net_name: str, iteration: int) -> None:
        """One prune / regrow of every tensor of `net_name` at the death rate of `iteration`."""
        c = self.ctx
        rate = self.death_rate(iteration)
        masks = {}
        for i, s in enumerate(c.sites[net_name]):
            p, mask = c.param(net_name, s), self.mask(s, net_name)
            active = int(mask.sum())
            k = int(round(rate * active))
            if k <= 0 or active == mask.numel():   # a dense tensor regrows exactly what it dropped
                continue
            new = prune_regrow(p, mask, k, self.grow_score(net_name, i, iteration, p, s))
            broadcast(new)
            masks[s.name] = new
        if masks:
            self.set_masks(net_name, masks)

    def stats(self) -> dict:
        if not self.dynamic or self.update_end() is None and self.config.death_rate_schedule != "constant":
            return {}
        return {"sparse/death_rate": self.death_rate(self.ctx.iteration)}

    # ---------------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        return {"pending": dict(self._pending), "update_end": self.update_end()}

    def check_state(self, state: dict) -> None:
        pending, end = state.get("pending"), state.get("update_end", "<missing>")
        if not isinstance(pending, dict) or not all(k in self.ctx.targets and count(v) and v > 0
                                                    for k, v in pending.items()):
            raise ConfigError("entry 'method_state.pending' must map targeted networks to the iterations of their "
                              "due mask updates")
        if not self.dynamic and (pending or end is not None):
            raise ConfigError(f"entry 'method_state' holds mask updates, but {self.name}'s masks never change")
        if end is not None and (not count(end) or end <= 0):
            raise ConfigError(f"entry 'method_state.update_end' must be null or an iteration > 0, got {end!r}")

    def load_state_dict(self, state: dict, phase: str) -> None:
        self._pending = {k: int(v) for k, v in state["pending"].items()}
        end = state.get("update_end")
        if self.dynamic and self.config.update_end is None and end is not None:
            if self._run_end is not None and self._run_end != end:
                warnings.warn(f"sparse_core ({self.name}): the resumed run's masks stop changing at iteration {end}, "
                              f"as when it started ({self.end_fraction} of this run's length would be "
                              f"{self._run_end}); pass --update-end to change it", stacklevel=2)
            self._saved_end = int(end)
        self.after_load()
