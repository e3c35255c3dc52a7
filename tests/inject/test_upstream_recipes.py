"""`sparse-core inject` on checkouts shaped like the five upstream codebases (fixtures of our own under
fixtures/<codebase>_upstream: upstream's file, function and variable names and call structure, none of its text).

References independent of the engine: hand counts of each hook line per codebase, GNU patch applying the printed
diff, the fixtures' own comment lines, the unmodified fixture's run (for --sparse none) and hand counts of the
iterations each runnable fixture does (for --sparse rggan).
"""
import ast
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sparse_core.inject.engine import InjectError, recognise

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ROOT = Path(__file__).resolve().parents[2]
CODEBASES = ("stylegan2_ada", "sngan", "fastgan", "autogan", "progan")
VARIANT = {"stylegan2_ada": "NVlabs stylegan2-ada-pytorch", "sngan": "pytorch-gan-collections sngan.py",
           "fastgan": "FastGAN-pytorch", "autogan": "VITA-Group AutoGAN", "progan": "Re-GAN ProGAN folder"}

# Hand counts: each hook line's distinctive text and how often the injected tree holds it.
EXPECTED = {
    "stylegan2_ada": {"@sparse.click_options(": 1, "sparse.pop_flags(": 1, ".sparse_kwargs = sparse_kwargs": 1,
                      "sparse_kwargs           = {},": 1, "sparse.controller_from_flags(": 1, "ctrl.bind(": 2,
                      "sparse_hooks.load_resume_state(": 1, ".extra_loss_fn = ctrl.regularizer": 1,
                      "ctrl.measure_flops(": 2, "ctrl.optimizer_step(": 1, "ctrl.after_ema()": 1,
                      "ctrl.advance(": 1, "['sparse'] = ctrl.state_dict()": 1, "ctrl.feed_metric(": 1,
                      ".update(ctrl.stats())": 1, "sparse.export_generators(": 1,
                      "self.extra_loss_fn = lambda name: 0": 1, "self.extra_loss_fn('G')": 1,
                      "self.extra_loss_fn('D')": 1, "run_desc += sparse.run_suffix(sparse_kwargs)": 1,
                      "fields += [ctrl.progress()]": 1},
    "sngan": {"sparse_absl.define_flags(": 1, "sparse.controller_from_flags(": 1, "ctrl.bind(": 1,
              "ctrl.measure_flops(": 2, "ctrl.regularizer('D')": 1, "ctrl.regularizer('G')": 1,
              "ctrl.optimizer_step(": 2, "ctrl.advance(": 1, "'sparse': ctrl.state_dict()": 1,
              "sparse_hooks.log_scalars(": 1, "ctrl.feed_metric(": 1, "sparse.export_generators(": 1,
              "ctrl.observe_real(real)": 1},
    "fastgan": {"sparse_hooks.add_argparse_flags(": 1, "sparse.controller_from_flags(": 1,
                "sparse_hooks.one_device_only(": 1, "ctrl.bind(": 2, "ctrl.measure_flops(": 2,
                "sparse_hooks.load_resume_state(": 1, "sparse_hooks.backward_regularizer(ctrl, 'D')": 1,
                "ctrl.regularizer('G')": 1, "ctrl.optimizer_step(": 2, "ctrl.after_ema()": 1, "ctrl.advance(": 1,
                "sparse_hooks.summary(ctrl.stats())": 1, "'sparse': ctrl.state_dict()": 1,
                "sparse.export_generators(": 1, "ctrl.observe_real(real_image)": 1},
    "autogan": {"sparse_hooks.add_argparse_flags(": 1, "sparse.controller_from_flags(": 1, "ctrl.bind(": 2,
                "ctrl.measure_flops(": 2, "args.lr_decay and ctrl.targets": 1, "sparse_hooks.load_resume_state(": 1,
                "sparse_ctrl=ctrl": 1, "sparse_hooks.log_scalars(": 1, "ctrl.feed_metric(": 1,
                "\"sparse\": ctrl.state_dict()": 1, "sparse.export_generators(": 1, "sparse_ctrl):": 1,
                "sparse_ctrl.regularizer('D')": 1, "sparse_ctrl.regularizer('G')": 1,
                "sparse_ctrl.optimizer_step(": 2, "sparse_ctrl.after_ema()": 1, "sparse_ctrl.advance(": 1,
                "sparse_ctrl.observe_real(real_imgs)": 1},
    "progan": {"sparse_hooks.add_argparse_flags(": 1, "sparse.controller_from_flags(": 1,
               "args.regan and ctrl.targets": 1, "ctrl.bind(": 1, "ctrl.pause(": 1, "ctrl.measure_flops(": 2,
               "sparse_ctrl=ctrl": 1, "sparse.export_generators(": 1, "opt_gen, sparse_ctrl)": 1,
               "sparse_ctrl.regularizer('D')": 1, "sparse_ctrl.regularizer('G')": 1,
               "sparse_ctrl.optimizer_step(": 2, "sparse_ctrl.advance(": 1,
               "sparse_hooks.summary(sparse_ctrl.stats())": 1, "sparse_ctrl.observe_real(real)": 1},
}
# Hand counts of the lines the diff removes (the statements a hook line replaces) per codebase.
REMOVED = {"stylegan2_ada": 3, "sngan": 4, "fastgan": 4, "autogan": 6, "progan": 4}
# (file, a line's text) of one hook point each: removed -> "missing", duplicated -> "ambiguous".
MUTATE = {"stylegan2_ada": ("training/training_loop.py", "phase.opt.step()", "optimizer step"),
          "sngan": ("sngan.py", "optim_D.step()", "D optimizer step"),
          "fastgan": ("train.py", "optimizerG.step()", "G optimizer step"),
          "autogan": ("functions.py", "gen_optimizer.step()", "G optimizer step"),
          "progan": ("main.py", "opt_critic.step()", "D optimizer step")}


def fixture(codebase: str) -> Path:
    return FIXTURES / f"{codebase}_upstream"


def copy_fixture(codebase: str, dest: Path) -> Path:
    shutil.copytree(fixture(codebase), dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def tree(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


class Ran:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def cli(*args):
    """`sparse-core inject ARGS` in this process (the command's own entry point; stdout, stderr captured)."""
    from sparse_core.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["inject", *map(str, args)])
    return Ran(code, out.getvalue(), err.getvalue())


@pytest.mark.parametrize("codebase", CODEBASES)
def test_fixture_is_recognised_as_its_upstream_codebase(codebase):
    recipe = recognise(fixture(codebase), "auto")
    assert (recipe.codebase, recipe.variant) == (codebase, VARIANT[codebase])


def test_auto_refuses_an_unknown_and_an_ambiguous_tree_naming_candidates(tmp_path):
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "train.py").write_text("def train(args):\n    return args\n")
    with pytest.raises(InjectError, match=r"no codebase recognised \(closest:"):
        recognise(unknown, "auto")
    both = tmp_path / "both"
    copy_fixture("sngan", both)
    for p in fixture("fastgan").iterdir():     # a FastGAN checkout and an SNGAN one in the same folder
        (shutil.copytree if p.is_dir() else shutil.copy)(p, both / p.name)
    with pytest.raises(InjectError) as err:
        recognise(both, "auto")
    assert "ambiguous" in str(err.value)
    assert VARIANT["sngan"] in str(err.value) and VARIANT["fastgan"] in str(err.value)
    r = cli(both, "--check")
    assert r.returncode == 2 and "ambiguous" in r.stderr


@pytest.fixture(scope="module")
def injected(tmp_path_factory):
    """codebase -> (injected copy, the diff `sparse-core inject --out` printed), each computed once."""
    base, cache = tmp_path_factory.mktemp("upstream_injected"), {}

    def get(codebase):
        if codebase not in cache:
            out = base / codebase
            r = cli(fixture(codebase), "--out", out)
            assert r.returncode == 0, r.stderr
            cache[codebase] = (out, r.stdout)
        return cache[codebase]
    return get


@pytest.mark.parametrize("codebase", CODEBASES)
def test_check_finds_every_hook_point_and_the_injected_tree_holds_each_hook_once(codebase, injected, tmp_path):
    r = cli(fixture(codebase), "--check")
    assert r.returncode == 0, r.stderr
    recipe = recognise(fixture(codebase))
    for hook in recipe.hooks:   # --check names each hook point with its place
        assert re.search(rf"^{re.escape(hook.name)}: found at {re.escape(hook.file)}:\d+$", r.stderr, re.M), hook.name

    out, diff = injected(codebase)
    new = {rel: text.decode() for rel, text in tree(out).items() if rel.endswith(".py")}
    for rel, text in new.items():
        ast.parse(text, rel)
    joined = "\n".join(new.values())
    counts = {snippet: joined.count(snippet) for snippet in EXPECTED[codebase]}
    assert counts == EXPECTED[codebase]

    # the printed diff is the change: GNU patch applies it to a copy and gives the same tree
    (tmp_path / "inject.diff").write_text(diff)
    copy = copy_fixture(codebase, tmp_path / "gnu")
    subprocess.run(["patch", "-p1", "-s", "-i", str(tmp_path / "inject.diff")], cwd=copy, check=True)
    assert tree(copy) == tree(out)

    # outside the inserted lines the files are unchanged: only the replaced statements leave, every comment stays
    removed = [l for l in diff.splitlines() if l.startswith("-") and not l.startswith("---")]
    assert len(removed) == REMOVED[codebase]
    for rel, text in new.items():
        kept = iter(text.splitlines())
        for line in (fixture(codebase) / rel).read_text().splitlines():
            if line.lstrip().startswith("#"):
                assert any(k == line for k in kept), f"{rel}: comment line lost or moved: {line!r}"


@pytest.mark.parametrize("codebase", CODEBASES)
def test_second_run_says_already_injected_and_writes_nothing(codebase, injected, tmp_path):
    out = shutil.copytree(injected(codebase)[0], tmp_path / "again")
    before = tree(out)
    r = cli(out, "--in-place")
    assert r.returncode == 1 and "already injected" in r.stderr
    assert tree(out) == before


@pytest.mark.parametrize("codebase", CODEBASES)
@pytest.mark.parametrize("how", ["removed", "duplicated"])
def test_a_tree_with_a_hook_point_removed_or_duplicated_is_refused_naming_it(codebase, how, tmp_path):
    rel, line_text, hook_name = MUTATE[codebase]
    root = copy_fixture(codebase, tmp_path / "fork")
    path = root / rel
    lines = path.read_text().splitlines(keepends=True)
    at = [k for k, l in enumerate(lines) if l.strip() == line_text]
    assert len(at) == 1
    lines[at[0]:at[0] + 1] = [] if how == "removed" else [lines[at[0]], lines[at[0]]]
    path.write_text("".join(lines))
    before = tree(root)
    r = cli(root, "--in-place")
    assert r.returncode == 2
    status = "missing" if how == "removed" else "ambiguous"
    assert re.search(rf"{re.escape(hook_name)}: {status} in {re.escape(rel)}", r.stderr), r.stderr
    assert "looked for" in r.stderr and "nothing was written" in r.stderr
    assert tree(root) == before


def test_a_fork_that_moved_things_is_refused_with_each_missing_hook_point(tmp_path):
    """A checkout whose metric call and EMA loop were renamed: every such hook point is listed, nothing written."""
    root = copy_fixture("autogan", tmp_path / "fork")
    text = (root / "train.py").read_text().replace("= validate(", "= evaluate(")
    (root / "train.py").write_text(text)
    funcs = (root / "functions.py").read_text().replace("gen_avg_param):", "ema_params):")
    (root / "functions.py").write_text(funcs)
    r = cli(root, "--in-place")
    assert r.returncode == 2
    assert "metric evaluation: missing in train.py" in r.stderr
    assert "EMA update: missing in functions.py" in r.stderr
    assert (root / "train.py").read_text() == text


# ---------------------------------------------------------------------------------------------- the runnable ones
RUNS = {  # script, flags, how many ctrl.advance() calls a run makes (hand count from the fixture's settings)
    "sngan": ("sngan.py", ["--logdir", "{out}/run"], 2),                    # total_steps 2
    "fastgan": ("train.py", ["--output_path", "{out}/run"], 3),             # iterations 0, 1, 2
    "autogan": ("train.py", [], 8),                                         # 4 epochs x 2 batches of D steps
    "progan": ("main.py", [], 2),                                           # final stage only: 2 batches
}

# Runs every job in ONE process (torch is imported once): each job as `python SCRIPT ARGS` would run it (its
# folder first on sys.path, its folder as cwd, __main__), with the fixture's own modules, absl's flags and the
# RNGs reset in between, so that each run sees what a fresh process sees.
DRIVER = r"""
import contextlib, io, json, os, random, runpy, shutil, sys, traceback
import numpy as np, torch
from absl import app, flags
base_flags = set(flags.FLAGS)
results = []
for folder, script, argv in json.loads(sys.argv[1]):
    if script == "COPY":   # a copy of a finished run's folder, for a job that continues it
        shutil.copytree(folder, argv[0])
        results.append({"code": 0, "stdout": ""})
        continue
    names = {p[:-3] if p.endswith(".py") else p for p in os.listdir(folder)}
    for m in [m for m in sys.modules if m.split(".")[0] in names]:
        del sys.modules[m]
    for f in set(flags.FLAGS) - base_flags:
        delattr(flags.FLAGS, f)
    flags.FLAGS.unparse_flags()
    random.seed(0); np.random.seed(0); torch.manual_seed(0)
    os.chdir(folder); sys.argv = [script, *argv]; sys.path.insert(0, folder)
    out, code = io.StringIO(), 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        code, _ = 1, out.write(traceback.format_exc())
    sys.path.remove(folder)
    results.append({"code": code, "stdout": out.getvalue()})
print("RESULTS" + json.dumps(results))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory, injected):
    """The injected fixtures run with --sparse rggan, and --sparse none next to the unmodified fixture."""
    base = tmp_path_factory.mktemp("upstream_runs")
    jobs, where = [], {}
    for codebase, (script, flags, _) in RUNS.items():
        for kind in ("rggan", "none", "plain") if codebase != "progan" else ("rggan",):
            folder = base / f"{codebase}_{kind}" / "src"
            shutil.copytree(fixture(codebase) if kind == "plain" else injected(codebase)[0], folder,
                            ignore=shutil.ignore_patterns("__pycache__"))
            extra = [] if kind == "plain" else ["--sparse", kind]
            where[codebase, kind] = (len(jobs), folder)
            jobs.append((str(folder), script, [a.format(out=folder.parent) for a in flags] + extra))
    # AutoGAN resumed from the rggan run's checkpoint: 2 more epochs (max_epoch 3 x n_critic 2 = 6, from 4); then
    # a resume with other settings (--sparse none), which must be refused
    folder = base / "autogan_resume" / "src"
    jobs.append((str(where["autogan", "rggan"][1]), "COPY", [str(folder)]))
    for kind, argv in (("resume", ["--sparse", "rggan", "--max_epoch", "3"]), ("refused", ["--max_epoch", "4"])):
        where["autogan", kind] = (len(jobs), folder)
        jobs.append((str(folder), "train.py", argv + ["--load_path", "logs/fixture"]))
    # FastGAN from its all_2.pth to iteration 4 (iterations 2, 3, 4: three more advances)
    folder = base / "fastgan_resume" / "src"
    jobs.append((str(where["fastgan", "rggan"][1].parent), "COPY", [str(folder.parent)]))
    where["fastgan", "resume"] = (len(jobs), folder)
    ckpt = folder.parent / "run/train_results/test1/models/all_2.pth"
    jobs.append((str(folder), "train.py", ["--output_path", str(folder.parent / "run"), "--sparse", "rggan",
                                           "--ckpt", str(ckpt), "--iter", "4"]))
    r = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(jobs)], capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}, timeout=600)
    assert r.returncode == 0 and "RESULTS" in r.stdout, r.stderr[-3000:]
    results = json.loads(r.stdout.split("RESULTS", 1)[1])
    return {key: (results[k], folder) for key, (k, folder) in where.items()}


def written(folder: Path, codebase: str) -> Path:
    """The checkout's own checkpoint of the run (the last one)."""
    run = folder.parent / "run"
    return {"sngan": run / "model.pt", "fastgan": run / "train_results/test1/models/all_2.pth",
            "autogan": folder / "logs/fixture/Model/checkpoint.pth"}[codebase]


def tensors(path: Path) -> dict:
    """Every tensor of a checkpoint by its path of keys, the sparse_core entry left out."""
    flat = {}

    def walk(prefix, v):
        if isinstance(v, torch.Tensor):
            flat[prefix] = v
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}/{k}", x)
        elif isinstance(v, (list, tuple)):
            for k, x in enumerate(v):
                walk(f"{prefix}/{k}", x)
    walk("", {k: v for k, v in torch.load(path, weights_only=True).items() if k != "sparse"})
    return flat


@pytest.mark.parametrize("codebase", ["sngan", "fastgan", "autogan"])
def test_sparse_none_trains_exactly_as_the_unmodified_fixture(codebase, runs):
    (plain, plain_dir), (none, none_dir) = runs[codebase, "plain"], runs[codebase, "none"]
    assert plain["code"] == 0 and none["code"] == 0, (plain["stdout"][-2000:], none["stdout"][-2000:])
    a, b = tensors(written(plain_dir, codebase)), tensors(written(none_dir, codebase))
    assert a.keys() == b.keys() and a
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert torch.load(written(none_dir, codebase), weights_only=True)["sparse"]["config"]["method"] == "none"


@pytest.mark.parametrize("codebase", ["sngan", "fastgan", "autogan", "progan"])
def test_rggan_runs_through_the_injected_hooks(codebase, runs):
    result, folder = runs[codebase, "rggan"]
    assert result["code"] == 0, result["stdout"][-3000:]
    exported = {"sngan": folder.parent / "run", "fastgan": folder.parent / "run/train_results/test1/models",
                "autogan": folder / "logs/fixture/Model", "progan": folder}[codebase]
    for kind in ("sparse", "dense"):   # the export hook ran and wrote loadable generators
        g = torch.load(exported / f"G_{kind}.pt", weights_only=True)
        assert g["kind"] == kind and g["method"] == "rggan"
    if codebase == "progan":           # no checkpoint upstream: the printed summary (every 50 batches: batch 0)
        assert "sparse: rggan paused" in result["stdout"]                      # the 4x4 stage
        assert re.search(r"sparse: rggan \w+  iteration 1 ", result["stdout"])  # the final stage's first batch
        return
    state = torch.load(written(folder, codebase), weights_only=True)["sparse"]
    assert state["config"]["method"] == "rggan" and state["iteration"] == RUNS[codebase][2]
    assert sorted(state["flops"]["per_sample"]) == ["D", "G"]       # both networks measured
    assert 0 < state["flops"]["total"] <= state["flops"]["dense_equiv"]  # the FLOP hooks charged the passes
    if codebase in ("sngan", "autogan"):   # the metric hook fed the fixture's FID stand-in
        assert state["metric_history"] and state["metric_higher_is_better"] is False


def test_resume_continues_the_schedule_and_refuses_other_settings(runs):
    """AutoGAN shape: `--load_path` restores the controller's state from Model/checkpoint.pth (its iteration
    count goes on from 8 to 8 + 4, hand count); resuming it with --sparse none is one message, exit 2."""
    (resumed, folder), (refused, _) = runs["autogan", "resume"], runs["autogan", "refused"]
    assert resumed["code"] == 0, resumed["stdout"][-3000:]
    state = torch.load(written(folder, "autogan"), weights_only=True)
    assert state["epoch"] == 6 and state["sparse"]["iteration"] == 12
    assert refused["code"] == 2, refused["stdout"][-3000:]
    assert re.search(r"error: resume: logs/fixture: the snapshot was written with different sparse-training "
                     r"settings; method: saved 'rggan', given 'none'", refused["stdout"]), refused["stdout"][-2000:]


def test_fastgan_ckpt_resume_continues_the_schedule(runs):
    """FastGAN shape: `--ckpt all_2.pth` restores the controller; 3 + 3 iterations (hand count) in all_4.pth."""
    result, folder = runs["fastgan", "resume"]
    assert result["code"] == 0, result["stdout"][-3000:]
    state = torch.load(folder.parent / "run/train_results/test1/models/all_4.pth", weights_only=True)["sparse"]
    assert state["config"]["method"] == "rggan" and state["iteration"] == 6


def test_absl_flags_have_the_same_spellings_types_and_errors():
    from absl import app, flags

    import sparse_core.inject.flags_absl as sparse_absl
    from sparse_core import integration

    fv = flags.FlagValues()
    sparse_absl.define_flags(interval=123, flag_values=fv)
    fv(["prog", "--sparse", "regan", "--sparse-exclude", "torgb", "--sparsity", "0.5"])
    got = sparse_absl.values(fv)
    assert set(got) == {f.dest for f in integration.all_flags()}
    assert (got["sparse"], got["sparse_exclude"], got["sparsity"], got["interval"]) == ("regan", "torgb", 0.5, 123)
    fv2 = flags.FlagValues()
    sparse_absl.define_flags(interval=123, flag_values=fv2)
    with pytest.raises(flags.IllegalFlagValueError, match="--sparse"):
        fv2(["prog", "--sparse", "bogus"])
    with pytest.raises(app.UsageError) as err:
        sparse_absl.usage_error("sparse training: bad")
    assert err.value.exitcode == 2


def test_shared_argparse_flag_and_refused_clash():
    import argparse

    import sparse_core.inject.hooks as sparse_hooks

    p = argparse.ArgumentParser()
    p.add_argument("--sparsity", type=float, default=0.3)    # the official Re-GAN scripts' flag: same setting
    sparse_hooks.add_argparse_flags(p, interval=10)
    args = p.parse_args(["--sparse", "regan", "--sparsity", "0.5"])
    assert (args.sparse, args.sparsity, args.interval) == ("regan", 0.5, 10)
    clash = argparse.ArgumentParser()
    clash.add_argument("--interval", dest="log_every", type=int)
    with pytest.raises(SystemExit) as err:
        sparse_hooks.add_argparse_flags(clash, interval=10)
    assert err.value.code == 2
