"""Resume, copies and checkpoint safety of controlled models."""
import copy
import io
import pickle

import pytest
import torch

import sparse_core as sc
from sc_nets import Z, gan_step, make


def build(cfg, seed):
    G, D = make(seed)
    ctrl = sc.prepare(cfg, G=G, D=D)
    G_ema = copy.deepcopy(G).requires_grad_(False)
    opt_G = torch.optim.Adam(G.parameters(), 2e-3, betas=(0.5, 0.99), weight_decay=1e-3)
    opt_D = torch.optim.Adam(D.parameters(), 2e-3, betas=(0.5, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt_G, lambda k: 1 - k / 500)
    ctrl.bind(G_ema=G_ema, opt_G=opt_G, opt_D=opt_D, sched_G=[sched])
    return dict(G=G, D=D, G_ema=G_ema, opt_G=opt_G, opt_D=opt_D, sched=sched, ctrl=ctrl)


def run(objs, n):
    losses = []
    for _ in range(n):
        losses.append(gan_step(objs["G"], objs["D"], objs["opt_G"], objs["opt_D"], objs["ctrl"], ema=objs["G_ema"]))
        objs["sched"].step()
        if objs["ctrl"].iteration % 7 == 0:
            objs["ctrl"].feed_metric(10.0 - 0.1 * objs["ctrl"].iteration + (objs["ctrl"].iteration % 3), name="fid")
    return losses


def snapshot(objs):
    snap = {k: objs[k].state_dict() for k in ("G", "D", "G_ema", "opt_G", "opt_D", "sched", "ctrl")}
    snap["rng"] = torch.get_rng_state()
    buf = io.BytesIO()
    torch.save(snap, buf)
    return buf.getvalue()


def restore(objs, blob):
    snap = torch.load(io.BytesIO(blob), weights_only=True)
    for k in ("G", "D", "G_ema", "opt_G", "opt_D", "sched"):
        objs[k].load_state_dict(snap[k])
    objs["ctrl"].load_state_dict(snap["ctrl"])
    torch.set_rng_state(snap["rng"])


CONFIGS = [
    sc.ReGANConfig(sparsity=0.3, interval=6, warmup=4, regrow="random", dense_lr_scale=0.1),
    sc.RGGANConfig(lam=1e-3),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["regan", "rggan"])
def test_resume_mid_phase_reproduces_next_50_steps_bit_exactly(cfg):
    torch.manual_seed(123)
    a = build(cfg, seed=0)
    run(a, 12)                      # Re-GAN: mid-way through the first dense phase (10..15)
    blob = snapshot(a)
    ref_losses = run(a, 50)
    b = build(cfg, seed=99)         # different init: everything must come from the snapshot
    restore(b, blob)
    assert b["ctrl"].iteration == 12 and b["ctrl"].current_phase() == snapshot_phase(blob)
    losses = run(b, 50)
    assert losses == ref_losses
    for k in ("G", "D", "G_ema"):
        for (n, x), (_, y) in zip(a[k].state_dict().items(), b[k].state_dict().items()):
            assert torch.equal(x, y), (k, n)
    assert a["ctrl"].stats() == b["ctrl"].stats()


def snapshot_phase(blob):
    return torch.load(io.BytesIO(blob), weights_only=True)["ctrl"]["phase"]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["regan", "rggan"])
def test_deepcopy_pickle_and_weights_only_load(cfg):
    objs = build(cfg, seed=0)
    run(objs, 6)
    G = objs["G"].eval()
    z = torch.randn(2, Z)
    out = G(z)
    assert torch.equal(copy.deepcopy(G)(z), out)
    assert torch.equal(pickle.loads(pickle.dumps(G))(z), out)
    buf = io.BytesIO()
    torch.save({"G": G.state_dict(), "ctrl": objs["ctrl"].state_dict()}, buf)
    loaded = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
    fresh = build(cfg, seed=5)
    fresh["G"].load_state_dict(loaded["G"])
    fresh["ctrl"].load_state_dict(loaded["ctrl"])
    assert torch.equal(fresh["G"].eval()(z), out)


def test_state_from_another_config_is_refused_and_changes_nothing():
    a = build(sc.ReGANConfig(sparsity=0.3, interval=6, warmup=0), seed=0)
    run(a, 3)
    state = a["ctrl"].state_dict()
    b = build(sc.ReGANConfig(sparsity=0.5, interval=6, warmup=0), seed=0)
    masks_before = [m.clone() for m in b["G"].buffers()]
    with pytest.raises(sc.ConfigError, match="sparsity: saved 0.3, given 0.5"):
        b["ctrl"].load_state_dict(state)
    assert b["ctrl"].iteration == 0
    assert all(torch.equal(x, y) for x, y in zip(masks_before, b["G"].buffers()))
    c = build(sc.RGGANConfig(), seed=0)
    with pytest.raises(sc.ConfigError, match="method"):
        c["ctrl"].load_state_dict(state)
