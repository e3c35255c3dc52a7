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
