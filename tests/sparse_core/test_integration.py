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
