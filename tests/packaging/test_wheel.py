"""Packaging (issue 8 item 9): the wheel ships sparse_core with its extension sources and no generic top-level
package; the editable build (the documented install) still maps vendor.common for vendor trees anywhere."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "sparse_core" / "ops" / "csrc"


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory):
    """The files a build reads, copied out so the build leaves nothing in the checkout (no build/, no egg-info)."""
    dst = tmp_path_factory.mktemp("src")
    shutil.copy(ROOT / "setup.py", dst)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so")
    shutil.copytree(ROOT / "sparse_core", dst / "sparse_core", ignore=ignore)
    shutil.copytree(ROOT / "vendor", dst / "vendor", ignore=ignore)
    return dst


def _wheel_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as z:
        return z.namelist()


def test_wheel_ships_sparse_core_and_its_sources_only(source_copy, tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path), str(source_copy)], capture_output=True, text=True,
                       env=dict(os.environ, PIP_NO_INPUT="1"))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (wheel,) = tmp_path.glob("sparse_gan-*.whl")
    names = _wheel_names(wheel)
    tops = {n.split("/")[0] for n in names}
    assert tops == {"sparse_core", "sparse_gan-0.1.0.dist-info"}, tops     # no `vendor`, no other generic name
    shipped = {n.split("/")[-1] for n in names if n.startswith("sparse_core/ops/csrc/")}
    assert shipped == {p.name for p in CSRC.iterdir() if p.suffix in (".cpp", ".cu", ".h", ".md")}
    # every source the loader compiles is in the wheel
    from sparse_core.ops import loader
    needed = {n for kind in loader.SOURCES for n in loader.SOURCES[kind] + loader.HEADERS[kind]}
    assert needed <= shipped
    for module in ("sparse_core/cli.py", "sparse_core/ops/loader.py", "sparse_core/ops/build/__main__.py"):
        assert module in names
    with zipfile.ZipFile(wheel) as z:
        entry = z.read("sparse_gan-0.1.0.dist-info/entry_points.txt").decode()
    assert "sparse-core = sparse_core.cli:main" in entry


def test_editable_build_still_maps_vendor_common(source_copy, tmp_path):
    code = ("import sys; from setuptools import build_meta as b; "
            f"print(b.build_editable({str(tmp_path)!r}))")
    r = subprocess.run([sys.executable, "-c", code], cwd=source_copy, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (wheel,) = tmp_path.glob("sparse_gan-*.whl")
    with zipfile.ZipFile(wheel) as z:
        finder = next(z.read(n).decode() for n in z.namelist() if n.endswith("_finder.py"))
    assert f"'vendor': '{source_copy / 'vendor'}'" in finder and "'sparse_core'" in finder
