"""The library's contract with a training loop: mistakes are errors naming the fix, metrics carry their
direction, loaded state and ticket files are checked before use, non-finite weights are never reported as
pruned, layers whose forward the mask cannot reach are refused by name; and the import graph is acyclic."""
import ast
import io
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import sparse_core as sc
from sparse_core import integration, tickets
from sc_nets import gan_step, make

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "sparse_core"


# ---------------------------------------------------------------------------------------------- imports
def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Explicit imports between sparse_core modules (any nesting level: lazy imports close cycles too)."""
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph = {m: set() for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    for target in (f"{base}.{alias.name}", base):
                        if target in files and target != mod:
                            graph[mod].add(target)
                            break
            elif isinstance(node, ast.Import):
                graph[mod].update(a.name for a in node.names if a.name in files and a.name != mod)
    return graph


def test_import_graph_of_sparse_core_is_acyclic():
    graph = _import_graph()
    assert graph["sparse_core.methods.regan"] >= {"sparse_core.methods.base", "sparse_core.config"}
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for n in graph[m]:
            assert state.get(n) != 1, "import cycle: " + " -> ".join(path + [m, n])
            if n not in state:
                visit(n, path + [m])
        state[m] = 2
    for m in graph:
        if m not in state:
            visit(m, [])


def test_every_module_imports_on_its_own():
    # __main__ runs the CLI; ops (the kernels' loader, slow to import) is imported once and kept
    mods = sorted(m for m in _import_graph() if m != "sparse_core.__main__" and not m.startswith("sparse_core.ops"))
    code = ("import importlib, sys\n"
            "import sparse_core.ops\n"
            f"for m in {mods!r}:\n"
            "    for k in [k for k in sys.modules if k == 'sparse_core' or k.startswith('sparse_core.')\n"
            "              and not k.startswith('sparse_core.ops')]:\n"
            "        del sys.modules[k]\n"
            "    importlib.import_module(m)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------------------------------- mistakes
def test_optimizers_built_before_prepare_are_refused_at_bind():
    G, D = make()
    opt_G, opt_D = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())   # before prepare
    ctrl = sc.prepare(sc.RGGANConfig(), G=G, D=D)
    with pytest.raises(sc.ConfigError, match=r"opt_G does not train .* after sc\.prepare"):
        ctrl.bind(opt_G=opt_G, opt_D=opt_D)
    ctrl.bind(opt_G=torch.optim.Adam(G.parameters()), opt_D=torch.optim.Adam(D.parameters()))


@pytest.mark.parametrize("call", ["step", "advance"])
def test_step_or_advance_before_bind_is_refused(call):
    G, D = make()
    ctrl = sc.prepare(sc.ReGANConfig(interval=5, warmup=0), G=G, D=D)
    with pytest.raises(sc.ConfigError, match=r"bind\(opt_G=\.\.\.\)"):
        ctrl.advance(4) if call == "advance" else ctrl.optimizer_step("G", torch.optim.SGD(G.parameters(), 0.1))
    assert ctrl.iteration == 0


@pytest.mark.parametrize("call", [lambda c: c.regularizer("Gen"), lambda c: c.sparsity("g"),
                                  lambda c: c.layer_density("DD"), lambda c: c.before_step("gen")])
def test_unknown_network_names_are_refused(call):
    ctrl = sc.prepare(sc.RGGANConfig(), *make())
    with pytest.raises(sc.ConfigError, match="unknown network"):
        call(ctrl)


def test_a_schedule_that_never_prunes_within_the_run_is_reported(capsys):
    import argparse
    p = argparse.ArgumentParser()
    integration.add_argparse_flags(p, interval=15625)
    args = p.parse_args(["--sparse", "regan"])
    integration.controller_from_flags(args, *make(), run_length=3)
    err = capsys.readouterr().err
    assert "--warmup 15625" in err and "3" in err and "never prunes" in err
    integration.controller_from_flags(p.parse_args(["--sparse", "regan", "--interval", "2"]), *make(), run_length=3)
    assert "never prunes" not in capsys.readouterr().err
    ctrl = sc.prepare(sc.ReGANConfig(interval=10, warmup=10), *make())
    with pytest.warns(UserWarning, match="never prunes"):
        ctrl.check_run_length(10)


# ---------------------------------------------------------------------------------------------- metric direction
def test_higher_is_better_metrics_keep_training_sparse_while_they_improve():
    G, D = make()
    ctrl = sc.prepare(sc.RGGANConfig(), G=G, D=D)
    # IS rising every time: improving. Taken as lower-is-better (the old assumption) the weighted mean of the
    # last five (3.7) is below the newest (5), which would switch to dense training.
    assert [ctrl.feed_metric(v, name="is") for v in (1, 2, 3, 4, 5)][-1] == "sparse"
    assert ctrl.feed_metric(1.0, higher_is_better=True) == "dense"     # a collapse of IS: regenerate
    with pytest.raises(sc.ConfigError, match="higher_is_better"):
        ctrl.feed_metric(30.0, name="fid")                              # direction changed mid-run
    G2, D2 = make()
    other = sc.prepare(sc.RGGANConfig(), G=G2, D=D2)
    other.load_state_dict(ctrl.state_dict())
    assert other.metric_higher_is_better is True and other.feed_metric(0.5, higher_is_better=True) == "dense"


def test_an_unknown_metric_needs_its_direction():
    ctrl = sc.prepare(sc.RGGANConfig(), *make())
    with pytest.raises(sc.ConfigError, match="higher_is_better"):
        ctrl.feed_metric(3.0, name="my_score")
    with pytest.raises(sc.ConfigError, match="higher_is_better"):
        ctrl.feed_metric(3.0)
    assert ctrl.metric_history == []
    ctrl.feed_metric(3.0, name="my_score", higher_is_better=True)
    assert sc.prepare(sc.ReGANConfig(), *make()).feed_metric(3.0) is None   # a method that ignores metrics


# ---------------------------------------------------------------------------------------------- loaded state
def _trained(cfg):
    G, D = make()
    ctrl = sc.prepare(cfg, G=G, D=D)
    opt_G, opt_D = torch.optim.Adam(G.parameters(), 1e-2), torch.optim.Adam(D.parameters(), 1e-2)
    ctrl.bind(opt_G=opt_G, opt_D=opt_D)
    for _ in range(3):
        gan_step(G, D, opt_G, opt_D, ctrl)
    return ctrl


def _bad(state, key, value):
    state = dict(state, tensors=dict(state["tensors"]))
    if key.startswith("tensors."):
        state["tensors"][key[len("tensors."):]] = value(state["tensors"][key[len("tensors."):]])
    else:
        state[key] = value
    return state


@pytest.mark.parametrize("cfg, mutate, word", [
    (sc.ReGANConfig(interval=5, warmup=0), lambda s: _bad(s, "tensors.G/fc.weight_mask", lambda t: t * 0.5), "0/1"),
    (sc.ReGANConfig(interval=5, warmup=0), lambda s: _bad(s, "tensors.G/fc.weight_mask", lambda t: t * math.nan),
     "0/1"),
    (sc.ReGANConfig(interval=5, warmup=0),
     lambda s: {**s, "tensors": {k: v * 0 for k, v in s["tensors"].items()}}, "all-zero"),
    (sc.RGGANConfig(), lambda s: _bad(s, "tensors.D/conv1.weight_orig_threshold", lambda t: t * math.inf),
     "non-finite"),
    (sc.RGGANConfig(), lambda s: _bad(s, "tensors.G/fc.weight_threshold", lambda t: t[:2]), "shape"),
    (sc.RGGANConfig(), lambda s: _bad(s, "iteration", -3), "iteration"),
    (sc.RGGANConfig(), lambda s: _bad(s, "nimg", "12"), "nimg"),
    (sc.RGGANConfig(), lambda s: _bad(s, "metric_history", [1.0, math.nan]), "metric_history"),
    (sc.RGGANConfig(), lambda s: _bad(s, "lr_scale", {"G": -1.0}), "lr_scale"),
    (sc.RGGANConfig(), lambda s: _bad(s, "flops", [1, 2]), "flops"),
    (sc.RGGANConfig(), lambda s: _bad(s, "phase", "bogus"), "phase"),
])
def test_bad_controller_state_is_refused_naming_file_and_entry_and_changes_nothing(cfg, mutate, word):
    saved = _trained(cfg).state_dict()
    ctrl = sc.prepare(cfg, *make(1))
    before = {k: v.clone() for k, v in ctrl.state_dict()["tensors"].items()}
    with pytest.raises(sc.ConfigError, match=word) as e:
        ctrl.load_state_dict(mutate(saved), source="run/snap.pt")
    assert str(e.value).startswith("run/snap.pt: ")
    assert ctrl.iteration == 0 and all(torch.equal(before[k], v) for k, v in ctrl.state_dict()["tensors"].items())


def test_a_dense_state_needs_allow_dense():
    ctrl = sc.prepare(sc.ReGANConfig(interval=5, warmup=0), *make())
    with pytest.raises(sc.ConfigError, match="--sparse-from-dense"):
        ctrl.load_state_dict({})
    ctrl.load_state_dict({}, allow_dense=True)
    ctrl.load_state_dict(sc.prepare(sc.NoneConfig(), *make()).state_dict(), allow_dense=True)


# ---------------------------------------------------------------------------------------------- ticket files
def test_ticket_files_with_all_zero_masks_or_nan_values_are_refused(tmp_path):
    G, _ = make()
    cfg = sc.TicketConfig()
    init = {"G": {k: v.detach().clone() for k, v in G.named_parameters()}}
    masks = {"G": {k: torch.ones_like(v) for k, v in tickets.snapshot(G, cfg).items()}}
    good = tmp_path / "good.pt"
    tickets.write_ticket(str(good), init, masks)
    assert set(tickets.read_ticket(str(good))["masks"]["G"]) == set(masks["G"])
    name = next(iter(masks["G"]))
    zero = {"G": {**masks["G"], name: torch.zeros_like(masks["G"][name])}}
    tickets.write_ticket(str(tmp_path / "zero.pt"), init, zero)
    with pytest.raises(sc.ConfigError, match=rf"masks G/{name} prunes every entry"):
        tickets.read_ticket(str(tmp_path / "zero.pt"))
    nan_init = {"G": {k: (v * math.nan if k == "fc.bias" else v) for k, v in init["G"].items()}}
    tickets.write_ticket(str(tmp_path / "nan.pt"), nan_init, masks)
    with pytest.raises(sc.ConfigError, match="init G/fc.bias has non-finite"):
        tickets.read_ticket(str(tmp_path / "nan.pt"))
    with pytest.raises(sc.ConfigError, match=rf"ticket: mask G/{name} prunes every entry"):
        sc.prepare(cfg, G=make()[0], masks=zero)


class NotATensor:
    pass


def test_read_ticket_never_advises_an_unsafe_load(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "sparse_core.ticket", "payload": NotATensor()}, path)
    with pytest.raises(sc.ConfigError) as e:
        tickets.read_ticket(str(path))
    assert str(path) in str(e.value) and "weights_only" not in str(e.value)


# ---------------------------------------------------------------------------------------------- reports
@pytest.mark.parametrize("cfg", [sc.ReGANConfig(interval=5, warmup=0), sc.RGGANConfig()])
def test_non_finite_weights_are_refused_not_reported_as_pruned(cfg):
    ctrl = _trained(cfg)
    with torch.no_grad():
        ctrl.nets["G"].conv.weight.fill_(math.nan)
    for report in (lambda: ctrl.sparsity("G"), lambda: ctrl.stats(), lambda: ctrl.layer_density("G")):
        with pytest.raises(FloatingPointError, match="'conv.weight'.*non-finite"):
            report()


# ---------------------------------------------------------------------------------------------- the probe
class AddOne:
    """A pre-hook deriving `weight = weight_orig + 1`: zeros of weight_orig are not zeros of the forward's weight."""

    def __call__(self, module, inputs):
        module.weight = module.weight_orig + 1


class Fails:
    def __call__(self, module, inputs):
        raise RuntimeError("needs the real input")


@pytest.mark.parametrize("hook, word", [(AddOne(), "do not carry a mask through"), (Fails(), "cannot run")])
@pytest.mark.parametrize("cfg", [sc.ReGANConfig(), sc.RGGANConfig(target="G"), sc.TicketConfig()])
def test_a_layer_whose_forward_the_mask_cannot_reach_is_refused_by_name(hook, word, cfg):
    def net():
        n = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
        w = n[1].weight
        del n[1]._parameters["weight"]
        n[1].register_parameter("weight_orig", nn.Parameter(w.data))
        n[1].register_forward_pre_hook(hook)
        return n
    with pytest.raises(sc.ConfigError, match=rf"layer '1'.*{word}.*exclude=\['1'\]"):
        sc.prepare(cfg, G=net())
    ctrl = sc.prepare(dataclasses_replace(cfg, exclude=("1",)), G=net())
    assert [s.name for s in ctrl.sites["G"]] == ["0.weight"]


def dataclasses_replace(cfg, **kw):
    import dataclasses
    return dataclasses.replace(cfg, **kw)


def test_state_dict_round_trip_through_a_weights_only_file():
    ctrl = _trained(sc.RGGANConfig())
    buf = io.BytesIO()
    torch.save(ctrl.state_dict(), buf)
    buf.seek(0)
    G, D = make(1)
    other = sc.prepare(sc.RGGANConfig(), G=G, D=D)
    G.load_state_dict(ctrl.nets["G"].state_dict())
    D.load_state_dict(ctrl.nets["D"].state_dict())
    other.load_state_dict(torch.load(buf, weights_only=True))
    assert other.sparsity("G") == ctrl.sparsity("G") and other.iteration == 3
