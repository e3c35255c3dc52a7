"""bench/gpu_check.sh's logic, without a GPU (issue 20): it runs from a plain copy of the checkout with no .venv and
a `python3` that has torch but not this project, puts the checkout on the import path, keeps its step limits
within the budget, and writes its results to --out; exit codes 0 / 1 / 2 as documented."""
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = "bench/gpu_check.sh"
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A plain copy of the checkout: no .venv, no git metadata, no installed project."""
    dst = tmp_path_factory.mktemp("plain") / "checkout"
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.pyc", "runs", "*.so", "build", "*.egg-info")
    shutil.copytree(ROOT, dst, ignore=ignore)
    return dst


@pytest.fixture(scope="module")
def fake_python(tmp_path_factory):
    """A `python3` that has torch (this interpreter's site-packages) but not the project: started with -S, so no
    .pth file (the editable install's finder) is read. It logs how it was called."""
    bindir = tmp_path_factory.mktemp("fakebin")
    site = next(p for p in sys.path if p.endswith("site-packages") and Path(p, "torch").is_dir())
    log = bindir / "calls.log"
    script = bindir / "python3"
    script.write_text(f"#!/bin/sh\necho \"$*\" >> '{log}'\n"
                      f"PYTHONPATH=\"${{PYTHONPATH:+$PYTHONPATH:}}{site}\" exec '{sys.executable}' -S \"$@\"\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bindir, log


def run(checkout, args, path, extra_env=None, timeout=120):
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/tmp"), "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
           "CUDA_VISIBLE_DEVICES": ""}
    env.update(extra_env or {})
    return subprocess.run(["bash", SCRIPT, *args], cwd=checkout, env=env, capture_output=True, text=True,
                          timeout=timeout)


def plan_rows(text):
    return [(m[1], int(m[2]), m[3]) for m in re.finditer(r"^\| ([a-z0-9-]+) \| (\d+) \| ([a-z0-9-]+) \|$", text, re.M)]


def test_plan_fits_the_budget_and_orders_steps(checkout):
    r = run(checkout, ["--plan"], BASE_PATH)
    assert r.returncode == 0, r.stderr
    rows = plan_rows(r.stdout)
    names = [n for n, _, _ in rows]
    assert names[:3] == ["build", "cuda-tests", "self-check"]
    assert names.index("kernels-fp32") < names.index("kernels-bf16") < names.index("kernels-tf32")
    assert names.index("stylegan2-regan") < names.index("memcheck") < names.index("racecheck") < names.index("ddp-masks")
    one_gpu = sum(limit for _, limit, when in rows if when != "2gpu")
    reserve = int(re.search(r"reserve (\d+) s", r.stdout)[1])
    assert f"steps {one_gpu} s + reserve {reserve} s = {one_gpu + reserve} s of a 480 s budget" in r.stdout
    assert one_gpu + reserve <= 480                        # the whole check fits 8 minutes on one GPU
    # the arithmetic is enforced: one second less than the plan needs is refused before anything runs
    exact = run(checkout, ["--plan"], BASE_PATH, {"GPU_CHECK_BUDGET_S": str(one_gpu + reserve)})
    short = run(checkout, ["--plan"], BASE_PATH, {"GPU_CHECK_BUDGET_S": str(one_gpu + reserve - 1)})
    assert exact.returncode == 0 and short.returncode == 2
    assert f"the plan needs {one_gpu + reserve} s" in short.stderr


def test_bad_arguments_exit_2_with_one_message(checkout, tmp_path):
    r = run(checkout, ["--out", str(tmp_path / "o"), "--frobnicate"], BASE_PATH)
    assert r.returncode == 2 and r.stderr.count("gpu_check:") == 1 and "--frobnicate" in r.stderr
    assert not (tmp_path / "o").exists()


def test_no_interpreter_with_torch_is_exit_2(checkout, tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    for tool in ("bash", "date", "mkdir", "mktemp", "rm", "cat", "dirname", "sed", "grep"):
        os.symlink(shutil.which(tool), empty / tool)
    r = run(checkout, ["--out", str(tmp_path / "o")], str(empty))
    assert r.returncode == 2 and "no Python with torch found" in r.stderr
    assert "NOT RUN" in (tmp_path / "o" / "summary.md").read_text()
    r = run(checkout, ["--out", str(tmp_path / "o2")], BASE_PATH, {"PYTHON": str(empty / "cat")})
    assert r.returncode == 2 and f"$PYTHON={empty / 'cat'} has no torch" in r.stderr


def test_plain_checkout_without_gpu_finds_python3_and_imports_the_checkout(checkout, fake_python, tmp_path):
    bindir, log = fake_python
    # the interpreter alone cannot import the project: only the script's PYTHONPATH makes it importable
    alone = subprocess.run([str(bindir / "python3"), "-c", "import sparse_core"], cwd=tmp_path, capture_output=True,
                           text=True, env={"PATH": BASE_PATH})
    assert alone.returncode != 0 and "No module named 'sparse_core'" in alone.stderr
    out = tmp_path / "out"
    r = run(checkout, ["--out", str(out)], f"{bindir}:{BASE_PATH}")
    assert r.returncode == 2 and "no CUDA GPU visible to torch" in r.stderr, r.stdout + r.stderr
    env = (out / "env.txt").read_text()
    assert f"import sparse_core: {checkout / 'sparse_core'}" in env
    assert f"import vendor: {checkout / 'vendor'}" in env
    assert f"extension sources: {checkout / 'cuda'}" in env
    assert "gpus: 0" in env and re.search(r"^nvcc: ", env, re.M) and re.search(r"^compute-sanitizer: ", env, re.M)
    assert "NOT RUN: no CUDA GPU" in (out / "summary.md").read_text()
    assert log.read_text()   # the python3 on PATH was the one used


def test_dry_run_goes_through_every_step_and_fills_out(checkout, fake_python, tmp_path):
    bindir, _ = fake_python
    results_before = sorted(p.name for p in (checkout / "bench" / "results").iterdir())
    out = tmp_path / "out"
    r = run(checkout, ["--dry-run"], f"{bindir}:{BASE_PATH}", {"OUT": str(out)})   # $OUT is the default --out
    assert r.returncode == 0, r.stdout + r.stderr
    files = sorted(p.name for p in out.iterdir())
    assert files == ["env.txt", "gpu-check.tar.gz", "results-gpu.md", "summary.md"]   # a handful, <= 8
    summary = (out / "summary.md").read_text()
    steps = re.findall(r"^\| ([a-z0-9-]+) \| dry run \|", summary, re.M)
    assert steps == ["build", "cuda-tests", "self-check", "kernels-fp32", "overhead-fp32", "kernels-bf16",
                     "overhead-bf16", "kernels-tf32", "overhead-tf32", "stylegan2-rggan", "stylegan2-regan",
                     "memcheck", "racecheck"]
    assert "| ddp-masks | not run: 1 GPU (needs two) |" in summary
    with tarfile.open(out / "gpu-check.tar.gz") as tar:
        logs = {Path(m.name).name: tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile()}
    assert "tests/ops/test_native_cuda.py" in logs["cuda-tests.log"]          # the CUDA tests alone
    assert "PYTORCH_NO_CUDA_MEMORY_CACHING=1" in logs["memcheck.log"] and "gpu_sanitize.py all" in logs["memcheck.log"]
    assert "racecheck" in logs["racecheck.log"] and "gpu_sanitize.py modconv" in logs["racecheck.log"]
    assert "--tf32" in logs["overhead-tf32.log"] and "--amp bf16" in logs["overhead-bf16.log"]
    assert "gpu-check-gpu.md" in logs
    assert sorted(p.name for p in (checkout / "bench" / "results").iterdir()) == results_before   # dry: untouched
    # a failed step: exit 1, the failure named in the summary, and the later steps still run
    out2 = tmp_path / "out2"
    r = run(checkout, ["--dry-run", "--out", str(out2)], f"{bindir}:{BASE_PATH}", {"GPU_CHECK_DRY_FAIL": "self-check"})
    assert r.returncode == 1, r.stdout + r.stderr
    summary = (out2 / "summary.md").read_text()
    assert "| self-check | FAIL (exit 3) |" in summary and "| racecheck | dry run |" in summary


def test_sanitizer_workload_runs_every_kernel_natively_on_the_cpu_build():
    """bench/gpu_sanitize.py (what memcheck / racecheck run on the GPU) on the CPU build: every op family it
    calls is served by the native kernels, so a sanitizer run over it examines the kernels, not the reference."""
    r = subprocess.run([sys.executable, "bench/gpu_sanitize.py", "all", "--device", "cpu"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "{'threshold_masked_weight': 1.0, 'modulated_conv2d': 1.0}" in r.stdout
