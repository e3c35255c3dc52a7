"""Packaging (issue 8 item 9, issue 20 item 3): the wheel ships sparse_core with its extension sources (the
checkout's top-level cuda/ folder, mapped into the package as sparse_core/ops/csrc/) and no generic top-level
package, and an installed copy builds from its own sources; the editable build (the documented install) still
maps vendor.common for vendor trees anywhere."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CUDA_DIR = ROOT / "cuda"


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory):
    """The files a build reads, copied out so the build leaves nothing in the checkout (no build/, no egg-info)."""
    dst = tmp_path_factory.mktemp("src")
    shutil.copy(ROOT / "setup.py", dst)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so")
    shutil.copytree(ROOT / "sparse_core", dst / "sparse_core", ignore=ignore)
    shutil.copytree(ROOT / "vendor", dst / "vendor", ignore=ignore)
    shutil.copytree(ROOT / "cuda", dst / "cuda", ignore=ignore)
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
    assert shipped == {p.name for p in CUDA_DIR.iterdir() if p.suffix in (".cpp", ".cu", ".h", ".md")}
    assert not any(n.startswith("cuda/") for n in names)
    # every source the loader compiles is in the wheel
    from sparse_core.ops import loader
    needed = {n for kind in loader.SOURCES for n in loader.SOURCES[kind] + loader.HEADERS[kind]}
    assert needed <= shipped
    for module in ("sparse_core/cli.py", "sparse_core/ops/loader.py", "sparse_core/ops/build/__main__.py"):
        assert module in names
    with zipfile.ZipFile(wheel) as z:
        entry = z.read("sparse_gan-0.1.0.dist-info/entry_points.txt").decode()
    assert "sparse-core = sparse_core.cli:main" in entry
    # installed (unpacked) elsewhere, the loader builds from the copy inside the package, which hashes like cuda/
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    probe = ("from sparse_core.ops import loader; print(loader.source_dir()); "
             "print(loader.build_hash('cpu'), loader.build_hash('cuda'))")
    r = subprocess.run([sys.executable, "-S", "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(site)] + [p for p in sys.path if p.endswith("site-packages")])))
    assert r.returncode == 0, r.stderr[-2000:]
    where, hashes = r.stdout.splitlines()
    assert Path(where) == site / "sparse_core" / "ops" / "csrc"
    from sparse_core.ops import loader as here
    assert hashes.split() == [here.build_hash("cpu", CUDA_DIR), here.build_hash("cuda", CUDA_DIR)]


def test_editable_build_still_maps_vendor_common(source_copy, tmp_path):
    code = ("import sys; from setuptools import build_meta as b; "
            f"print(b.build_editable({str(tmp_path)!r}))")
    r = subprocess.run([sys.executable, "-c", code], cwd=source_copy, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (wheel,) = tmp_path.glob("sparse_gan-*.whl")
    with zipfile.ZipFile(wheel) as z:
        finder = next(z.read(n).decode() for n in z.namelist() if n.endswith("_finder.py"))
    assert f"'vendor': '{source_copy / 'vendor'}'" in finder and "'sparse_core'" in finder
