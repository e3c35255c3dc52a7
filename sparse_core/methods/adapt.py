"""`adapt`: ADAPT, balanced dynamic sparse training (Wang, Wu, Hovakimyan, Sun, "Balanced Training for Sparse
GANs", NeurIPS 2023; the ADAPT_relax variant). G trains by dynamic sparse training at a fixed density; D's
density follows the balance ratio between G and D.

Balance ratio (the paper's BR, measured every `br_interval` iterations, starting at iteration 0). In a G step,
with z the latent batch of that step, x the latest real batch, D the discriminator of that step (already
updated in this iteration), G0 the generator before and G1 after its optimizer step, and E[.] the mean over
every element of D's output:
    BR = (E[D(G1(z))] − E[D(G0(z))]) / (E[D(x)] − E[D(G0(z))])
i.e. how far one generator update moves D's score of the fakes towards its score of the reals. BR near 0: D
is too strong for G; near 1 or above: G fools D easily, D is too weak.

How the three scores are taken here: a forward pre-hook remembers the arguments of G's and D's last calls made
with gradients in the current iteration (in a G step: G(z, ...) and D(G(z), ...)); a loop that calls G only
through its submodules (StyleGAN2-ADA's mapping / synthesis) is refused at the first measurement. Just before G's optimizer step the method computes E[D(G0(z))] with those
arguments, right after it E[D(G1(z))] and E[D(x)] (x with the same extra arguments D got). The forwards run
without gradients, in the networks' current train/eval mode, under a forked RNG, and every buffer they touch
(BatchNorm statistics, spectral-norm vectors) is restored: measuring changes nothing the training computes. They
are real work, so the FLOP account charges them (at the densities they ran with). Upstream scored augmented
images (DiffAugment, when on) and took E[D(G0(z))] from the G step's own forward; here no augmentation is
applied. The real batch comes from the training loop: `ctrl.observe_real(x)` where the loop reads D's real batch
(before augmentation; every patched vendor but StyleGAN2-ADA calls it); a measurement without it refuses
(ConfigError), it is never skipped silently.

D's density (every `d_interval` iterations t, 0 < t < T_end, once the window is full, i.e. holds the last
window // br_interval measurements; B = their mean):
    B ≥ br_high  and d < d_max:  d ← min(d_max, d + d_step)   grow D: the inactive entries of largest |dL_D/dw|
                                                              over all of D's masked tensors (one global ranking)
    B ≤ br_low   and d > d_min:  d ← max(d_min, d − d_step)   prune D: the active entries of smallest |w|, global
    otherwise: unchanged.
The new mask keeps round(d · N_D) entries (N_D: D's masked entries) and is applied at D's next optimizer step
(where its dense gradient exists); grown weights start at zero. Rank 0 decides; the decision and the masks are
broadcast to the other DDP ranks. D has no other mask exploration (ADAPT_relax).

G: every ΔT iterations (0 < t < T_end), at G's next optimizer step, k = round(r_t · a) of G's a active entries
die by global smallest |w| and k inactive ones grow by global largest |dL_G/dw| (ADAPT's global_magnitude /
global_gradient), r_t the death-rate schedule (cosine by default) up to T_end = the run length.

Defaults are ADAPT_relax's (scripts/adapt_relax.sh of the public code): densities 0.1 / 0.1 at the start, ERK,
G: α = 0.5 cosine, ΔT = 500; D: BR every 10 iterations over a 1000-iteration window, adjusted every 1000
iterations by 0.05 within bounds [0.45, 0.55], density kept in [0.05, 1.0] (the code's floor and ceiling).
"""
from __future__ import annotations

import collections
import dataclasses
import math

import torch
import torch.distributed as dist

from ..config import ConfigError, count, number
from .base import Flag, broadcast, register
from .dst import DST, GROWTH, DynamicConfig, dynamic_flags, pick, random_scores
from .shared import finite_float, integer, scope_flags

_RECORDER = "_sparse_core_adapt_calls"


# ------------------------------------------------------------------------------------------- pure functions
def balance_ratio(d_fake_before: float, d_fake_after: float, d_real: float) -> float:
    """The paper's BR from the three mean D scores (see the module docstring)."""
    return (d_fake_after - d_fake_before) / (d_real - d_fake_before)


def next_density(d: float, br: float, low: float, high: float, step: float, d_min: float, d_max: float) -> float:
    """ADAPT's adjustment of D's density from the windowed mean BR `br` (rounded to 12 decimals: 0.1 + 0.05 is
    0.15, not 0.15000000000000002)."""
    if br >= high and d < d_max:
        return round(min(d_max, d + step), 12)
    if br <= low and d > d_min:
        return round(max(d_min, d - step), 12)
    return d


def _flat(ts) -> torch.Tensor:
    return torch.cat([t.detach().flatten().double() for t in ts])


def _split(flat: torch.Tensor, likes) -> list[torch.Tensor]:
    out, i = [], 0
    for t in likes:
        out.append(flat[i:i + t.numel()].view(t.shape))
        i += t.numel()
    return out


def global_prune_regrow(weights, masks, k: int, scores) -> list[torch.Tensor]:
    """New masks: the k active entries of smallest |w| over all tensors die, then the k inactive entries (just
    dropped included) of largest score grow (ties: lower position in the concatenation of the tensors)."""
    active = _flat(masks).bool()
    if k <= 0:
        return [m.clone() for m in masks]
    w = _flat([x.abs() for x in weights])
    kept = active & ~pick(w, active, k, largest=False)
    new = kept | pick(_flat(scores), ~kept, k, largest=True)
    return [m.to(masks[0].dtype) for m in _split(new, masks)]


def global_resize(weights, masks, target: int, scores) -> list[torch.Tensor]:
    """New masks with `target` active entries over all tensors: the smallest-|w| active ones die, or the inactive
    ones of largest score grow."""
    active = _flat(masks).bool()
    n = int(active.sum())
    if target < n:
        new = active & ~pick(_flat([x.abs() for x in weights]), active, n - target, largest=False)
    elif target > n:
        new = active | pick(_flat(scores), ~active, target - n, largest=True)
    else:
        new = active
    return [m.to(masks[0].dtype) for m in _split(new, masks)]


# ----------------------------------------------------------------------------------------- call recording
class _Calls:
    """The arguments of a network's last forward call, kept in the module's __dict__ (the hook is a plain
    function): a copy of the module (G_ema, an export, a pickle) gets a recorder that records nothing."""

    def __init__(self, live: bool = True) -> None:
        self.live, self.args, self.kwargs = live, None, None

    def __deepcopy__(self, memo):
        return _Calls(live=False)

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.__init__(live=False)


def _record_call(module, args, kwargs):
    """Forward pre-hook: remember a training call's arguments (calls without gradients, e.g. FLOP measuring, the
    D step's fakes or the method's own scoring, are not the G step's)."""
    rec = module.__dict__.get(_RECORDER)
    if rec is not None and rec.live and torch.is_grad_enabled():
        rec.args = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)
        rec.kwargs = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    return None


def _first_tensor(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    for o in out if isinstance(out, (tuple, list)) else ():
        if isinstance(o, torch.Tensor):
            return o
    raise ConfigError(f"adapt: D's output is a {type(out).__name__} without a tensor: no score for the balance ratio")


# ------------------------------------------------------------------------------------------------- config
@dataclasses.dataclass(frozen=True)
class ADAPTConfig(DynamicConfig):
    """density_d: D's density at the start; br_interval: iterations between BR measurements; window: iterations
    the mean BR spans; d_interval: iterations between density adjustments; br_low / br_high: the BR bounds;
    d_step: density change per adjustment; d_min / d_max: D's density range; growth_d: how D grows."""

    density_g: float = 0.1
    density_d: float = 0.1
    death_rate: float = 0.5
    death_rate_schedule: str = "cosine"
    update_frequency: int = 500
    br_interval: int = 10
    window: int = 1000
    d_interval: int = 1000
    br_low: float = 0.45
    br_high: float = 0.55
    d_step: float = 0.05
    d_min: float = 0.05
    d_max: float = 1.0
    growth_d: str = "gradient"

    method = "adapt"

    def __post_init__(self) -> None:
        for f in ("br_interval", "window", "d_interval"):
            v = getattr(self, f)
            if not count(v) or v <= 0:
                raise ConfigError(f"{f} must be a positive integer number of iterations, got {v!r}")
        if self.window < self.br_interval:
            raise ConfigError(f"window ({self.window}) must span at least one BR measurement (br_interval "
                              f"{self.br_interval})")
        for f in ("br_low", "br_high", "d_step", "d_min", "d_max"):
            if not number(getattr(self, f)):
                raise ConfigError(f"{f} must be a finite number, got {getattr(self, f)!r}")
        if not self.br_low < self.br_high:
            raise ConfigError(f"br_low ({self.br_low}) must be below br_high ({self.br_high})")
        if not 0.0 < self.d_step < 1.0:
            raise ConfigError(f"d_step must be in (0, 1), got {self.d_step!r}")
        if not 0.0 < self.d_min <= self.d_max <= 1.0:
            raise ConfigError(f"d_min / d_max must satisfy 0 < d_min <= d_max <= 1, got {self.d_min!r} / "
                              f"{self.d_max!r}")
        if number(self.density_d) and not self.d_min <= self.density_d <= self.d_max:
            raise ConfigError(f"density_d ({self.density_d}) must lie within [d_min, d_max] = [{self.d_min}, "
                              f"{self.d_max}]")
        if self.growth_d not in GROWTH:
            raise ConfigError(f"growth_d must be one of {GROWTH}, got {self.growth_d!r}")
        if self.target != "both":
            raise ConfigError(f"target must be 'both' for adapt (it balances a sparse G against a sparse D), "
                              f"got {self.target!r}")
        super().__post_init__()


@register
class ADAPT(DST):
    name = "adapt"
    config_cls = ADAPTConfig
    end_fraction = 1.0
    growth = "gradient"
    flags = dynamic_flags() + (
        Flag("--adapt-br-interval", "adapt_br_interval", integer, None, "ADAPT: iterations between balance-ratio "
             "measurements (default 10)", "br_interval"),
        Flag("--adapt-window", "adapt_window", integer, None, "ADAPT: iterations the mean balance ratio spans "
             "(default 1000)", "window"),
        Flag("--adapt-d-interval", "adapt_d_interval", integer, None, "ADAPT: iterations between adjustments of "
             "D's density (default 1000)", "d_interval"),
        Flag("--adapt-br-low", "adapt_br_low", finite_float, None, "ADAPT: D's density falls when the mean BR is at "
             "or below this (default 0.45)", "br_low"),
        Flag("--adapt-br-high", "adapt_br_high", finite_float, None, "ADAPT: D's density rises when the mean BR is "
             "at or above this (default 0.55)", "br_high"),
        Flag("--adapt-d-step", "adapt_d_step", finite_float, None, "ADAPT: change of D's density per adjustment "
             "(default 0.05)", "d_step"),
        Flag("--adapt-d-min", "adapt_d_min", finite_float, None, "ADAPT: lowest density of D (default 0.05)",
             "d_min"),
        Flag("--adapt-d-max", "adapt_d_max", finite_float, None, "ADAPT: highest density of D (default 1.0)",
             "d_max"),
        Flag("--adapt-growth-D", "adapt_growth_d", str, None, "ADAPT: how D grows when its density rises: "
             "gradient | random (default gradient)", "growth_d", choices=GROWTH),
    ) + scope_flags()

    # ---------------------------------------------------------------- attaching
    def attach(self) -> None:
        self._d = float(self.config.density_d)
        self._window: collections.deque = collections.deque(maxlen=self.config.window // self.config.br_interval)
        self._real: torch.Tensor | None = None
        self._probe: dict | None = None      # the measurement of the current G step (G0's score)
        self._hooks = []
        super().attach()
        for n in ("G", "D"):
            net = self.ctx.nets[n]
            net.__dict__[_RECORDER] = _Calls()
            self._hooks.append(net.register_forward_pre_hook(_record_call, with_kwargs=True))

    def export_done(self, net) -> None:
        net.__dict__.pop(_RECORDER, None)
        for key in [k for k, fn in net._forward_pre_hooks.items() if fn is _record_call]:
            net._forward_pre_hooks.pop(key)
            net._forward_pre_hooks_with_kwargs.pop(key, None)

    def density(self, net_name: str) -> float:
        return self._d if net_name == "D" else float(self.config.density_g)

    # ---------------------------------------------------------------- the balance ratio
    def observe_real(self, images: torch.Tensor) -> None:
        """The training loop's latest real batch (what D(x) of the balance ratio scores)."""
        if not isinstance(images, torch.Tensor):
            raise ConfigError(f"adapt: observe_real needs a tensor batch of real images, got {type(images).__name__}")
        self._real = images.detach()

    def _measuring(self) -> bool:
        return self.ctx.iteration % self.config.br_interval == 0

    def _calls(self, net_name: str) -> _Calls:
        rec = self.ctx.nets[net_name].__dict__.get(_RECORDER)
        if rec is None or rec.args is None:
            raise ConfigError(f"adapt: no training forward of {net_name} was seen in this iteration before G's "
                              f"optimizer step: the balance ratio replays the G step's G(z) and D(G(z)) calls, which "
                              f"must go through the prepared networks' forward (not their submodules)")
        return rec

    @torch.no_grad()
    def _score(self, images: torch.Tensor) -> float:
        """E[D(images)] with the arguments D got in this G step, changing no state (buffers, RNG)."""
        rec = self._calls("D")
        out = self.ctx.nets["D"](images, *rec.args[1:], **rec.kwargs)
        return float(_first_tensor(out).double().mean())

    @torch.no_grad()
    def _fake_score(self) -> float:
        rec = self._calls("G")
        return self._score(self.ctx.nets["G"](*rec.args, **rec.kwargs))

    def _isolated(self, fn):
        """fn() under a forked RNG, with every buffer of G and D restored afterwards (masks aside: no forward
        changes them, and copying them would cost a copy of the weights)."""
        bufs = [b for n in ("G", "D") for k, b in self.ctx.nets[n].named_buffers() if not k.endswith("_mask")]
        saved = [b.detach().clone() for b in bufs]
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
        try:
            with torch.random.fork_rng(devices=devices):
                return fn()
        finally:
            with torch.no_grad():
                for b, v in zip(bufs, saved):
                    b.copy_(v)

    def before_step(self, net_name: str) -> None:
        if net_name == "G" and self._measuring():
            if self._real is None:
                raise ConfigError("adapt: no real batch for the balance ratio: this training loop does not hand D's "
                                  "real batch over (ctrl.observe_real(real) where it reads the batch, before G's "
                                  "optimizer step), so adapt cannot run in it. A loop whose G step calls G's "
                                  "submodules instead of G.forward (StyleGAN2-ADA's G.mapping / G.synthesis) cannot "
                                  "run adapt at all: choose another --sparse method there")
            self._probe = {"iteration": self.ctx.iteration, "before": self._isolated(self._fake_score)}
        super().before_step(net_name)   # G's mask update, if due, comes after the score of G0

    def after_step(self, net_name: str) -> None:
        super().after_step(net_name)
        probe = self._probe
        if net_name != "G" or probe is None or probe["iteration"] != self.ctx.iteration:
            return
        self._probe = None
        after = self._isolated(self._fake_score)
        real = self._isolated(lambda: self._score(self._real))
        br = balance_ratio(probe["before"], after, real)
        if not math.isfinite(br):
            raise FloatingPointError(f"adapt: the balance ratio at iteration {self.ctx.iteration} is {br} "
                                     f"(E[D(x)] = {real}, E[D(G0(z))] = {probe['before']}, E[D(G1(z))] = {after}): "
                                     f"D scores reals and fakes alike")
        self._window.append(br)

    # ---------------------------------------------------------------- schedule
    def on_iteration(self, iteration: int) -> str | None:
        for n in ("G", "D"):                     # a call is used in its own iteration only
            rec = self.ctx.nets[n].__dict__.get(_RECORDER)
            if rec is not None:
                rec.args = rec.kwargs = None
        super().on_iteration(iteration)          # G's mask update when due (D's pending one is ours to set)
        self._pending.pop("D", None)
        cfg, end = self.config, self.update_end()
        if iteration % cfg.d_interval or (end is not None and iteration >= end) or \
                len(self._window) < self._window.maxlen:
            return None
        new = next_density(self._d, self.mean_br(), cfg.br_low, cfg.br_high, cfg.d_step, cfg.d_min, cfg.d_max)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            t = torch.tensor([new], dtype=torch.float64,
                             device="cuda" if dist.get_backend() == "nccl" else "cpu")
            dist.broadcast(t, src=0)               # rank 0's window decides
            new = float(t.item())
        if new != self._d:
            self._d = new
            self._pending["D"] = iteration
        return None

    def first_adjustment(self) -> int:
        """The first iteration at which D's density can change: a multiple of d_interval by which the window holds
        its window // br_interval measurements (taken at iterations 0, br_interval, ...)."""
        cfg = self.config
        full = (self._window.maxlen - 1) * cfg.br_interval + 1
        return -(-full // cfg.d_interval) * cfg.d_interval

    def schedule_warning(self, run_length: int) -> str | None:
        g = super().schedule_warning(run_length)     # also learns T_end from the run length
        first, end = self.first_adjustment(), self.update_end()
        if first >= min(end if end is not None else run_length + 1, run_length + 1):
            d = (f"D's density can first change at iteration {first} (--adapt-window, --adapt-br-interval, "
                 f"--adapt-d-interval), but the run has {run_length} iterations: it stays {self.config.density_d}")
            return f"{g}; {d}" if g else d
        return g

    def mean_br(self) -> float:
        return float(sum(self._window) / len(self._window)) if self._window else math.nan

    def grow_score(self, net_name, index, iteration, p, site):
        if net_name == "D" and self.config.growth_d == "random":
            return random_scores(p, self.config.mask_seed, "grow", net_name, index, iteration)
        return super().grow_score(net_name, index, iteration, p, site)   # G (and D by default): 'gradient'

    @torch.no_grad()
    def update(self, net_name: str, iteration: int) -> None:
        """G: one global prune / regrow at the death rate; D: the global resize to its new density."""
        c = self.ctx
        sites = c.sites[net_name]
        weights = [c.param(net_name, s) for s in sites]
        masks = [self.mask(s, net_name) for s in sites]
        scores = [self.grow_score(net_name, i, iteration, p, s) for i, (p, s) in enumerate(zip(weights, sites))]
        if net_name == "G":
            k = int(round(self.death_rate(iteration) * float(sum(float(m.sum()) for m in masks))))
            new = global_prune_regrow(weights, masks, k, scores)
        else:
            new = global_resize(weights, masks, int(round(self._d * sum(m.numel() for m in masks))), scores)
        for m in new:
            broadcast(m)
        self.set_masks(net_name, {s.name: m for s, m in zip(sites, new)})

    # ---------------------------------------------------------------- reporting / persistence
    def stats(self) -> dict:
        out = dict(super().stats())
        out["sparse/D/density_target"] = self._d
        if self._window:   # nothing measured yet: no key (stats.jsonl holds no NaN)
            out["sparse/balance_ratio"] = self.mean_br()
            out["sparse/balance_ratio_last"] = float(self._window[-1])
        return out

    def state_dict(self) -> dict:
        return {**super().state_dict(), "density_d": self._d, "br_window": [float(v) for v in self._window]}

    def check_state(self, state: dict) -> None:
        super().check_state(state)
        cfg, d, win = self.config, state.get("density_d"), state.get("br_window")
        if not number(d) or not cfg.d_min <= d <= cfg.d_max:
            raise ConfigError(f"entry 'method_state.density_d' must be D's density within [{cfg.d_min}, "
                              f"{cfg.d_max}], got {d!r}")
        if not isinstance(win, list) or len(win) > self._window.maxlen or not all(number(v) for v in win):
            raise ConfigError(f"entry 'method_state.br_window' must be a list of at most {self._window.maxlen} "
                              f"finite balance ratios")

    def load_state_dict(self, state: dict, phase: str) -> None:
        self._d = float(state["density_d"])
        self._window.clear()
        self._window.extend(float(v) for v in state["br_window"])
        super().load_state_dict(state, phase)
