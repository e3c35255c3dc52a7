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
