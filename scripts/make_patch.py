#!/usr/bin/env python3
"""Regenerate patches/<vendor>.patch from an edited patched copy of a vendor tree.

    sparse-core apply patches/sngan.patch --src vendor/sngan --out /tmp/sngan   # a patched copy
    ... edit /tmp/sngan ...
    python scripts/make_patch.py vendor/sngan /tmp/sngan > patches/sngan.patch

The output is a plain unified diff (3 lines of context, `a/` and `b/` prefixes, no timestamps) that
`patch -p1`, `git apply` and `sparse-core apply` all take. Caches (__pycache__, *.pyc) are ignored.
"""
from __future__ import annotations

import difflib
import sys
from pathlib import Path

SKIP_DIRS = {"__pycache__", ".pytest_cache"}


def tree_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and not SKIP_DIRS & set(p.relative_to(root).parts) and p.suffix != ".pyc"}


def make_patch(src: Path, dst: Path) -> str:
    out = []
    for rel in sorted(tree_files(src) | tree_files(dst)):
        a, b = src / rel, dst / rel
        old = a.read_text().splitlines(keepends=True) if a.is_file() else []
        new = b.read_text().splitlines(keepends=True) if b.is_file() else []
        if old == new:
            continue
        for seq in (old, new):
            if seq and not seq[-1].endswith("\n"):
                raise SystemExit(f"{rel}: no newline at end of file; add one before making a patch")
        lines = list(difflib.unified_diff(old, new, f"a/{rel}" if a.is_file() else "/dev/null",
                                          f"b/{rel}" if b.is_file() else "/dev/null", n=3))
        out.append(f"diff -ruN a/{rel} b/{rel}\n")
        out.extend(lines)
    return "".join(l if l.endswith("\n") else l + "\n" for l in out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    sys.stdout.write(make_patch(Path(sys.argv[1]), Path(sys.argv[2])))
