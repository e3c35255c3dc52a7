"""Dynamic sparse training (methods/dst.py; static, set, rigl) against independent references: ERK densities by
hand and by a brute-force solve, one prune / regrow re-derived in float64 python (which entries die, which grow,
the counts after), resume bit-exact across a pending update, pruned entries zero through Adam (β1 > 0, weight
decay) and G_ema, FLOPs at the densities the forwards used, masks identical on two gloo ranks."""
import copy
import io
import itertools
import math
import multiprocessing as mp
import warnings

import pytest
import torch

import sparse_core as sc
from sparse_core.methods import dst
from sc_nets import Z, gan_step, make
from test_accounting import HAND_D, HAND_G

N = 4


# ------------------------------------------------------------------------------------------------ ERK
def erk_brute_force(shapes, density):
    """The ERK densities as the one dense set S for which eps = (d·N − N_S) / Σ_{l∉S} raw_l n_l gives
    eps·raw_l > 1 exactly on S (every subset tried, float64)."""
    n = {k: math.prod(s) for k, s in shapes.items()}
    raw = {k: sum(s) / n[k] for k, s in shapes.items()}
    total = sum(n.values())
    found = []
    for r in range(len(shapes)):
        for S in itertools.combinations(shapes, r):
            rest = [k for k in shapes if k not in S]
            eps = (density * total - sum(n[k] for k in S)) / sum(raw[k] * n[k] for k in rest)
            if all(eps * raw[k] > 1 for k in S) and all(eps * raw[k] <= 1 for k in rest):
                found.append({k: 1.0 if k in S else eps * raw[k] for k in shapes})
    assert len(found) == 1
    return found[0]


def test_erk_by_hand():
    # A: 10x10, raw (10+10)/100 = 0.2; B: 2x2, raw 4/4 = 1. Density 0.5 of 104 entries = 52 kept.
    # eps = 52 / (0.2·100 + 1·4) = 2.1667 makes B exceed 1: B dense, eps = (52 − 4) / 20 = 2.4, A at 0.48.
    got = dst.erk_densities({"A": (10, 10), "B": (2, 2)}, 0.5)
    assert got == pytest.approx({"A": 0.48, "B": 1.0}, abs=1e-12)


@pytest.mark.parametrize("density", [0.05, 0.2, 0.5, 0.8, 0.97])
def test_erk_equals_brute_force_solve(density):
    shapes = {"fc": (128, 8), "up": (8, 8, 4, 4), "conv": (3, 8, 3, 3), "torgb": (3, 3, 1, 1), "big": (64, 64, 3, 3)}
    got = dst.erk_densities(shapes, density)
    want = erk_brute_force(shapes, density)
    assert got == pytest.approx(want, rel=1e-12)
    kept = sum(got[k] * math.prod(s) for k, s in shapes.items())
    assert kept == pytest.approx(density * sum(math.prod(s) for s in shapes.values()), rel=1e-12)


@pytest.mark.parametrize("distribution", ["erk", "uniform"])
def test_initial_masks_hold_exact_counts(distribution):
    G, D = make()
    ctrl = sc.prepare(sc.StaticConfig(density_g=0.3, density_d=0.6, distribution=distribution), G=G, D=D)
    for n, d in (("G", 0.3), ("D", 0.6)):
        shapes = {s.name: tuple(s.param(ctrl.nets[n]).shape) for s in ctrl.sites[n]}
        want = erk_brute_force(shapes, d) if distribution == "erk" else {k: d for k in shapes}
        for s in ctrl.sites[n]:
            mask = getattr(s.module(ctrl.nets[n]), s.mask_attr)
            numel = mask.numel()
            assert int(mask.sum()) == max(1, round(want[s.name] * numel)), s.name
            assert torch.all(s.param(ctrl.nets[n])[mask == 0] == 0)
        total = sum(math.prod(s) for s in shapes.values())
        assert 1 - ctrl.sparsity(n) == pytest.approx(d, abs=len(shapes) / total)


# ------------------------------------------------------------------------------------------------ schedules
def test_death_rate_schedules_by_hand():
    a = 0.3
    assert dst.death_rate_at("cosine", a, 0, 100) == pytest.approx(0.3)
    assert dst.death_rate_at("cosine", a, 50, 100) == pytest.approx(0.15)     # α/2 (1 + cos(π/2))
    assert dst.death_rate_at("cosine", a, 25, 100) == pytest.approx(0.15 * (1 + 2 ** -0.5))
    assert dst.death_rate_at("linear", a, 25, 100) == pytest.approx(0.225)
    assert dst.death_rate_at("constant", a, 99, None) == 0.3
    with pytest.raises(sc.ConfigError, match="end"):
        dst.death_rate_at("cosine", a, 5, None)


def _bound(cfg, seed=0, betas=(0.5, 0.99), wd=0.0, ema=False):
    G, D = make(seed)
    ctrl = sc.prepare(cfg, G=G, D=D)
    oG = torch.optim.Adam(G.parameters(), 1e-2, betas=betas, weight_decay=wd)
    oD = torch.optim.Adam(D.parameters(), 1e-2, betas=betas, weight_decay=wd)
    G_ema = copy.deepcopy(G) if ema else None
    ctrl.bind(G_ema=G_ema, opt_G=oG, opt_D=oD)
    return G, D, oG, oD, ctrl, G_ema


def _masks(ctrl):
    return {k: t.clone() for k, t in ctrl.strategy.tensors()}


def test_updates_happen_at_multiples_of_the_frequency_before_the_end():
    G, D, oG, oD, ctrl, _ = _bound(sc.SETConfig(update_frequency=3, update_end=10, death_rate=0.5,
                                                death_rate_schedule="constant"))
    changed = []
    for it in range(1, 14):
        before = _masks(ctrl)
        gan_step(G, D, oG, oD, ctrl)   # the step of iteration `it` runs a due update, then advances to `it`
        after = _masks(ctrl)
        if any(not torch.equal(before[k], after[k]) for k in before):
            changed.append(it)
        for k in before:
            assert int(before[k].sum()) == int(after[k].sum()), k
    assert changed == [4, 7, 10]    # due at iterations 3, 6, 9 (< T_end 10), run by the next steps


def test_static_masks_never_change_and_cosine_needs_an_end():
    G, D, oG, oD, ctrl, _ = _bound(sc.StaticConfig())
    m0 = _masks(ctrl)
    for _ in range(3):
        gan_step(G, D, oG, oD, ctrl)
    assert all(torch.equal(m0[k], t) for k, t in _masks(ctrl).items())
    G, D, oG, oD, ctrl, _ = _bound(sc.RigLConfig())
    with pytest.raises(sc.ConfigError, match=r"update_end \(--update-end\).*check_run_length"):
        gan_step(G, D, oG, oD, ctrl)
    G, D, oG, oD, ctrl, _ = _bound(sc.RigLConfig())
    assert ctrl.check_run_length(1000, warn=False) is None
    assert ctrl.strategy.update_end() == 750              # RigL: T_end = 0.75 of the run
    assert "never change" in ctrl.check_run_length(80, warn=False)


@pytest.mark.parametrize("bad", [dict(density_g=0.0), dict(density_d=1.5), dict(distribution="er"),
                                 dict(update_frequency=0), dict(death_rate=1.0), dict(death_rate_schedule="step"),
                                 dict(update_end=0), dict(mask_seed=-1)])
def test_bad_settings_are_refused_by_name(bad):
    with pytest.raises(sc.ConfigError, match=next(iter(bad))):
        sc.RigLConfig(**bad)


# ------------------------------------------------------------------------------------------------ one update
def reference_update(w, mask, score, rate):
    """float64 python: the k = round(rate · active) smallest |w| of the active entries die (ties: lower index),
    then the k entries of largest score among the rest grow (ties: lower index)."""
    w, mask, score = (t.detach().double().flatten().tolist() for t in (w, mask, score))
    active = [i for i, m in enumerate(mask) if m == 1]
    k = round(rate * len(active))
    dead = set(sorted(active, key=lambda i: (abs(w[i]), i))[:k])
    kept = set(active) - dead
    grown = set(sorted((i for i in range(len(w)) if i not in kept), key=lambda i: (-score[i], i))[:k])
    return kept | grown, dead, grown


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_one_update_equals_float64_rederivation(method):
    cfg = {"set": sc.SETConfig, "rigl": sc.RigLConfig}[method](update_frequency=2, update_end=10, death_rate=0.5)
    G, D, oG, oD, ctrl, _ = _bound(cfg)
    for _ in range(2):
        gan_step(G, D, oG, oD, ctrl)
    assert ctrl.strategy._pending == {"G": 2, "D": 2}
    rate = 0.5 / 2 * (1 + math.cos(math.pi * 2 / 10))
    z, real = torch.randn(N, Z), torch.rand(N, 3, 8, 8) * 2 - 1
    losses = {"D": lambda: torch.relu(1 - D(real)).mean() + torch.relu(1 + D(G(z).detach())).mean(),
              "G": lambda: -D(G(z)).mean()}
    changed = 0
    for n, opt in (("D", oD), ("G", oG)):
        net = ctrl.nets[n]
        opt.zero_grad(set_to_none=True)
        losses[n]().backward()
        sites = ctrl.sites[n]
        before = [(s.param(net).detach().clone(), getattr(s.module(net), s.mask_attr).clone(),
                   s.param(net).grad.detach().clone()) for s in sites]
        ctrl.before_step(n)
        for i, (s, (w, m, g)) in enumerate(zip(sites, before)):
            score = g.abs() if method == "rigl" else dst.random_scores(w, cfg.mask_seed, "grow", n, i, 2)
            want, dead, grown = reference_update(w, m, score, rate)
            new = getattr(s.module(net), s.mask_attr)
            assert set(torch.nonzero(new.flatten()).flatten().tolist()) == want, (n, s.name)
            assert int(new.sum()) == int(m.sum())
            p = s.param(net).detach().flatten()
            assert all(p[j] == 0 for j in dead - want) and all(p[j] == 0 for j in grown - dead)  # grown at zero
            assert torch.all(s.param(net).grad[new == 0] == 0)      # gradients masked with the new mask
            changed += len(grown - dead)
        opt.step()
        ctrl.after_step(n)
    assert changed > 0 and ctrl.strategy._pending == {}


# ------------------------------------------------------------------------------------------------ resume
def _roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("method", ["static", "set", "rigl"])
def test_resume_bit_exact_across_a_pending_update(method):
    cfg = {"static": sc.StaticConfig(), "set": sc.SETConfig(update_frequency=2),
           "rigl": sc.RigLConfig(update_frequency=2)}[method]
    G, D, oG, oD, ctrl, ema = _bound(cfg, ema=True)
    ctrl.check_run_length(12, warn=False)
    for _ in range(2):
        gan_step(G, D, oG, oD, ctrl, ema=ema)
    snap = _roundtrip({"G": G.state_dict(), "D": D.state_dict(), "ema": ema.state_dict(), "oG": oG.state_dict(),
                       "oD": oD.state_dict(), "sparse": ctrl.state_dict()})
    if method != "static":
        assert snap["sparse"]["method_state"]["pending"] == {"G": 2, "D": 2}
    torch.manual_seed(11)
    for _ in range(5):
        gan_step(G, D, oG, oD, ctrl, ema=ema)
    G2, D2, oG2, oD2, ctrl2, ema2 = _bound(cfg, seed=3, ema=True)
    ctrl2.check_run_length(40, warn=False)    # another length: the saved T_end (0.75 · 12) wins, with a warning
    for k, net in (("G", G2), ("D", D2), ("ema", ema2)):
        net.load_state_dict(snap[k])
    oG2.load_state_dict(snap["oG"])
    oD2.load_state_dict(snap["oD"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ctrl2.load_state_dict(snap["sparse"])
    assert (method != "static") == any("stop changing at iteration 9" in str(w.message) for w in caught)
    torch.manual_seed(11)
    for _ in range(5):
        gan_step(G2, D2, oG2, oD2, ctrl2, ema=ema2)
    for a, b in ((G, G2), (D, D2), (ema, ema2)):
        sa, sb = a.state_dict(), b.state_dict()
        assert set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert ctrl2.state_dict()["method_state"] == ctrl.state_dict()["method_state"]
    assert ctrl2.flops.total == ctrl.flops.total


# ------------------------------------------------------------------------------------------------ zeros
@pytest.mark.parametrize("method", ["static", "set", "rigl"])
def test_pruned_entries_zero_through_adam_and_ema(method):
    cfg = {"static": sc.StaticConfig(), "set": sc.SETConfig(update_frequency=2, update_end=50),
           "rigl": sc.RigLConfig(update_frequency=2, update_end=50)}[method]
    G, D, oG, oD, ctrl, ema = _bound(cfg, betas=(0.9, 0.99), wd=0.1, ema=True)
    for _ in range(7):
        gan_step(G, D, oG, oD, ctrl, ema=ema)
        for n in ("G", "D"):
            pruned = 0
            for s in ctrl.sites[n]:
                mask = getattr(s.module(ctrl.nets[n]), s.mask_attr)
                pruned += int((mask == 0).sum())
                assert torch.all(s.param(ctrl.nets[n])[mask == 0] == 0), (n, s.name)
                if n == "G":
                    assert torch.all(s.param(ema)[mask == 0] == 0), s.name
                    assert torch.equal(getattr(s.module(ema), s.mask_attr), mask)
            assert pruned > 0


# ------------------------------------------------------------------------------------------------ FLOPs
def test_flops_charged_at_the_densities_the_forwards_used():
    G, D, oG, oD, ctrl, _ = _bound(sc.RigLConfig(update_frequency=1, update_end=50, density_g=0.4))
    ctrl.measure_flops("G", lambda: G(torch.randn(N, Z)), batch=N)
    ctrl.measure_flops("D", lambda: D(torch.randn(N, 3, 8, 8)), batch=N)
    # per gan_step of batch N: G forwards 2N samples, backward N (2x); D forwards 3N, backward 3N (2x)
    g_passes, d_passes = N * (2 + 2 * 1), N * (3 + 2 * 3)
    for _ in range(4):
        dens = {n: {s.module_name: float(getattr(s.module(ctrl.nets[n]), s.mask_attr).float().mean())
                    for s in ctrl.sites[n]} for n in ("G", "D")}
        total, dense = ctrl.flops.total, ctrl.flops.dense_equiv
        gan_step(G, D, oG, oD, ctrl)   # its update runs after this step's forwards and backwards
        assert ctrl.flops.dense_equiv - dense == pytest.approx(
            g_passes * sum(HAND_G.values()) + d_passes * sum(HAND_D.values()))
        want = g_passes * sum(f * dens["G"][k] for k, f in HAND_G.items()) + \
            d_passes * sum(f * dens["D"][k] for k, f in HAND_D.items())
        assert ctrl.flops.total - total == pytest.approx(want, rel=1e-12)


# ------------------------------------------------------------------------------------------------ DDP
def _gloo_rank(rank, path, method, out):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=2)
    try:
        cfg = {"set": sc.SETConfig, "rigl": sc.RigLConfig}[method](update_frequency=1, update_end=50)
        G, D, oG, oD, ctrl, _ = _bound(cfg, seed=rank)   # different weights (and data) per rank: no DDP here
        torch.manual_seed(100 + rank)
        for _ in range(3):
            gan_step(G, D, oG, oD, ctrl)
        torch.save(_masks(ctrl), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("method", ["rigl"])
def test_gloo_ranks_hold_identical_masks(tmp_path, method):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_gloo_rank, args=(r, tmp_path / "rdv", method, tmp_path / "m")) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    m0, m1 = (torch.load(f"{tmp_path / 'm'}.{r}", weights_only=True) for r in range(2))
    assert set(m0) == set(m1) and all(torch.equal(m0[k], m1[k]) for k in m0)
    # rank 1's own gradients would have chosen otherwise: its weights and data differ from rank 0's
    G, D, oG, oD, ctrl, _ = _bound(sc.RigLConfig(update_frequency=1, update_end=50), seed=1)
    torch.manual_seed(101)
    for _ in range(3):
        gan_step(G, D, oG, oD, ctrl)
    alone = _masks(ctrl)
    assert any(not torch.equal(alone[k], m1[k]) for k in m1)


def test_start_from_a_dense_runs_weights_keeps_the_masks_and_zeroes_their_pruned_entries():
    G, D, oG, oD, ctrl, ema = _bound(sc.RigLConfig(update_end=50), ema=True)
    masks = _masks(ctrl)
    dense_G, dense_D = make(seed=4)
    G.load_state_dict(dense_G.state_dict(), strict=False)   # the loop restores a dense run's weights
    D.load_state_dict(dense_D.state_dict(), strict=False)
    ema.load_state_dict(dense_G.state_dict(), strict=False)
    with pytest.raises(sc.ConfigError, match="--sparse-from-dense"):
        ctrl.load_state_dict(None)
    ctrl.load_state_dict(None, allow_dense=True)
    assert all(torch.equal(masks[k], t) for k, t in _masks(ctrl).items())
    for n in ("G", "D"):
        for s in ctrl.sites[n]:
            mask = getattr(s.module(ctrl.nets[n]), s.mask_attr)
            kept = s.param(ctrl.nets[n])[mask == 1]
            assert torch.all(s.param(ctrl.nets[n])[mask == 0] == 0) and bool((kept != 0).all())
            if n == "G":
                assert torch.all(s.param(ema)[mask == 0] == 0)
