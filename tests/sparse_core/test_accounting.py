"""FLOPs accounting against hand counts (SPEC §2.5)."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import sparse_core as sc
from sparse_core.accounting import UNOWNED
from sc_nets import Z, make

N = 4
# TinyG, by hand (per sample): Linear 8->128; ConvTranspose 8->8 k4 s2 on 4x4 input; Conv 8->3 k3 at 8x8; torgb 3->3 k1.
HAND_G = {
    "fc": 2 * 8 * 128,
    "up": 2 * (4 * 4) * 8 * 8 * 4 * 4,
    "conv": 2 * (8 * 8) * 3 * 8 * 3 * 3,
    "torgb": 2 * (8 * 8) * 3 * 3 * 1 * 1,
}
# TinyD: conv 3->8 k3 s2 -> 4x4; conv 8->8 k3 s2 -> 2x2; linear 32->1.
HAND_D = {"conv1": 2 * 16 * 8 * 3 * 9, "conv2": 2 * 4 * 8 * 8 * 9, "fc": 2 * 32 * 1}


def test_forward_flops_by_layer_equal_hand_count_and_flop_counter():
    G, D = make()
    ctrl = sc.prepare(sc.ReGANConfig(target="both", exclude=["torgb"]), G=G, D=D)
    z, x = torch.randn(N, Z), torch.randn(N, 3, 8, 8)
    ctrl.measure_flops("G", lambda: G(z), batch=N)
    ctrl.measure_flops("D", lambda: D(x), batch=N)
    want_G = {k: v for k, v in HAND_G.items() if k != "torgb"}
    want_G[UNOWNED] = HAND_G["torgb"]          # excluded layer: counted, but as dense
    assert ctrl.flops.per_sample["G"] == pytest.approx(want_G)
    assert ctrl.flops.per_sample["D"] == pytest.approx(HAND_D)
    for net, inp, hand in ((G, z, HAND_G), (D, x, HAND_D)):
        with FlopCounterMode(display=False) as fc:
            net(inp)
        assert fc.get_total_flops() == N * sum(hand.values())


def test_training_flops_scale_with_density_and_passes():
    G, D = make()
    rho = 0.5
    ctrl = sc.prepare(sc.ReGANConfig(sparsity=rho, interval=2, warmup=1), G=G, D=D)
    ctrl.bind(opt_G=torch.optim.SGD(G.parameters(), lr=0.0))   # advance() needs the optimizer bound
    z, x = torch.randn(N, Z), torch.randn(N, 3, 8, 8)
    ctrl.measure_flops("G", lambda: G(z), batch=N, forward_samples=2, train_samples=4)
    ctrl.measure_flops("D", lambda: D(x), batch=N, train_samples=8)
    dense_it = sum(HAND_G.values()) * (2 + 3 * 4) + sum(HAND_D.values()) * 3 * 8
    kept = {s.module_name: None for s in ctrl.sites["G"]}
    ctrl.advance(8)                     # iteration 0 was warm-up (dense) -> now sparse
    assert ctrl.flops.total == pytest.approx(dense_it)
    for s in ctrl.sites["G"]:
        kept[s.module_name] = float(getattr(s.module(G), s.mask_attr).mean())
    ctrl.advance(8)                     # one sparse iteration
    sparse_it = sum(HAND_G[k] * kept[k] for k in HAND_G) * (2 + 3 * 4) + sum(HAND_D.values()) * 3 * 8
    assert ctrl.flops.total == pytest.approx(dense_it + sparse_it)
    assert ctrl.flops.dense_equiv == pytest.approx(2 * dense_it)
    for s in ctrl.sites["G"]:
        n = s.param(G).numel()
        assert kept[s.module_name] == pytest.approx((n - round(rho * n)) / n)
    st = ctrl.stats()
    assert st["flops/train_total"] == pytest.approx(dense_it + sparse_it)
    assert st["progress/real_images"] == 16
    assert st["sparse/G/sparsity"] == pytest.approx(rho, abs=1e-3)


def test_declared_costs_are_charged_at_rggan_densities_of_each_iteration():
    """Declared per-iteration costs (forward_samples / train_samples) under RG-GAN's 0-d tensor densities: the
    total equals a float64 sum over iterations of per-layer FLOPs × passes × the kept fraction of the next forward
    after that network's optimizer step (layer_density, read by hand then); the dense equivalent counts every
    iteration dense."""
    G, D = make()
    ctrl = sc.prepare(sc.RGGANConfig(lam=1.0, augmented=False), G=G, D=D)
    opt = {"G": torch.optim.Adam(G.parameters(), lr=0.05), "D": torch.optim.Adam(D.parameters(), lr=0.05)}
    ctrl.bind(opt_G=opt["G"], opt_D=opt["D"])
    z, x = torch.randn(N, Z), torch.randn(N, 3, 8, 8)
    ctrl.measure_flops("G", lambda: G(z), batch=N, forward_samples=2, train_samples=4)
    ctrl.measure_flops("D", lambda: D(x), batch=N, train_samples=8)
    passes, hand = {"G": 2 + 3 * 4, "D": 3 * 8}, {"G": HAND_G, "D": HAND_D}
    layer_of = {n: {s.name: s.layer for s in ctrl.sites[n]} for n in ("G", "D")}
    want, dense, lowest = 0.0, 0.0, 1.0
    for _ in range(4):
        kept = {}
        for n, loss in (("D", lambda: torch.relu(1 + D(G(torch.randn(N, Z)).detach())).mean()),
                        ("G", lambda: -D(G(torch.randn(N, Z))).mean())):
            opt[n].zero_grad(set_to_none=True)
            (loss() + ctrl.regularizer(n)).backward()
            ctrl.optimizer_step(n, opt[n])
            kept[n] = {layer_of[n][k]: d for k, d in ctrl.layer_density(n).items()}
            lowest = min(lowest, *kept[n].values())
        for n in ("G", "D"):
            want += sum(f * passes[n] * kept[n].get(layer, 1.0) for layer, f in hand[n].items())
            dense += sum(hand[n].values()) * passes[n]
        ctrl.advance(8)
    assert lowest < 0.9, "the thresholds pruned (else this test checks nothing about densities)"
    assert float(ctrl.flops.total) == pytest.approx(want, rel=1e-6)
    assert ctrl.flops.dense_equiv == pytest.approx(dense)
