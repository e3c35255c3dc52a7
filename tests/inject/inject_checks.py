"""Helpers of the `sparse-core inject` tests (imported by them; not a test module): a snapshot of a tree's files,
a copy of a vendor tree, and the command line run in this process."""
import contextlib
import io
import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENDORS = ("sngan", "autogan", "progan", "fastgan", "stylegan2_ada")


def tree_files(root) -> dict:
    """relative path -> bytes of every file under root (no caches)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            p = Path(dirpath) / name
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


def cli(*args):
    """(exit code, stdout, stderr) of `sparse-core ARGS` run in this process."""
    from sparse_core.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:       # argparse refusals
            code = e.code
    return code, out.getvalue(), err.getvalue()


def copy_vendor(vendor: str, dest: Path) -> Path:
    shutil.copytree(ROOT / "vendor" / vendor, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest
