"""Training runs of an injected tree (SNGAN, a few iterations on digits): with `--sparse regan` and
`--sparse rggan` every tensor of the final snapshot and of the exports equals the run of the tree
patches/sngan.patch makes; with `--sparse none` (the default) every tensor of the unmodified tree's final
snapshot and G_final.pt is reproduced bit for bit.

One vendor runs here, to keep CI short. For the other four, test_inject_vendor.py shows the injected tree is
byte-identical to the patched tree, so their runs are the patched trees' runs, which the patch tests cover
(tests/patches/, tests/progan/), including `--sparse none` equal to the baseline: a patched tree with
`--sparse none` computes what the unmodified tree computes (the existing baseline-parity argument and tests).
"""
import json
import subprocess
import sys

import torch

from inject_checks import ROOT, cli

WORKER = ROOT / "tests" / "patches" / "patched_cli_worker.py"   # runs many train.py command lines in one process
TINY = ["--data", "digits", "--data-ratio", "0.1", "--ch", "8", "--batch_size", "4", "--G_batch_size", "4",
        "--n_dis", "1", "--tick_steps", "1", "--sample_step", "0", "--eval_step", "0", "--device", "cpu",
        "--total_steps", "4"]
METHODS = {"none": [], "regan": ["--sparse", "regan", "--sparsity", "0.3", "--interval", "1", "--warmup", "1"],
           "rggan": ["--sparse", "rggan", "--rg-lambda", "1e-3", "--interval", "1", "--warmup", "1"]}


def tensors(obj, prefix=""):
    """path -> tensor for every tensor in a nested dict / list."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    out = {}
    for key, value in items:
        out.update(tensors(value, f"{prefix}/{key}"))
    return out


def load(path):
    return tensors(torch.load(path, weights_only=True))


def same(a: dict, b: dict) -> list:
    """Paths whose tensors differ (dtype, shape or any bit)."""
    return [k for k in a if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape or not torch.equal(a[k], b[k])]


def test_injected_runs_equal_patched_and_baseline_runs(patched, tmp_path):
    injected = tmp_path / "injected"
    code, _, err = cli("inject", ROOT / "vendor" / "sngan", "--out", injected)
    assert code == 0, err
    jobs = [{"tree": str(ROOT / "vendor" / "sngan"), "argvs": [[*TINY, "--logdir", str(tmp_path / "base")]]},
            {"tree": str(injected), "argvs": [[*TINY, *flags, "--logdir", str(tmp_path / f"inj-{m}")]
                                              for m, flags in METHODS.items()]},
            {"tree": str(patched("sngan")), "argvs": [[*TINY, *METHODS[m], "--logdir", str(tmp_path / f"pat-{m}")]
                                                      for m in ("regan", "rggan")]}]
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    subprocess.run([sys.executable, str(WORKER), str(tmp_path / "jobs.json"), str(tmp_path / "result.json")],
                   check=True, cwd=tmp_path)
    results = json.loads((tmp_path / "result.json").read_text())
    assert [r["code"] for job in results for r in job] == [0] * 6, results
    for method in ("regan", "rggan"):
        for name in ("last.pt", "G_final.pt", "G_sparse.pt", "G_dense.pt"):
            a, b = load(tmp_path / f"inj-{method}" / name), load(tmp_path / f"pat-{method}" / name)
            assert a.keys() == b.keys() and len(a) > 0 and same(a, b) == [], (method, name)
        state = torch.load(tmp_path / f"inj-{method}" / "last.pt", weights_only=True)["sparse"]
        assert state["config"]["method"] == method and state["iteration"] == 4    # the method ran every step
    for name in ("last.pt", "G_final.pt"):
        base, none = load(tmp_path / "base" / name), load(tmp_path / "inj-none" / name)
        assert set(none) - set(base) <= {k for k in none if k.startswith("/sparse/")}
        assert set(base) <= set(none) and same(base, none) == [], name
    # the sparse runs did train differently from the dense one (the comparison above can fail)
    assert same(load(tmp_path / "base" / "G_final.pt"), load(tmp_path / "inj-regan" / "G_final.pt")) != []
