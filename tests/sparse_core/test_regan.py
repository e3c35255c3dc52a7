"""Re-GAN schedule semantics (SPEC §2.2)."""
import copy

import pytest
import torch

import sparse_core as sc
from sparse_core.methods import regan
from sc_nets import TinyD, TinyG, gan_step, make


def masked_params(ctrl, net="G", module=None):
    net_mod = module if module is not None else ctrl.nets[net]
    return [(s, s.param(net_mod), getattr(s.module(net_mod), s.mask_attr)) for s in ctrl.sites[net]]


def test_phase_at_boundaries_hand_listed():
    got = [regan.phase_at(i, warmup=3, interval=2) for i in range(11)]
    want = ["warmup"] * 3 + ["sparse"] * 2 + ["dense"] * 2 + ["sparse"] * 2 + ["dense"] * 2
    assert got == want


def test_controller_transitions_at_exact_iterations():
    G, D = make()
    ctrl = sc.prepare(sc.ReGANConfig(sparsity=0.25, interval=2, warmup=3), G=G, D=D)
    opt_G, opt_D = torch.optim.Adam(G.parameters(), 1e-3), torch.optim.Adam(D.parameters(), 1e-3)
    ctrl.bind(opt_G=opt_G, opt_D=opt_D)
    events, phases = [], [ctrl.current_phase()]
    for _ in range(9):
        gan_step(G, D, opt_G, opt_D, ctrl)
        events.append(ctrl.iteration if ctrl.current_phase() != phases[-1] else None)
        phases.append(ctrl.current_phase())
    assert phases == ["warmup"] * 3 + ["sparse"] * 2 + ["dense"] * 2 + ["sparse"] * 2 + ["dense"]
    assert [e for e in events if e] == [3, 5, 7, 9]


def test_pruned_fraction_is_rho_per_tensor_to_one_element():
    G, D = make()
    rho = 0.3
    ctrl = sc.prepare(sc.ReGANConfig(sparsity=rho, interval=10, warmup=0, target="both"), G=G, D=D)
    for net in ("G", "D"):
        for s, p, m in masked_params(ctrl, net):
            n = p.numel()
            assert abs(int((m == 0).sum()) - rho * n) <= 1, s.name
            # pruned entries are the smallest magnitudes: every pruned |w| <= every kept |w| before pruning
            assert torch.all(p[m == 0] == 0)
    # spectral-norm layers are masked on weight_orig
    assert {s.attr for s in ctrl.sites["D"]} == {"weight_orig"}
    # BatchNorm / biases untouched in 'weights' scope
    assert all(s.attr in ("weight", "weight_orig") for s in ctrl.sites["G"])


def test_pruning_picks_smallest_magnitudes():
    w = torch.tensor([[0.5, -0.1, 0.3], [-0.9, 0.2, 0.05]])
    m = regan.magnitude_mask(w, 0.5)
    assert m.tolist() == [[1, 0, 1], [1, 0, 0]]


def test_pruned_weights_stay_zero_through_adam_beta1_and_weight_decay_and_ema():
    G, D = make()
    # Dense warm-up first so that Adam's moments are non-zero at pruned entries when the sparse phase starts.
    ctrl = sc.prepare(sc.ReGANConfig(sparsity=0.3, interval=1000, warmup=5, target="both"), G=G, D=D)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    opt_G = torch.optim.Adam(G.parameters(), 1e-2, betas=(0.5, 0.999), weight_decay=1e-2)
    opt_D = torch.optim.AdamW(D.parameters(), 1e-2, betas=(0.5, 0.999), weight_decay=1e-2)
    ctrl.bind(G_ema=G_ema, opt_G=opt_G, opt_D=opt_D)
    for _ in range(5):
        gan_step(G, D, opt_G, opt_D, ctrl, ema=G_ema)
    masks0 = {s.name: m.clone() for s, _, m in masked_params(ctrl, "G") + masked_params(ctrl, "D")}
    for _ in range(100):
        gan_step(G, D, opt_G, opt_D, ctrl, ema=G_ema)
    assert ctrl.current_phase() == "sparse"
    for net, mod in (("G", G), ("D", D), ("G", G_ema)):
        for s, p, m in masked_params(ctrl, net, mod):
            assert torch.equal(m, masks0[s.name])
            assert torch.count_nonzero(p[m == 0]) == 0, (net, s.name)
            assert torch.count_nonzero(p[m == 1]) > 0


def test_without_after_step_adam_would_revive_pruned_weights():
    """Guards the test above: Adam(β1=0.5) moves zero-grad entries, so only re-masking keeps them at 0."""
    G, D = make()
    ctrl = sc.prepare(sc.ReGANConfig(sparsity=0.3, interval=1000, warmup=2), G=G, D=D)
    ctrl.bind(opt_G=torch.optim.SGD(G.parameters(), lr=0.0))   # steps / advance() need it bound
    opt = torch.optim.Adam(G.parameters(), 1e-2, betas=(0.5, 0.999), weight_decay=1e-2)

    def step(re_mask):
        loss = G(torch.randn(4, 8)).square().mean()
        opt.zero_grad()
        loss.backward()
        ctrl.before_step("G")
        opt.step()
        if re_mask:
            ctrl.after_step("G")

    for _ in range(2):      # dense warm-up builds Adam moments everywhere
        step(True)
        ctrl.advance(4)
    assert ctrl.current_phase() == "sparse"
    for _ in range(3):
        step(False)
    s, p, m = masked_params(ctrl, "G")[0]
    assert torch.count_nonzero(p[m == 0]) > 0


@pytest.mark.parametrize("dense_lr_scale", [0.1, 1.0])
def test_lr_scale_composes_with_lambda_lr(dense_lr_scale):
    G, D = make()
    total, base = 12, 2e-4
    ctrl = sc.prepare(sc.ReGANConfig(sparsity=0.2, interval=2, warmup=2, dense_lr_scale=dense_lr_scale), G=G, D=D)
    opt_G = torch.optim.Adam(G.parameters(), base, betas=(0.0, 0.9))
    opt_D = torch.optim.Adam(D.parameters(), base, betas=(0.0, 0.9))
    decay = lambda step: 1 - step / total
    sched_G = torch.optim.lr_scheduler.LambdaLR(opt_G, decay)
    sched_D = torch.optim.lr_scheduler.LambdaLR(opt_D, decay)
    ctrl.bind(opt_G=opt_G, opt_D=opt_D, sched_G=[sched_G], sched_D=[sched_D])
    for step in range(total - 1):
        gan_step(G, D, opt_G, opt_D, ctrl)
        sched_G.step()
        sched_D.step()
        k = step + 1   # iterations done = scheduler steps done
        phase = regan.phase_at(k, 2, 2)
        want_G = base * decay(k) * (dense_lr_scale if phase == "dense" else 1.0)
        assert opt_G.param_groups[0]["lr"] == pytest.approx(want_G, rel=1e-12), (k, phase)
        assert opt_D.param_groups[0]["lr"] == pytest.approx(base * decay(k), rel=1e-12)  # D not targeted


def test_lr_scale_composes_with_prescaled_base_lr():
    """StyleGAN2's lazy regularisation pre-multiplies lr by mb_ratio: the scale multiplies, never overwrites."""
    G, D = make()
    ctrl = sc.prepare(sc.ReGANConfig(sparsity=0.2, interval=1, warmup=0, dense_lr_scale=0.1), G=G, D=D)
    mb_ratio = 4 / 5
    opt_G = torch.optim.Adam(G.parameters(), 0.0025 * mb_ratio, betas=(0.0, 0.99 ** mb_ratio))
    ctrl.bind(opt_G=opt_G)
    ctrl.advance(4)  # -> dense
    assert opt_G.param_groups[0]["lr"] == pytest.approx(0.0025 * mb_ratio * 0.1, rel=1e-12)
    ctrl.advance(4)  # -> sparse
    assert opt_G.param_groups[0]["lr"] == pytest.approx(0.0025 * mb_ratio, rel=1e-12)


@pytest.mark.parametrize("regrow", ["zero", "random"])
def test_regrow(regrow):
    G, D = make()
    ctrl = sc.prepare(sc.ReGANConfig(sparsity=0.5, interval=1, warmup=0, regrow=regrow), G=G, D=D)
    ctrl.bind(opt_G=torch.optim.SGD(G.parameters(), lr=0.0))   # steps / advance() need it bound
    before = {s.name: (p.detach().clone(), m.clone()) for s, p, m in masked_params(ctrl)}
    ctrl.advance(4)   # grow (no optimizer step in between: values only change by regrowth)
    assert ctrl.current_phase() == "dense"
    for s, p, m in masked_params(ctrl):
        w0, m0 = before[s.name]
        assert torch.all(m == 1)
        assert torch.equal(p[m0 == 1], w0[m0 == 1])          # survivors untouched
        pruned = p[m0 == 0]
        if regrow == "zero":
            assert torch.count_nonzero(pruned) == 0
        else:
            assert torch.count_nonzero(pruned) == pruned.numel()
    if regrow == "random":
        # nn.Linear's initializer is U(-1/sqrt(in), 1/sqrt(in)): regrown values respect that bound
        s, p, _ = masked_params(ctrl)[0]
        assert s.name == "fc.weight"
        assert p.abs().max() <= 1 / 8 ** 0.5 + 1e-6


def test_name_filters_and_scope_all():
    G, D = make()
    ctrl = sc.prepare(sc.ReGANConfig(exclude=["torgb"]), G=G, D=D)
    assert [s.name for s in ctrl.sites["G"]] == ["fc.weight", "up.weight", "conv.weight"]
    assert ctrl.sites["G"][1].channel_dim == 1   # ConvTranspose2d weight is [in, out, k, k]
    G, D = make()
    ctrl = sc.prepare(sc.ReGANConfig(scope="all"), G=G, D=D)
    names = [s.name for s in ctrl.sites["G"]]
    assert "bn.weight" in names and "fc.bias" in names and len(names) == len(list(G.parameters()))
    G, D = make()
    ctrl = sc.prepare(sc.ReGANConfig(include=["^conv"]), G=G, D=D)
    assert [s.name for s in ctrl.sites["G"]] == ["conv.weight"]


def test_ties_at_the_cut_are_kept_whole_and_the_true_count_reported():
    from sparse_core.methods import regan as R
    w = torch.tensor([0.5, 1.0, 1.0, 1.0, 1.0, 2.0, 3.0, 4.0])
    m = R.magnitude_mask(w, 0.5)                       # k = 4: the 4th and 5th smallest are tied (1.0)
    assert m.tolist() == [0, 1, 1, 1, 1, 1, 1, 1]      # only what is strictly below the tie
    assert R.magnitude_mask(torch.ones(16), 0.3).sum() == 16   # BatchNorm γ at init: nothing pruned
    r = torch.randn(1000)
    m = R.magnitude_mask(r, 0.3)
    assert int((m == 0).sum()) == 300 and float(r.abs()[m == 0].max()) < float(r.abs()[m == 1].min())
    torch.manual_seed(0)
    G = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    ctrl = sc.prepare(sc.ReGANConfig(sparsity=0.5, warmup=0, scope="all"), G=G)
    dens = ctrl.layer_density("G")
    assert dens["1.weight"] == 1.0 and dens["1.bias"] == 1.0        # γ = 1, β = 0: ties, kept
    assert dens["0.weight"] == pytest.approx(0.5, abs=1 / 108)
    sizes = {k: p.numel() for k, p in G.named_parameters()}
    pruned = int((G[0].weight == 0).sum()) + int((G[0].bias == 0).sum())   # BN β is 0 but not pruned
    assert ctrl.sparsity("G") == pytest.approx(pruned / sum(sizes.values()))
