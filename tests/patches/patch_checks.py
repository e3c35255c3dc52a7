"""Checks every vendor patch must pass (imported by the patch tests; not a test module)."""
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def changed_lines(patch: Path) -> int:
    return sum(1 for l in patch.read_text().splitlines() if l[:1] in "+-" and not l.startswith(("+++", "---")))


def assert_applies_with_standard_tools(patch: Path, vendor: str, tmp_path: Path, max_changed: int) -> None:
    """Small enough, and applies to the committed vendor tree with plain `patch -p1` and `git apply`."""
    assert changed_lines(patch) <= max_changed
    copy = tmp_path / vendor
    shutil.copytree(ROOT / "vendor" / vendor, copy, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["patch", "-p1", "--dry-run", "-s", "-i", str(patch)], cwd=copy, check=True)
    subprocess.run(["git", "apply", "--check", str(patch)], cwd=copy, check=True)


def run_train(tree: Path, flags: list, logdir, check: bool = True) -> subprocess.CompletedProcess:
    """`python <tree>/train.py FLAGS --logdir LOGDIR` in its own process (single-threaded); with `check`, a
    non-zero exit fails the test showing the run's last output."""
    import os
    import sys

    r = subprocess.run([sys.executable, str(Path(tree) / "train.py"), *flags, "--logdir", str(logdir)],
                       capture_output=True, text=True, cwd=tree, env=dict(os.environ, OMP_NUM_THREADS="1"))
    if check and r.returncode != 0:
        raise AssertionError(r.stdout[-3000:] + r.stderr[-3000:])
    return r


def read_stats(logdir) -> list:
    """The rows of <logdir>/stats.jsonl (SNGAN-style flat rows)."""
    import json

    return [json.loads(line) for line in (Path(logdir) / "stats.jsonl").read_text().splitlines()]


def assert_progress_lines_match_rows(stdout: str, rows: list) -> None:
    """Every printed progress line (`tick ...`) carries `sparse <method>/<phase>  G x%  D y%  flops z%`, and its
    numbers are the stats row of the same tick (as printed: one decimal of a percentage)."""
    import re

    import pytest

    lines = [line for line in stdout.splitlines() if line.startswith("tick ")]
    assert len(lines) == len(rows) > 0, stdout[-2000:]
    for line, row in zip(lines, rows):
        m = re.search(r"  sparse (\S+)/(\S+)  G (-?\d+\.\d)%  D (-?\d+\.\d)%  flops ([-+]\d+\.\d)%$", line)
        assert m, line
        assert (m[1], m[2]) == (row["sparse/method"], row["sparse/phase"]), line
        assert float(m[3]) == pytest.approx(100 * row["sparse/G/sparsity"], abs=0.05 + 1e-9), line
        assert float(m[4]) == pytest.approx(100 * row["sparse/D/sparsity"], abs=0.05 + 1e-9), line
        saved = 100 * (row["flops/train_total"] / row["flops/train_dense_equiv"] - 1)
        assert float(m[5]) == pytest.approx(saved, abs=0.05 + 1e-9), line
