"""RG-GAN semantics (SPEC §2.3)."""
import copy

import pytest
import torch

import sparse_core as sc
from sparse_core.methods import rggan
from sparse_core.ops import reference as ref
from sc_nets import Z, gan_step, make


def thresholds(ctrl, net="G", module=None):
    mod = module if module is not None else ctrl.nets[net]
    return [(s, s.module(mod)._parameters[s.attr], s.module(mod)._parameters[s.threshold_attr]) for s in ctrl.sites[net]]


def set_thresholds(ctrl, value):
    with torch.no_grad():
        for net in ctrl.targets:
            for s, w, t in thresholds(ctrl, net):
                t.fill_(value)


def test_forward_uses_w_times_step_abs_w_minus_t_per_output_channel():
    G, D = make()
    plain = copy.deepcopy(G).eval()
    ctrl = sc.prepare(sc.RGGANConfig(), G=G, D=D)
    G.eval()
    with torch.no_grad():
        for s, w, t in thresholds(ctrl):
            t.copy_(torch.linspace(0.0, float(w.abs().max()) * 0.8, t.numel()))
            # the same mask written out by hand on the plain copy, per output channel
            pw = s.param(plain)
            for c in range(t.numel()):
                sl = pw.select(s.channel_dim, c)
                sl.mul_((sl.abs() > t[c]).to(sl.dtype))
    z = torch.randn(3, Z)
    assert torch.allclose(G(z), plain(z), atol=1e-6)
    # the parameters themselves are untouched (the mask acts in the forward only)
    assert all(type(w) is torch.nn.Parameter for _, w, _ in thresholds(ctrl))


def test_threshold_gradient_matches_long_tailed_estimator_and_official_mode_detaches():
    torch.manual_seed(0)
    lin = torch.nn.Linear(6, 4).double()
    D_dummy = torch.nn.Linear(1, 1)
    ctrl = sc.prepare(sc.RGGANConfig(target="G", lam=0.0), G=lin, D=D_dummy)
    w = lin.weight
    t = lin.weight_threshold
    with torch.no_grad():
        t.copy_(torch.tensor([0.05, 0.1, 0.2, 0.3], dtype=torch.float64))
    x = torch.randn(5, 6, dtype=torch.float64)
    r = torch.randn(5, 4, dtype=torch.float64)
    (lin(x) * r).sum().backward()
    g = r.t() @ x                          # dL/dW_eff
    xs = w.detach().abs() - t.detach()[:, None]
    want_t = -(g * w.detach() * ref.long_tailed_grad(xs)).sum(1)
    want_w = g * (xs > 0).double()        # pruned weights get no gradient
    assert torch.allclose(t.grad, want_t, rtol=1e-10, atol=1e-12)
    assert torch.allclose(w.grad, want_w, rtol=1e-10, atol=1e-12)
    assert t.grad.abs().sum() > 0

    lin2 = torch.nn.Linear(6, 4).double()
    ctrl2 = sc.prepare(sc.RGGANConfig(target="G", lam=1e-3, official=True), G=lin2, D=D_dummy)
    with torch.no_grad():
        lin2.weight_threshold.fill_(0.1)
    ((lin2(x) * r).sum() + ctrl2.regularizer("G")).backward()
    # official (detached mask): only the regulariser moves t:  d/dt λ·Σexp(−t) = −λ·exp(−t)
    assert torch.allclose(lin2.weight_threshold.grad, -1e-3 * torch.exp(-lin2.weight_threshold.detach()))


def test_regularizer_value():
    G, D = make()
    ctrl = sc.prepare(sc.RGGANConfig(lam=1e-2), G=G, D=D)
    set_thresholds(ctrl, 0.5)
    n = sum(t.numel() for _, _, t in thresholds(ctrl, "G"))
    assert ctrl.regularizer("G").item() == pytest.approx(1e-2 * n * torch.exp(torch.tensor(-0.5)).item(), rel=1e-6)


def test_pruned_weights_frozen_through_adam_with_weight_decay():
    G, D = make()
    ctrl = sc.prepare(sc.RGGANConfig(lam=0.0), G=G, D=D)
    set_thresholds(ctrl, 0.05)
    opt_G = torch.optim.Adam(G.parameters(), 1e-2, betas=(0.5, 0.999), weight_decay=1e-2)
    opt_D = torch.optim.Adam(D.parameters(), 1e-2, betas=(0.5, 0.999), weight_decay=1e-2)
    ctrl.bind(opt_G=opt_G, opt_D=opt_D)
    # record, at each before_step, the weights and the mask of the forward that produced the gradients
    # (spectral-norm layers: step(|W_orig/σ| − t) on the derived weight; σ moves with every training forward)
    seen = {}
    inner = ctrl.before_step

    def before_step(n):
        seen[n] = [(w.detach().clone(), rggan.hard_mask(rggan.effective_weight(s.module(ctrl.nets[n]), s.attr,
                                                                               s.derived), t, s.channel_dim))
                   for s, w, t in thresholds(ctrl, n)]
        inner(n)
    ctrl.before_step = before_step
    for _ in range(20):
        gan_step(G, D, opt_G, opt_D, ctrl)
        assert all(sum(int((~keep).sum()) for _, keep in seen[n]) > 0 for n in ("G", "D"))
        for n in ("G", "D"):
            for (s, w, t), (w0, keep) in zip(thresholds(ctrl, n), seen[n]):
                assert torch.equal(w.detach()[~keep], w0[~keep]), (n, s.name)
                assert not torch.equal(w.detach()[keep], w0[keep])


def test_reset_rule_runs_in_the_forward_before_the_mask_is_used_also_for_G_ema():
    G, D = make()
    ctrl = sc.prepare(sc.RGGANConfig(lam=0.0), G=G, D=D)
    G_ema = copy.deepcopy(G)
    ctrl.bind(G_ema=G_ema)
    s0, w0, t0 = thresholds(ctrl)[0]
    s1, w1, t1 = thresholds(ctrl)[2]
    seen = []
    # a pre-hook registered after sparse_core's sees the weight the layer's forward then reads
    hook = G.fc.register_forward_pre_hook(lambda m, a: seen.append(m.weight.detach().clone()))
    with torch.no_grad():
        t0.fill_(1e3)          # everything pruned -> reset to 0 before this forward uses the mask
        # keep a bit more than 1% in layer 2: no reset
        q = torch.quantile(w1.detach().abs().flatten(), 0.97)
        t1.fill_(float(q))
        G_ema.fc.weight_threshold.fill_(1e3)
        G(torch.randn(2, Z))
        assert torch.count_nonzero(t0) == 0 and torch.all(t1 == float(q))
        # the forward used the mask of t = 0 (|w| > 0: every non-zero weight), not the all-zero one
        assert torch.equal(seen[-1], w0 * (w0.abs() > 0)) and torch.count_nonzero(seen[-1]) > 0
        assert ctrl.layer_density("G")[s0.name] == 1.0
        G_ema.eval()(torch.randn(2, Z))
        assert torch.count_nonzero(G_ema.fc.weight_threshold) == 0
        t0.fill_(float(torch.quantile(w0.abs().flatten(), 0.985)))   # 1.5 % kept: no reset
        G(torch.randn(2, Z))
        assert torch.all(t0 > 0)
    hook.remove()


def test_augmented_regeneration_on_scripted_metric_sequence():
    G, D = make()
    G_ema = None
    ctrl = sc.prepare(sc.RGGANConfig(), G=G, D=D)
    G_ema = copy.deepcopy(G)
    ctrl.bind(G_ema=G_ema)
    set_thresholds(ctrl, 0.1)
    seq = [10, 9, 8, 7, 6, 8, 5, 5.5]
    # hand-computed weighted means of the last five (0.1, 0.1, 0.2, 0.2, 0.4):
    #   [10,9,8,7,6] -> 7.3 >= 6 sparse; [9,8,7,6,8] -> 7.5 < 8 dense; [8,7,6,8,5] -> 6.3 >= 5 sparse;
    #   [7,6,8,5,5.5] -> 0.7+0.6+1.6+1.0+2.2 = 6.1 >= 5.5 sparse
    want = ["sparse"] * 4 + ["sparse", "dense", "sparse", "sparse"]
    got = [ctrl.feed_metric(v, higher_is_better=False) for v in seq[:5]]
    assert got == want[:5]
    z = torch.randn(2, Z)
    G.eval(); G_ema.eval()
    sparse_out = G(z)
    assert ctrl.feed_metric(seq[5], name="fid") == "dense"
    assert ctrl.stats()["sparse/phase"] == "dense"
    plain = ctrl.export("G", sparse=False).eval()
    assert torch.allclose(G(z), plain(z))                 # dense: all masks one, old values rejoin
    assert torch.allclose(G_ema(z), ctrl.export("G_ema", sparse=False).eval()(z))
    assert not torch.allclose(G(z), sparse_out)
    assert float(ctrl.regularizer("G")) == 0.0
    assert [ctrl.feed_metric(v, higher_is_better=False) for v in seq[6:]] == want[6:]
    assert torch.allclose(G(z), sparse_out)


def test_export_keeps_vendor_keys_and_applies_masks():
    G, D = make()
    keys_G, keys_D = set(G.state_dict()), set(D.state_dict())
    ctrl = sc.prepare(sc.RGGANConfig(), G=G, D=D)
    set_thresholds(ctrl, 0.1)
    assert set(G.state_dict()) - keys_G == {s.name[: -len(s.attr)] + s.threshold_attr for s in ctrl.sites["G"]}
    sG, dG, sD = ctrl.export("G", True), ctrl.export("G", False), ctrl.export("D", True)
    assert set(sG.state_dict()) == keys_G and set(dG.state_dict()) == keys_G and set(sD.state_dict()) == keys_D
    for s, w, t in thresholds(ctrl):
        keep = rggan.hard_mask(w, t, s.channel_dim)
        if keep.sum() <= 0.01 * keep.numel():   # collapsed: the next forward's reset rule makes it dense
            keep = torch.ones_like(keep)
        assert torch.equal(s.param(sG)[~keep], torch.zeros_like(w[~keep]))
        assert torch.equal(s.param(dG), w.detach())
    assert not sG._forward_pre_hooks and not rggan.state_of(sG.fc)


def test_spectral_norm_layers_mask_the_normalised_weight_as_the_official_code():
    """σ from the unmasked weight_orig, mask step(|W_orig/σ| − t), forward (W_orig/σ) ⊙ M (float64 by hand)."""
    torch.manual_seed(0)
    D = torch.nn.Sequential(torch.nn.utils.spectral_norm(torch.nn.Conv2d(3, 6, 3, 1, 1))).double().eval()
    ctrl = sc.prepare(sc.RGGANConfig(target="G"), G=D)
    conv = D[0]
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        D(x)
        W = conv.weight_orig.detach().clone()
        sigma = torch.dot(conv.weight_u, torch.mv(W.flatten(1), conv.weight_v))
        t = torch.linspace(0.05, 0.3, 6, dtype=torch.float64) * float((W / sigma).abs().max())
        conv.weight_orig_threshold.copy_(t)
        M = ((W / sigma).abs() > t.view(-1, 1, 1, 1)).double()
        want = torch.nn.functional.conv2d(x, (W / sigma) * M, conv.bias, padding=1)
        assert torch.allclose(D(x), want, atol=1e-12)
        # the old behaviour (mask |W_orig| > t, then normalise the masked weight) differs here
        Mo = (W.abs() > t.view(-1, 1, 1, 1)).double()
        sig_o = torch.dot(conv.weight_u, torch.mv((W * Mo).flatten(1), conv.weight_v))
        assert not torch.allclose(want, torch.nn.functional.conv2d(x, W * Mo / sig_o, conv.bias, padding=1))
        assert ctrl.layer_density("G")["0.weight_orig"] == pytest.approx(float(M.mean()))
        # the exported sparse layer (vendor keys, plain spectral_norm) computes the same in eval mode
        sD = ctrl.export("G", sparse=True).eval()
        assert set(sD.state_dict()) == {"0.bias", "0.weight_orig", "0.weight_u", "0.weight_v"}
        assert torch.allclose(sD(x), want, atol=1e-10)
