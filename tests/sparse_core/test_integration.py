"""Flag wiring shared by every patched vendor."""
import argparse
import copy

import pytest
import torch

import sparse_core as sc
from sparse_core import integration
from sc_nets import make


def parse(argv, interval=100):
    p = argparse.ArgumentParser()
    integration.add_argparse_flags(p, interval=interval)
    return p.parse_args(argv)


def test_flags_to_configs():
    assert integration.config_from_flags(parse([])) is None
    cfg = integration.config_from_flags(parse(["--sparse", "regan", "--sparsity", "0.1", "--prune-target", "both",
                                               "--regrow", "random", "--dense-lr-scale", "1.0",
                                               "--sparse-exclude", "torgb,mapping"]))
    assert cfg == sc.ReGANConfig(sparsity=0.1, interval=100, warmup=100, target="both", regrow="random",
                                 dense_lr_scale=1.0, exclude=("torgb", "mapping"))
    cfg = integration.config_from_flags(parse(["--sparse", "rggan", "--rg-lambda", "1e-12", "--rg-official"]))
    assert cfg == sc.RGGANConfig(lam=1e-12, official=True)
    with pytest.raises(sc.ConfigError, match="sparsity"):
        integration.config_from_flags(parse(["--sparse", "regan", "--sparsity", "1.5"]))
    with pytest.raises(SystemExit):
        parse(["--sparse", "magic"])


def test_click_options_match_argparse():
    import click

    @click.command()
    @integration.click_options(interval=5000)
    def cmd(**kw):
        cmd.got = kw

    cmd.main(["--sparse", "regan", "--warmup", "7"], standalone_mode=False)
    assert integration.config_from_flags(cmd.got) == sc.ReGANConfig(interval=5000, warmup=7)


def test_sparse_none_controller_is_a_no_op_and_export(tmp_path):
    G, D = make()
    ctrl = integration.controller_from_flags(parse([]), G, D)
    opt = torch.optim.SGD(G.parameters(), 0.1)
    G(torch.randn(2, 8)).sum().backward()
    before = [p.detach().clone() for p in G.parameters()]
    ctrl.optimizer_step("G", opt)
    assert any(not torch.equal(a, b) for a, b in zip(before, G.parameters()))
    st = ctrl.stats()
    assert st["sparse/method"] == "none" and st["sparse/G/sparsity"] == 0.0 and st["sparse/lr_scale"] == 1.0
    assert integration.export_generators(ctrl, "G", str(tmp_path)) == []
    # every public method of the controller exists and does nothing harmful
    assert float(ctrl.regularizer("G")) == 0.0 and ctrl.advance(4) is None and ctrl.feed_metric(1.0) is None
    ctrl.bind(G_ema=copy.deepcopy(G), opt_G=opt)
    ctrl.after_ema()
    assert ctrl.layer_density("G") == {} and ctrl.sparsity("D") == 0.0 and ctrl.current_phase() == "dense"
    assert set(ctrl.export("G").state_dict()) == set(G.state_dict())
    ctrl.load_state_dict(ctrl.state_dict())
    ctrl = integration.controller_from_flags(parse(["--sparse", "regan", "--warmup", "0"]), G, D)
    paths = integration.export_generators(ctrl, "G", str(tmp_path), {"z_dim": 8})
    sparse = torch.load(paths[0], weights_only=True)
    assert sparse["z_dim"] == 8 and set(sparse["G"]) == set(make()[0].state_dict())
    assert float((sparse["G"]["conv.weight"] == 0).float().mean()) == pytest.approx(0.3, abs=1 / 216)


def _dense_snapshot():
    G, D = make(0)
    ctrl = integration.controller_from_flags(parse([]), G, D)
    opt_G, opt_D = torch.optim.Adam(G.parameters(), 1e-3), torch.optim.Adam(D.parameters(), 1e-3)
    ctrl.bind(opt_G=opt_G, opt_D=opt_D)
    from sc_nets import gan_step
    gan_step(G, D, opt_G, opt_D, ctrl)
    return {"G": G.state_dict(), "D": D.state_dict(), "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict(),
            "sparse": ctrl.state_dict()}


@pytest.mark.parametrize("method", ["regan", "rggan"])
def test_dense_snapshot_starts_a_sparse_run_only_with_sparse_from_dense(method):
    snap = _dense_snapshot()
    for flag, state in ((False, snap["sparse"]), (False, {}), (True, snap["sparse"])):
        G, D = make(1)
        argv = ["--sparse", method, "--warmup", "0"] + (["--sparse-from-dense"] if flag else [])
        ctrl = integration.controller_from_flags(parse(argv), G, D)
        opt_G, opt_D = torch.optim.Adam(G.parameters(), 1e-3), torch.optim.Adam(D.parameters(), 1e-3)
        ctrl.bind(opt_G=opt_G, opt_D=opt_D)
        # the loop's own restore (SNGAN's order: after prepare and bind) must not trip over sparse_core's extras
        G.load_state_dict(snap["G"])
        D.load_state_dict(snap["D"])
        opt_G.load_state_dict(snap["opt_G"])
        opt_D.load_state_dict(snap["opt_D"])
        if not flag:
            with pytest.raises(sc.ConfigError, match="--sparse-from-dense"):
                integration.load_resume_state(ctrl, state)
            continue
        integration.load_resume_state(ctrl, state)
        assert ctrl.iteration == 0
        assert torch.equal(G.fc.bias, snap["G"]["fc.bias"])
        if method == "regan":   # the first mask is cut from the restored weights
            w = snap["G"]["conv.weight"]
            m = G.conv.weight_mask
            assert int((m == 0).sum()) == round(0.3 * w.numel())
            assert float(w.abs()[m == 0].max()) <= float(w.abs()[m == 1].min())
        from sc_nets import gan_step
        gan_step(G, D, opt_G, opt_D, ctrl)          # thresholds got fresh optimizer state
        assert len(opt_G.state) == len(list(G.parameters()))


def test_method_mismatch_names_the_differing_settings():
    G, D = make(0)
    state = integration.controller_from_flags(parse(["--sparse", "regan"]), G, D).state_dict()
    G2, D2 = make(0)
    ctrl = integration.controller_from_flags(parse(["--sparse", "rggan"]), G2, D2)
    with pytest.raises(sc.ConfigError, match=r"method: saved 'regan', given 'rggan'.*sparsity: saved 0.3, given "):
        integration.load_resume_state(ctrl, state)
    dense = integration.controller_from_flags(parse([]), *make(0))
    with pytest.raises(sc.ConfigError, match=r"method: saved 'regan', given 'none'"):
        integration.load_resume_state(dense, state)
