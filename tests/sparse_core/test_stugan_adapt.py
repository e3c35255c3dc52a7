"""STU-GAN and ADAPT (methods/stugan.py, methods/adapt.py) against independent references: one update of each
re-derived in float64 / numpy (which entries die and grow, the densities after), the balance ratio in closed
form on a linear G / D, ADAPT's density rule and bounds, resume bit for bit across updates, pruned entries zero
through Adam (β1 > 0, weight decay), FLOPs charged at the densities the forwards used, two gloo ranks holding
identical masks, and the patched SNGAN loop (STU-GAN; ADAPT with the real batch it hands over)."""
import copy
import io
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sparse_core as sc
from sc_nets import Z, make
from sparse_core.methods import adapt as adapt_mod
from sparse_core.methods.dst import random_scores

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------------- independent references
def ref_pick(score, eligible, k, largest):
    """Flat indices of the k eligible entries with the largest (smallest) score, ties to the lower index."""
    idx = np.flatnonzero(eligible)
    s = score[idx]
    order = np.lexsort((idx, -s if largest else s))
    assert k <= len(idx)
    return set(idx[order[:k]].tolist())


def cosine(alpha, t, end):
    return alpha / 2 * (1 + math.cos(math.pi * t / end))


def f64(t):
    return t.detach().double().flatten().numpy().copy()


def masks_of(ctrl, n):
    return {s.name: ctrl.strategy.mask(s, n).detach().clone() for s in ctrl.sites[n]}


class Loop:
    """A GAN loop on the tiny nets of sc_nets: hinge losses, Adam(β1 0.5, weight decay), G_ema, seeded data."""

    def __init__(self, cfg, seed=0, run_length=8, lr=1e-2, nets=None):
        self.G, self.D = nets if nets is not None else make(seed)
        self.ctrl = sc.prepare(cfg, G=self.G, D=self.D)
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr, betas=(0.5, 0.99), weight_decay=1e-2)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr, betas=(0.5, 0.99), weight_decay=1e-2)
        self.ctrl.bind(G_ema=self.G_ema, opt_G=self.opt_G, opt_D=self.opt_D)
        self.ctrl.check_run_length(run_length, warn=False)
        self.it = 0
        self.before = {}   # callbacks run right before a network's optimizer step (after its backward)

    def z(self, n=4):
        return torch.randn(n, Z)

    def step(self):
        G, D, ctrl = self.G, self.D, self.ctrl
        torch.manual_seed(1000 + self.it)
        real = torch.rand(4, 3, 8, 8) * 2 - 1
        ctrl.observe_real(real)          # a no-op for every method but adapt
        with torch.no_grad():
            fake = G(self.z())
        loss_D = torch.relu(1 - D(real)).mean() + torch.relu(1 + D(fake)).mean()
        self.opt_D.zero_grad()
        loss_D.backward()
        if "D" in self.before:
            self.before["D"]()
        ctrl.optimizer_step("D", self.opt_D)
        loss_G = -D(G(self.z())).mean()
        self.opt_G.zero_grad()
        loss_G.backward()
        if "G" in self.before:
            self.before["G"]()
        ctrl.optimizer_step("G", self.opt_G)
        with torch.no_grad():
            for pe, p in zip(self.G_ema.parameters(), G.parameters()):
                pe.lerp_(p, 0.1)
        ctrl.after_ema()
        ctrl.advance(4)
        self.it += 1

    def run(self, n):
        for _ in range(n):
            self.step()


# ------------------------------------------------------------------------------------------------ STU-GAN
def test_stugan_one_update_matches_float64_rederivation():
    """Update due at t = 2 (ΔT 2, cosine α 0.5 over 8 iterations), run at each network's next optimizer step:
    per tensor k = round(r·a) smallest |w| die, k grow (G: largest |dense grad|, D: the seeded random scores)."""
    cfg = sc.STUGANConfig(density_g=0.5, density_d=0.4, update_frequency=2, death_rate=0.5)
    lp = Loop(cfg, run_length=8)
    lp.run(2)
    snaps = {}

    def snap(n):
        def f():
            snaps[n] = [(i, s.name, f64(lp.ctrl.strategy.ctx.param(n, s)), f64(lp.ctrl.strategy.ctx.param(n, s).grad),
                         f64(lp.ctrl.strategy.mask(s, n))) for i, s in enumerate(lp.ctrl.sites[n])]
        return f
    lp.before = {"D": snap("D"), "G": snap("G")}
    lp.step()   # iteration 3: the update due at t = 2 runs inside both optimizer steps
    r = cosine(0.5, 2, 8)
    for n in ("G", "D"):
        after, moved = masks_of(lp.ctrl, n), 0
        for i, name, w, g, m in snaps[n]:
            active = m > 0
            a = int(active.sum())
            k = round(r * a)
            assert k > 0
            dead = ref_pick(np.abs(w), active, k, largest=False)
            kept = active.copy()
            kept[list(dead)] = False
            if n == "G":
                score = np.abs(g)
            else:
                p = lp.ctrl.strategy.ctx.param(n, lp.ctrl.sites[n][i])
                score = random_scores(p, cfg.mask_seed, "grow", n, i, 2).double().flatten().numpy()
            grown = ref_pick(score, ~kept, k, largest=True)
            want = kept.copy()
            want[list(grown)] = True
            got = f64(after[name]) > 0
            assert (got == want).all(), (n, name)
            assert int(got.sum()) == a                       # the density does not change
            moved += int((got != active).sum())
        assert moved > 0                                     # the update changed the network's masks
    assert lp.ctrl.stats()["sparse/death_rate"] == pytest.approx(cosine(0.5, 3, 8))


def test_stugan_defaults_follow_the_public_code():
    cfg = sc.methods.get("stugan").config_from_flags({})
    assert (cfg.density_g, cfg.density_d, cfg.death_rate, cfg.update_frequency, cfg.death_rate_schedule,
            cfg.distribution, cfg.growth_g, cfg.growth_d, cfg.target) == \
        (0.3, 0.3, 0.5, 2000, "cosine", "erk", "gradient", "random", "both")
    with pytest.raises(sc.ConfigError, match="growth_d"):
        sc.STUGANConfig(growth_d="momentum")


# ------------------------------------------------------------------------------------------------- ADAPT
def test_balance_ratio_equals_the_closed_form_on_a_linear_G_and_D():
    """G(z) = W z, D(x) = v·x, G trained by SGD(lr) on −mean D(G(z)): one step moves W by lr·vᵀ z̄ᵀ, so
    BR = lr |v|² |z̄|² / (v·x̄ − v W z̄). Every measurement (br_interval 1) against float64 numpy."""
    torch.manual_seed(3)
    G, D = nn.Linear(2, 3, bias=False).double(), nn.Linear(3, 1, bias=False).double()
    cfg = sc.ADAPTConfig(density_g=1.0, density_d=1.0, br_interval=1, window=3, d_interval=1000,
                         update_frequency=1000, death_rate_schedule="constant")
    ctrl = sc.prepare(cfg, G=G, D=D)
    lr = 0.05
    opt_G, opt_D = torch.optim.SGD(G.parameters(), lr), torch.optim.SGD(D.parameters(), 0.0)
    ctrl.bind(opt_G=opt_G, opt_D=opt_D)
    for it in range(3):
        x, z = torch.randn(6, 3, dtype=torch.float64) + 1, torch.randn(5, 2, dtype=torch.float64)
        ctrl.observe_real(x)
        W, v = G.weight.detach().numpy().copy(), D.weight.detach().numpy()[0].copy()
        zb, xb = z.numpy().mean(0), x.numpy().mean(0)
        want = lr * (v @ v) * (zb @ zb) / (v @ xb - v @ W @ zb)
        loss = -D(G(z)).mean()
        opt_G.zero_grad()
        loss.backward()
        ctrl.optimizer_step("G", opt_G)
        ctrl.advance(6)
        assert ctrl.strategy._window[-1] == pytest.approx(want, rel=1e-10, abs=1e-13)
    assert ctrl.stats()["sparse/balance_ratio"] == pytest.approx(float(np.mean(list(ctrl.strategy._window))))


def test_measuring_the_balance_ratio_changes_nothing_the_training_computes():
    """BatchNorm statistics, spectral-norm vectors, the RNG stream: a run measuring every iteration equals one
    measuring every 4th, bit for bit (no density change, no G update within the 4 iterations)."""
    runs, rng = [], []
    for every in (1, 4):
        cfg = sc.ADAPTConfig(density_g=0.5, density_d=0.5, br_interval=every, window=4, d_interval=1000,
                             update_frequency=1000)
        G, D = make(0)
        G.forward = lambda z, G=G: type(G).forward(G, z + 0.1 * torch.randn_like(z))   # G draws from the RNG
        lp = Loop(cfg, run_length=100, nets=(G, D))
        lp.run(4)
        runs.append(lp)
        rng.append(torch.get_rng_state())
    assert len(runs[0].ctrl.strategy._window) == 4 and len(runs[1].ctrl.strategy._window) == 1
    for a, b in ((runs[0].G, runs[1].G), (runs[0].D, runs[1].D), (runs[0].G_ema, runs[1].G_ema)):
        for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(x, y), k
    assert torch.equal(rng[0], rng[1])


@pytest.mark.parametrize("d,br,want", [
    (0.1, 0.60, 0.15), (0.1, 0.55, 0.15), (0.1, 0.50, 0.1), (0.1, 0.45, 0.05), (0.1, -3.0, 0.05),
    (0.05, 0.2, 0.05), (0.07, 0.2, 0.05), (1.0, 0.9, 1.0), (0.98, 0.9, 1.0), (0.4, 2.0, 0.4)])
def test_density_rule_and_bounds_by_hand(d, br, want):
    d_max = 0.4 if d == 0.4 else 1.0
    assert adapt_mod.next_density(d, br, 0.45, 0.55, 0.05, 0.05, d_max) == want


def ref_resize(ws, gs, ms, target):
    w, g, m = (np.concatenate(x) for x in (ws, gs, ms))
    active = m > 0
    n = int(active.sum())
    out = active.copy()
    if target < n:
        out[list(ref_pick(np.abs(w), active, n - target, largest=False))] = False
    else:
        out[list(ref_pick(np.abs(g), ~active, target - n, largest=True))] = True
    return out


@pytest.mark.parametrize("direction", ["up", "down"])
def test_d_density_adjustment_rederived_globally(direction):
    """Every 2 iterations the window (2 measurements) decides; bounds forced by br_low / br_high so that the mean
    BR is always above (up) or below (down). D's new mask: round(d·N_D) entries, grown by global |dense grad| or
    pruned by global |w| (numpy float64 over the concatenated tensors), applied at D's next optimizer step."""
    lo, hi = (-2e6, -1e6) if direction == "up" else (1e6, 2e6)
    cfg = sc.ADAPTConfig(density_g=0.5, density_d=0.3, br_interval=1, window=2, d_interval=2, update_frequency=1000,
                         br_low=lo, br_high=hi, d_min=0.2, d_max=0.4)
    lp = Loop(cfg, run_length=100)
    N = sum(lp.ctrl.strategy.ctx.param("D", s).numel() for s in lp.ctrl.sites["D"])
    snaps = []

    def snap():
        st = lp.ctrl.strategy
        snaps.append([(f64(st.ctx.param("D", s)), f64(st.ctx.param("D", s).grad), f64(st.mask(s, "D")))
                      for s in lp.ctrl.sites["D"]])
    lp.before = {"D": snap}
    densities = []
    for it in range(7):
        lp.step()
        densities.append(lp.ctrl.stats()["sparse/D/density_target"])
    step = [0.35, 0.4, 0.4] if direction == "up" else [0.25, 0.2, 0.2]   # the third one held by the bound
    # decided after iterations 2, 4, 6 (t = 2, 4, 6); stats show the density the next mask update applies
    assert densities == [0.3, step[0], step[0], step[1], step[1], step[2], step[2]]
    # the adjustment decided at t = 2 ran in the D step of the third iteration (snapshot 2 is just before it)
    ws, gs, ms = zip(*snaps[2])
    want = ref_resize(ws, gs, ms, round(step[0] * N))
    after = np.concatenate([x[2] for x in snaps[3]]) > 0   # the masks the next D step found
    assert (after == want).all() and int(after.sum()) == round(step[0] * N)
    final = np.concatenate([f64(m) for m in masks_of(lp.ctrl, "D").values()])
    assert int(final.sum()) == round(step[2] * N)
    assert lp.ctrl.sparsity("D") == pytest.approx(1 - round(step[2] * N) / N)


def test_adapt_defaults_and_refusals():
    cfg = sc.methods.get("adapt").config_from_flags({})
    assert (cfg.density_g, cfg.density_d, cfg.death_rate, cfg.update_frequency, cfg.br_interval, cfg.window,
            cfg.d_interval, cfg.br_low, cfg.br_high, cfg.d_step, cfg.d_min, cfg.d_max, cfg.growth_d) == \
        (0.1, 0.1, 0.5, 500, 10, 1000, 1000, 0.45, 0.55, 0.05, 0.05, 1.0, "gradient")
    for bad, msg in (({"target": "G"}, "target"), ({"br_low": 0.6}, "br_low"), ({"density_d": 0.01}, "density_d"),
                     ({"window": 5}, "window"), ({"d_max": 1.5}, "d_max")):
        with pytest.raises(sc.ConfigError, match=msg):
            sc.ADAPTConfig(**bad)


def test_adapt_warns_when_the_run_never_adjusts_D():
    G, D = make(0)
    ctrl = sc.prepare(sc.ADAPTConfig(), G=G, D=D)    # window 1000 / 10 measurements: first change at 1000
    assert ctrl.strategy.first_adjustment() == 1000
    assert ctrl.check_run_length(1001, warn=False) is None            # T_end = the run length: 1000 < 1001
    assert "can first change at iteration 1000" in ctrl.check_run_length(1000, warn=False)
    G, D = make(0)
    ctrl = sc.prepare(sc.ADAPTConfig(br_interval=3, window=10, d_interval=4), G=G, D=D)
    assert ctrl.strategy.first_adjustment() == 8     # 3 measurements (0, 3, 6) are there after iteration 7


def test_adapt_without_real_batches_refuses_at_its_first_measurement():
    G, D = make(0)
    ctrl = sc.prepare(sc.ADAPTConfig(), G=G, D=D)
    opt_G, opt_D = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    ctrl.bind(opt_G=opt_G, opt_D=opt_D)
    loss = -D(G(torch.randn(2, Z))).mean()
    loss.backward()
    with pytest.raises(sc.ConfigError, match="no real batch") as err:
        ctrl.optimizer_step("G", opt_G)
    # the message names the hook a loop lacks, and the loops that cannot have it (StyleGAN2-ADA's)
    assert "ctrl.observe_real(real)" in str(err.value) and "choose another --sparse method" in str(err.value)


def test_adapt_refuses_a_loop_whose_G_step_bypasses_G_forward():
    """G called through its submodules (as StyleGAN2-ADA's mapping / synthesis): neither the FLOP measuring call
    of G.forward (no gradients) nor the G step of an earlier iteration may stand in for this G step's latents."""
    for earlier in (False, True):
        G, D = _linear_nets()
        ctrl = sc.prepare(sc.ADAPTConfig(br_interval=1, window=10), G=G, D=D)
        opt_G, opt_D = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
        ctrl.bind(opt_G=opt_G, opt_D=opt_D)
        ctrl.check_run_length(100, warn=False)
        ctrl.measure_flops("G", lambda: G(torch.zeros(2, Z)), batch=2)
        ctrl.observe_real(torch.randn(4, 12))
        if earlier:    # one iteration through G.forward, measured
            (-D(G(torch.randn(4, Z))).mean()).backward()
            ctrl.optimizer_step("G", opt_G)
            ctrl.advance(4)
            assert len(ctrl.strategy._window) == 1
        loss = -D(G[2](G[1](G[0](torch.randn(4, Z))))).mean()
        opt_G.zero_grad()
        loss.backward()
        with pytest.raises(sc.ConfigError, match="no training forward of G"):
            ctrl.optimizer_step("G", opt_G)


# ------------------------------------------------------------------------------------ shared promises
CFGS = {
    "stugan": lambda: sc.STUGANConfig(density_g=0.5, density_d=0.4, update_frequency=2, death_rate=0.5),
    "adapt": lambda: sc.ADAPTConfig(density_g=0.5, density_d=0.3, br_interval=1, window=5, d_interval=5,
                                    update_frequency=2, d_max=0.6, br_low=0.5, br_high=0.5000001),
}


def _blob(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("method", sorted(CFGS))
def test_resume_is_bit_exact_across_updates(method):
    """8 iterations straight == 4, save (a pending update inside), rebuild, load, 4 more."""
    full = Loop(CFGS[method](), run_length=8)
    full.run(4)
    assert full.ctrl.strategy._pending   # an update is due at the next optimizer steps
    snap = _blob({"G": full.G.state_dict(), "D": full.D.state_dict(), "G_ema": full.G_ema.state_dict(),
                  "opt_G": full.opt_G.state_dict(), "opt_D": full.opt_D.state_dict(), "ctrl": full.ctrl.state_dict()})
    full.run(4)
    half = Loop(CFGS[method](), seed=1, run_length=8)   # other initial weights and masks: the snapshot wins
    for k in ("G", "D", "G_ema"):
        getattr(half, k).load_state_dict(snap[k])
    half.opt_G.load_state_dict(snap["opt_G"])
    half.opt_D.load_state_dict(snap["opt_D"])
    half.ctrl.load_state_dict(snap["ctrl"])
    half.it = 4
    half.run(4)
    for a, b in ((full.G, half.G), (full.D, half.D), (full.G_ema, half.G_ema)):
        for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(x, y), k
    assert full.ctrl.state_dict()["method_state"] == half.ctrl.state_dict()["method_state"]
    assert full.ctrl.flops.state_dict() == half.ctrl.flops.state_dict()


@pytest.mark.parametrize("method", sorted(CFGS))
def test_pruned_entries_stay_zero_through_adam_and_weight_decay(method):
    lp = Loop(CFGS[method](), run_length=8)
    start = {n: masks_of(lp.ctrl, n) for n in ("G", "D")}
    lp.run(7)
    moved = False
    for n, net in (("G", lp.G), ("D", lp.D), ("G_ema", lp.G_ema)):
        key = "G" if n == "G_ema" else n
        for s in lp.ctrl.sites[key]:
            mask = lp.ctrl.strategy.mask(s, key)
            p = s.param(net)
            assert p.abs().sum() > 0
            assert torch.count_nonzero(p.detach()[mask == 0]) == 0, (n, s.name)
            moved |= not torch.equal(mask, start[key][s.name])
    assert moved
    out = lp.ctrl.export("G")    # a plain copy: the vendor's keys, no recorder hook (ADAPT)
    assert set(out.state_dict()) == set(make()[0].state_dict()) and not out._forward_pre_hooks


def _linear_nets():
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(Z, 16), nn.ReLU(), nn.Linear(16, 12))
    D = nn.Sequential(nn.Linear(12, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
    return G, D


@pytest.mark.parametrize("method", sorted(CFGS))
def test_flops_are_charged_at_the_densities_the_forwards_used(method):
    """Linear layers: a forward of batch b costs Σ_l 2·in_l·out_l·b·density_l (the mask's kept fraction when
    the forward ran), its backward twice that. The reference adds up every forward of the loop (and ADAPT's
    balance-ratio forwards: G and D on z before and after the G step, D on the real batch) by hand."""
    G, D = _linear_nets()
    cfg = CFGS[method]()
    ctrl = sc.prepare(cfg, G=G, D=D)
    opt_G = torch.optim.Adam(G.parameters(), 1e-2, betas=(0.5, 0.99))
    opt_D = torch.optim.Adam(D.parameters(), 1e-2, betas=(0.5, 0.99))
    ctrl.bind(opt_G=opt_G, opt_D=opt_D)
    ctrl.check_run_length(8, warn=False)
    ctrl.measure_flops("G", lambda: G(torch.zeros(2, Z)), batch=2)
    ctrl.measure_flops("D", lambda: D(torch.zeros(2, 12)), batch=2)
    want, dense = 0.0, 0.0

    def charge(net, b, passes):
        nonlocal want, dense
        layers = {"G": (G[0], G[2]), "D": (D[0], D[2])}[net]
        for m in layers:
            f = 2.0 * m.in_features * m.out_features * b * passes
            want += f * float(m.weight_mask.double().mean())
            dense += f

    def G_probe_flops():   # ADAPT measures in every G step here (br_interval 1)
        charge("G", 4, 1)
        charge("D", 4, 1)

    densities = set()
    for it in range(8):
        torch.manual_seed(it)
        real = torch.randn(4, 12)
        ctrl.observe_real(real)
        charge("G", 4, 1)
        with torch.no_grad():
            fake = G(torch.randn(4, Z))
        charge("D", 4, 3)
        charge("D", 4, 3)
        loss_D = F.softplus(-D(real)).mean() + F.softplus(D(fake)).mean()
        opt_D.zero_grad()
        loss_D.backward()
        ctrl.optimizer_step("D", opt_D)
        charge("G", 4, 3)
        charge("D", 4, 3)
        loss_G = F.softplus(-D(G(torch.randn(4, Z)))).mean()
        opt_G.zero_grad()
        loss_G.backward()
        if method == "adapt":
            G_probe_flops()           # G0 and D(G0(z)), before the G step (and before a G mask update)
        ctrl.optimizer_step("G", opt_G)
        if method == "adapt":
            G_probe_flops()           # G1 and D(G1(z))
            charge("D", 4, 1)         # D(x)
        ctrl.advance(4)
        densities.add(round(float(D[0].weight_mask.mean()), 6))
    assert float(ctrl.flops.total) == pytest.approx(want, rel=1e-6)
    assert float(ctrl.flops.dense_equiv) == pytest.approx(dense, rel=1e-9)
    if method == "adapt":
        assert len(densities) > 1     # D's density changed during the run


def test_two_gloo_ranks_hold_identical_masks(tmp_path):
    """Two processes, different data and no gradient averaging (weights diverge): masks, D's density and the
    masks' movement are rank 0's on both ranks."""
    worker = Path(__file__).with_name("dst_ddp_worker.py")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), str(worker.parent)]))
    procs = [subprocess.Popen([sys.executable, str(worker), str(tmp_path), str(rank)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env) for rank in (0, 1)]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out[-3000:]
    for method in ("stugan", "adapt"):
        a, b = (torch.load(tmp_path / f"{method}-rank{k}.pt", weights_only=True) for k in (0, 1))
        assert a["density_target"] == b["density_target"]
        assert set(a["masks"]) == set(b["masks"]) and a["masks"]
        for k in a["masks"]:
            assert torch.equal(a["masks"][k], b["masks"][k]), (method, k)
        assert any(not torch.equal(a["masks"][k], a["start"][k]) for k in a["masks"])
        assert not all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])   # the data differed
    assert a["density_target"] != 0.3   # ADAPT's D density moved


# ---------------------------------------------------------------------------------- the patched SNGAN loop
SNGAN_TINY = ["--data", "digits", "--data-ratio", "0.1", "--ch", "8", "--batch_size", "4", "--G_batch_size", "4",
              "--n_dis", "1", "--tick_steps", "1", "--sample_step", "0", "--eval_step", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def sngan(tmp_path_factory):
    from sparse_core.patching import apply_to_copy
    return apply_to_copy(ROOT / "patches" / "sngan.patch", ROOT / "vendor" / "sngan",
                         tmp_path_factory.mktemp("work") / "sngan")


def _train(tree, logdir, *flags, tiny=SNGAN_TINY):
    return subprocess.run([sys.executable, str(Path(tree) / "train.py"), *tiny, *flags, "--logdir", str(logdir)],
                          capture_output=True, text=True, cwd=tree, env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_patched_sngan_runs_stugan(sngan, tmp_path):
    import json
    r = _train(sngan, tmp_path, "--total_steps", "4", "--sparse", "stugan", "--density-G", "0.5", "--density-D",
               "0.4", "--update-frequency", "2")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = [json.loads(l) for l in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    for k, row in enumerate(rows, 1):
        assert row["sparse/method"] == "stugan"
        assert row["sparse/G/sparsity"] == pytest.approx(0.5, abs=5e-3)   # ERK: per-tensor rounding only
        assert row["sparse/D/sparsity"] == pytest.approx(0.6, abs=5e-3)
        assert row["sparse/death_rate"] == pytest.approx(cosine(0.5, k, 4))
    assert 0 < rows[-1]["flops/train_total"] < rows[-1]["flops/train_dense_equiv"]
    assert (tmp_path / "G_sparse.pt").exists()


def expected_densities(rows, d0, interval, low, high, step, d_min, d_max, run_length):
    """ADAPT's rule by hand over a run's stats rows (row k is written after iteration k, when the window holds the
    balance ratios of iterations < k): at every k % interval == 0, 0 < k < run_length, the logged mean BR moves
    D's density up by `step` at >= high, down at <= low, within [d_min, d_max]."""
    d, out = d0, []
    for k, row in enumerate(rows, 1):
        if k % interval == 0 and k < run_length:
            br = row["sparse/balance_ratio"]
            d = min(d_max, d + step) if br >= high and d < d_max else max(d_min, d - step) if br <= low and \
                d > d_min else d
        out.append(d)
    return out


ADAPT_FLAGS = ["--sparse", "adapt", "--density-G", "0.5", "--density-D", "0.3", "--adapt-br-interval", "1",
               "--adapt-window", "2", "--adapt-d-interval", "2", "--adapt-d-step", "0.1", "--adapt-br-low", "0.5",
               "--adapt-br-high", "0.5000001", "--update-frequency", "2"]


def test_patched_sngan_runs_adapt_and_moves_D_density(sngan, tmp_path):
    """The patched loop hands D's real batch over (ctrl.observe_real): the balance ratio is measured every
    iteration, and D's density follows the rule at t = 2 and 4 (a band of width 1e-7 around 0.5: every mean BR
    moves it), the new mask applied at the next D step (its sparsity in the next row)."""
    import json
    r = _train(sngan, tmp_path, "--total_steps", "5", *ADAPT_FLAGS)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = [json.loads(l) for l in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and all(row["sparse/method"] == "adapt" for row in rows)
    last = [row["sparse/balance_ratio_last"] for row in rows]
    assert all(math.isfinite(b) for b in last)
    for k in range(1, 5):   # the window's mean: this iteration's and the previous one's ratio
        assert rows[k]["sparse/balance_ratio"] == pytest.approx((last[k - 1] + last[k]) / 2, rel=1e-9, abs=1e-12)
    want = expected_densities(rows, 0.3, 2, 0.5, 0.5000001, 0.1, 0.05, 1.0, 5)
    assert [row["sparse/D/density_target"] for row in rows] == pytest.approx(want, abs=1e-12)
    assert want[-1] != 0.3                                            # D's density did move
    applied = [0.3] + want[:-1]                                       # a decision reaches the masks one step later
    for row, d in zip(rows, applied):
        assert row["sparse/D/sparsity"] == pytest.approx(1 - d, abs=5e-3)
        assert row["sparse/G/sparsity"] == pytest.approx(0.5, abs=5e-3)
    assert (tmp_path / "G_sparse.pt").exists()


# digits at ratio 0.02 = 36 images, batch 4: 9 D steps (iterations) per epoch, a G step after each (n_critic 1)
AUTOGAN_TINY = ["--data", "digits", "--data-ratio", "0.02", "--gf_dim", "8", "--df_dim", "8", "--latent_dim", "16",
                "-gen_bs", "4", "-dis_bs", "4", "--n_critic", "1", "--print_freq", "1", "--val_freq", "0",
                "--device", "cpu"]


def test_patched_autogan_runs_adapt_and_moves_D_density(tmp_path):
    """AutoGAN hands over each batch of its epoch loop: the same rule over 9 iterations (decisions at 2, 4, 6, 8),
    D's sparsity following one D step later."""
    import json

    from sparse_core.patching import apply_to_copy
    tree = apply_to_copy(ROOT / "patches" / "autogan.patch", ROOT / "vendor" / "autogan", tmp_path / "autogan")
    r = _train(tree, tmp_path / "run", "--max_iter", "9", *ADAPT_FLAGS, tiny=AUTOGAN_TINY)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = [json.loads(l) for l in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    assert len(rows) == 9 and all(row["sparse/method"] == "adapt" for row in rows)
    want = expected_densities(rows, 0.3, 2, 0.5, 0.5000001, 0.1, 0.05, 1.0, 9)
    assert [row["sparse/D/density_target"] for row in rows] == pytest.approx(want, abs=1e-12)
    assert len(set(want)) > 1
    for row, d in zip(rows, [0.3] + want[:-1]):
        assert row["sparse/D/sparsity"] == pytest.approx(1 - d, abs=5e-3)
