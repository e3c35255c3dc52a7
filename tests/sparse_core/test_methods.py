"""A new method is one file: register a toy method here, in the test alone, and drive it through the CLI
flags, the controller, persistence and export like the built-in ones."""
import argparse
import dataclasses
from typing import Sequence

import pytest
import torch

import sparse_core as sc
from sparse_core import integration, methods
from sparse_core.methods import MaskMethod
from sparse_core.methods import Flag
from sc_nets import gan_step, make


@dataclasses.dataclass(frozen=True)
class EveryOtherConfig:
    keep_odd: bool = False
    target: str = "G"
    scope: str = "weights"
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    method = "every_other"

    def targets(self):
        return (self.target,)


class EveryOther(MaskMethod):
    """Prunes every other entry (flat index parity) of each masked tensor, for the whole run."""
    name = "every_other"
    config_cls = EveryOtherConfig
    flags = (Flag("--keep-odd", "keep_odd", bool, False, "every_other: keep odd entries instead", "keep_odd"),)

    def attach(self):
        super().attach()
        c = self.ctx   # the context: targets, nets, sites per target, ema, counters
        for n in c.targets:
            masks = {}
            for s in c.sites[n]:
                idx = torch.arange(s.param(c.nets[n]).numel()) % 2
                masks[s.name] = (idx == int(self.config.keep_odd)).float().view_as(s.param(c.nets[n]))
            self.set_masks(n, masks)
        self.refresh_density()

    def phase(self):
        return "sparse"


@pytest.fixture
def toy():
    methods.register(EveryOther)
    yield
    methods.unregister("every_other")


def test_toy_method_through_flags_controller_state_and_export(toy):
    p = argparse.ArgumentParser()
    integration.add_argparse_flags(p, interval=10)
    args = p.parse_args(["--sparse", "every_other", "--keep-odd"])
    G, D = make()
    ctrl = integration.controller_from_flags(args, G, D)
    assert ctrl.method == "every_other" and ctrl.config == EveryOtherConfig(keep_odd=True)
    opt_G, opt_D = torch.optim.Adam(G.parameters(), 1e-2), torch.optim.Adam(D.parameters(), 1e-2)
    ctrl.bind(opt_G=opt_G, opt_D=opt_D)
    for _ in range(3):
        gan_step(G, D, opt_G, opt_D, ctrl)
    for s in ctrl.sites["G"]:
        flat = s.param(G).detach().flatten()
        assert torch.all(flat[0::2] == 0) and torch.all(flat[1::2] != 0)
    st = ctrl.stats()
    assert st["sparse/method"] == "every_other" and st["sparse/phase"] == "sparse"
    n = sum(s.param(G).numel() for s in ctrl.sites["G"])
    assert st["sparse/G/sparsity"] == pytest.approx(sum(s.param(G).numel() // 2 + s.param(G).numel() % 2
                                                        for s in ctrl.sites["G"]) / n)
    G2, D2 = make(1)
    ctrl2 = sc.prepare(EveryOtherConfig(keep_odd=True), G=G2, D=D2)
    ctrl2.load_state_dict(ctrl.state_dict())
    assert ctrl2.iteration == 3
    exported = ctrl.export("G", sparse=True)
    assert set(exported.state_dict()) == set(make()[0].state_dict())
    with pytest.raises(SystemExit):
        p.parse_args(["--sparse", "every_other", "--keep-odd", "--sparse", "nope"])


def test_registry_has_the_builtin_methods_and_flags_come_from_it():
    assert set(methods.names()) >= {"none", "regan", "rggan", "ticket"}
    flags = {f.flag for f in integration.all_flags()}
    for m in methods.all_methods():
        assert {f.flag for f in m.flags} <= flags
    assert "--keep-odd" not in flags            # toy registered only inside its test


@pytest.mark.parametrize("argv, word", [
    (["--sparse", "rggan", "--rg-lambda", "nan"], "--rg-lambda"),
    (["--sparse", "rggan", "--rg-lambda", "inf"], "--rg-lambda"),
    (["--sparse", "regan", "--dense-lr-scale", "inf"], "--dense-lr-scale"),
    (["--sparse", "regan", "--sparsity", "nan"], "--sparsity"),
])
def test_non_finite_flag_values_are_refused_by_name(argv, word, capsys):
    p = argparse.ArgumentParser()
    integration.add_argparse_flags(p, interval=10)
    with pytest.raises(SystemExit) as e:
        p.parse_args(argv)
    assert e.value.code == 2 and word in capsys.readouterr().err


@pytest.mark.parametrize("make_cfg, word", [
    (lambda: sc.RGGANConfig(lam=float("nan")), "lam"), (lambda: sc.RGGANConfig(lam=float("inf")), "lam"),
    (lambda: sc.ReGANConfig(dense_lr_scale=float("inf")), "dense_lr_scale"),
    (lambda: sc.ReGANConfig(sparsity=float("nan")), "sparsity"),
    (lambda: sc.RGGANConfig(reset_density=float("nan")), "reset_density"),
])
def test_non_finite_config_values_are_refused_by_name(make_cfg, word):
    with pytest.raises(sc.ConfigError, match=word):
        make_cfg()


def test_click_refuses_non_finite_with_usage_error():
    import click

    @click.command()
    @integration.click_options(interval=50)
    def cmd(**kw):
        pass
    with pytest.raises(click.exceptions.BadParameter, match="finite"):
        cmd.main(["--sparse", "rggan", "--rg-lambda", "nan"], standalone_mode=False)


def test_flags_a_method_does_not_read_are_reported_and_rggan_honours_target(capsys):
    p = argparse.ArgumentParser()
    integration.add_argparse_flags(p, interval=10)
    G, D = make()
    ctrl = integration.controller_from_flags(p.parse_args(["--sparse", "rggan", "--sparsity", "0.5",
                                                           "--prune-target", "G"]), G, D)
    assert ctrl.targets == ("G",)
    assert "ignores --sparsity" in capsys.readouterr().err
    with pytest.raises(sc.ConfigError, match="scope"):
        integration.controller_from_flags(p.parse_args(["--sparse", "rggan", "--sparse-scope", "all"]), *make())


def test_the_method_guide_example_is_a_working_method_in_one_file():
    """docs/METHODS.md's example, executed as written: one-shot pruning at iteration 3."""
    import re
    from pathlib import Path
    text = (Path(__file__).resolve().parents[2] / "docs" / "METHODS.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    ns = {}
    exec(compile(code, "docs/METHODS.md", "exec"), ns)
    try:
        G, D = make()
        ctrl = sc.prepare(ns["OneShotConfig"](sparsity=0.5, at=3), G=G, D=D)
        opt_G, opt_D = torch.optim.Adam(G.parameters(), 1e-2), torch.optim.Adam(D.parameters(), 1e-2)
        ctrl.bind(opt_G=opt_G, opt_D=opt_D)
        for _ in range(2):
            gan_step(G, D, opt_G, opt_D, ctrl)
        assert ctrl.sparsity("G") == 0.0 and ctrl.current_phase() == "dense"
        for _ in range(3):
            gan_step(G, D, opt_G, opt_D, ctrl)
        sizes = [s.param(G).numel() for s in ctrl.sites["G"]]
        pruned = sum(int((s.param(G) == 0).sum()) for s in ctrl.sites["G"])   # a hand count of zeros
        assert ctrl.current_phase() == "sparse" and ctrl.sparsity("G") == pytest.approx(pruned / sum(sizes))
        assert pruned == sum(round(0.5 * n) for n in sizes)
        with pytest.warns(UserWarning, match="never prunes"):
            ctrl.check_run_length(3)
    finally:
        methods.unregister("oneshot")
