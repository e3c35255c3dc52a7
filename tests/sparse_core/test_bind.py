"""bind() in real loops: re-binding, EMA lists, restored EMA thresholds, order with load_state_dict."""
import copy
import io

import pytest
import torch

import sparse_core as sc
from sc_nets import gan_step, make

LR = 1e-3
CFG = sc.ReGANConfig(sparsity=0.5, interval=3, warmup=2, dense_lr_scale=0.1)   # dense phase from iteration 5


def adam(net):
    return torch.optim.Adam(net.parameters(), LR)


def into_dense_phase():
    G, D = make(0)
    ctrl = sc.prepare(CFG, G=G, D=D)
    opt_G, opt_D = adam(G), adam(D)
    sched = torch.optim.lr_scheduler.LambdaLR(opt_G, lambda k: 1.0)
    ctrl.bind(opt_G=opt_G, opt_D=opt_D, sched_G=[sched])
    for _ in range(6):
        gan_step(G, D, opt_G, opt_D, ctrl)
        sched.step()
    assert ctrl.current_phase() == "dense"
    return G, D, ctrl, opt_G, opt_D, sched


def test_rebinding_same_or_new_optimizer_never_compounds_the_scale():
    G, D, ctrl, opt_G, opt_D, sched = into_dense_phase()
    assert opt_G.param_groups[0]["lr"] == pytest.approx(LR * 0.1)
    for _ in range(3):
        ctrl.bind(opt_G=opt_G, opt_D=opt_D, sched_G=[sched])
    assert opt_G.param_groups[0]["lr"] == pytest.approx(LR * 0.1)
    assert sched.base_lrs[0] == pytest.approx(LR * 0.1)
    assert opt_D.param_groups[0]["lr"] == LR          # D is not targeted
    # A rebuilt optimizer (ProGAN: one per resolution) replaces the old one and gets the scale once.
    new = adam(G)
    ctrl.bind(opt_G=new)
    ctrl.bind(opt_G=new)
    assert new.param_groups[0]["lr"] == pytest.approx(LR * 0.1)
    for _ in range(3):                                 # next boundary: back to sparse, scale 1 on the new one only
        gan_step(G, D, new, opt_D, ctrl)
    assert ctrl.current_phase() == "sparse"
    assert new.param_groups[0]["lr"] == pytest.approx(LR)
    assert opt_G.param_groups[0]["lr"] == pytest.approx(LR * 0.1)   # the discarded one is left alone


def _blob(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    return torch.load(io.BytesIO(buf.getvalue()), weights_only=True)


@pytest.mark.parametrize("order", ["bind,opt,ctrl", "opt,ctrl,bind", "ctrl,opt,bind", "ctrl,bind,opt", "opt,bind,ctrl"])
def test_bind_and_load_state_dict_in_any_order_give_the_saved_lr(order):
    G, D, ctrl, opt_G, opt_D, sched = into_dense_phase()
    snap = _blob({"G": G.state_dict(), "opt_G": opt_G.state_dict(), "sched": sched.state_dict(),
                  "ctrl": ctrl.state_dict()})
    G2, D2 = make(1)
    ctrl2 = sc.prepare(CFG, G=G2, D=D2)
    opt2 = adam(G2)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, lambda k: 1.0)
    G2.load_state_dict(snap["G"])
    steps = {"bind": lambda: ctrl2.bind(opt_G=opt2, sched_G=[sched2]),
             "opt": lambda: (opt2.load_state_dict(snap["opt_G"]), sched2.load_state_dict(snap["sched"])),
             "ctrl": lambda: ctrl2.load_state_dict(snap["ctrl"])}
    for k in order.split(","):
        steps[k]()
    assert opt2.param_groups[0]["lr"] == pytest.approx(LR * 0.1, rel=1e-12)
    assert sched2.base_lrs[0] == pytest.approx(LR * 0.1, rel=1e-12)
    # a fresh optimizer bound after the resume (not restored) also gets the dense scale exactly once
    fresh = adam(G2)
    ctrl2.bind(opt_G=fresh)
    assert fresh.param_groups[0]["lr"] == pytest.approx(LR * 0.1, rel=1e-12)


def test_ema_as_list_of_tensors_is_masked():
    G, D = make(0)
    ctrl = sc.prepare(sc.ReGANConfig(sparsity=0.5, interval=4, warmup=1), G=G, D=D)
    ema = [p.detach().clone() for p in G.parameters()]      # FastGAN's copy_G_params
    opt_G, opt_D = adam(G), adam(D)
    ctrl.bind(G_ema=ema, opt_G=opt_G, opt_D=opt_D)
    ctrl.bind(G_ema=ema)                                      # idempotent
    names = [k for k, _ in G.named_parameters()]
    for _ in range(3):
        gan_step(G, D, opt_G, opt_D, ctrl)
        with torch.no_grad():
            for pe, p in zip(ema, G.parameters()):
                pe.mul_(0.9).add_(0.1 * p)
        ctrl.after_ema()
    assert ctrl.current_phase() == "sparse"
    mods = dict(G.named_modules())
    for k, t in zip(names, ema):
        owner, attr = k.rsplit(".", 1)
        mask = mods[owner]._buffers.get(attr + "_mask")
        if mask is not None:
            assert float(mask.mean()) == pytest.approx(0.5, abs=0.06)
            assert torch.all(t[mask == 0] == 0)
            assert torch.any(t[mask == 1] != 0)
    exported = ctrl.export("G_ema", sparse=False)
    for (k, p), t in zip(exported.named_parameters(), ema):
        assert torch.equal(p, t), k
    assert not any(k.endswith("_mask") for k in exported.state_dict())


def test_ema_list_alignment_is_checked():
    G, D = make(0)
    ctrl = sc.prepare(sc.RGGANConfig(), G=G, D=D)
    before = [p.detach().clone() for p in make(0)[0].parameters()]   # taken before prepare(): no thresholds
    ctrl.bind(G_ema=before)
    ctrl.bind(G_ema=[p.detach().clone() for p in G.parameters()])    # after prepare(): thresholds included
    with pytest.raises(sc.ConfigError, match="aligned with G.parameters"):
        ctrl.bind(G_ema=before[:-1])
    with pytest.raises(sc.ConfigError, match="shape"):
        ctrl.bind(G_ema=[t.t() if t.ndim == 2 else t for t in before])


def test_binding_never_overwrites_thresholds_an_ema_holds():
    G, D = make(0)
    pre_copy = copy.deepcopy(G)                         # before prepare(): gets G's thresholds at bind
    ctrl = sc.prepare(sc.RGGANConfig(), G=G, D=D)
    with torch.no_grad():
        G.fc.weight_threshold.fill_(0.25)
    G_ema = copy.deepcopy(G)
    with torch.no_grad():
        G_ema.fc.weight_threshold.fill_(0.5)            # e.g. restored from a snapshot
    ctrl.bind(G_ema=G_ema)
    ctrl.bind(G_ema=G_ema)
    assert torch.all(G_ema.fc.weight_threshold == 0.5)
    ctrl.bind(G_ema=pre_copy)
    assert torch.all(pre_copy.fc.weight_threshold == 0.25)
    with pytest.raises(sc.ConfigError, match="G itself"):
        ctrl.bind(G_ema=G)
