"""All-or-nothing application of a unified diff (what `patch -p1` reads), for injecting sparse_core into a
copy of a vendor tree.

Every hunk of every file is applied in memory first; only when all of them fit is anything written, each
file through a temporary file and a rename. A hunk that does not fit raises `PatchError` naming the file,
the hunk number and its header. Hunks may have moved (an offset is searched for, nearest first, as `patch`
does) but their context must match exactly: no fuzz, because a silently misplaced hook is worse than a
refusal.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
from pathlib import Path


class PatchError(RuntimeError):
    pass


_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


@dataclasses.dataclass
class Hunk:
    header: str
    old_start: int
    old: list[str]
    new: list[str]


@dataclasses.dataclass
class FilePatch:
    old_path: str | None   # None for a new file
    new_path: str | None   # None for a deleted file
    hunks: list[Hunk]


def _strip(path: str, strip: int) -> str | None:
    path = path.split("\t")[0].strip()
    if path == "/dev/null":
        return None
    parts = path.split("/")
    if len(parts) <= strip:
        raise PatchError(f"cannot strip {strip} leading components from {path!r}")
    return "/".join(parts[strip:])


def parse(text: str, strip: int = 1) -> list[FilePatch]:
    lines = text.splitlines(keepends=True)
    files: list[FilePatch] = []
    i = 0
    while i < len(lines):
        if lines[i].startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            fp = FilePatch(_strip(lines[i][4:], strip), _strip(lines[i + 1][4:], strip), [])
            i += 2
            while i < len(lines) and lines[i].startswith("@@"):
                m = _HUNK.match(lines[i])
                if not m:
                    raise PatchError(f"malformed hunk header {lines[i].rstrip()!r}")
                header = lines[i].rstrip("\n")
                n_old = int(m.group(2)) if m.group(2) is not None else 1
                n_new = int(m.group(4)) if m.group(4) is not None else 1
                hunk = Hunk(header, int(m.group(1)), [], [])
                i += 1
                while (len(hunk.old) < n_old or len(hunk.new) < n_new) and i < len(lines):
                    line = lines[i]
                    tag, body = line[:1], line[1:]
                    if tag == " " or line in ("\n", "\r\n"):
                        body = body if tag == " " else line
                        hunk.old.append(body)
                        hunk.new.append(body)
                    elif tag == "-":
                        hunk.old.append(body)
                    elif tag == "+":
                        hunk.new.append(body)
                    elif line.startswith("\\"):
                        pass
                    else:
                        raise PatchError(f"unexpected line in hunk {header!r} of {fp.new_path or fp.old_path}: {line!r}")
                    i += 1
                    if i < len(lines) and lines[i].startswith("\\ No newline"):
                        target = hunk.new if tag == "+" else hunk.old if tag == "-" else None
                        for seq in ([target] if target is not None else [hunk.old, hunk.new]):
                            seq[-1] = seq[-1].rstrip("\n")
                        i += 1
                if len(hunk.old) != n_old or len(hunk.new) != n_new:
                    raise PatchError(f"hunk {header!r} of {fp.new_path or fp.old_path} is truncated")
                fp.hunks.append(hunk)
            files.append(fp)
        else:
            i += 1
    if not files:
        raise PatchError("no file changes found: is this a unified diff?")
    return files


def _find(lines: list[str], old: list[str], guess: int, floor: int) -> int:
    """Position of `old` in `lines` at or after `floor`, nearest to `guess`; -1 if absent."""
    n = len(old)
    limit = len(lines) - n
    for delta in range(0, max(limit, 0) + len(lines) + 1):
        for pos in (guess - delta, guess + delta) if delta else (guess,):
            if floor <= pos <= limit and lines[pos:pos + n] == old:
                return pos
        if guess - delta < floor and guess + delta > limit:
            break
    return -1


def apply_to_text(original: str, fp: FilePatch, name: str) -> str:
    lines = original.splitlines(keepends=True)
    out: list[str] = []
    cursor = 0
    for k, h in enumerate(fp.hunks, 1):
        guess = max(h.old_start - 1, 0) if h.old else h.old_start
        pos = _find(lines, h.old, guess, cursor)
        if pos < 0:
            raise PatchError(f"{name}: hunk #{k} ({h.header}) does not apply: its context was not found")
        out.extend(lines[cursor:pos])
        out.extend(h.new)
        cursor = pos + len(h.old)
    out.extend(lines[cursor:])
    return "".join(out)


def plan(patch_text: str, root: Path, strip: int = 1) -> dict[Path, str | None]:
    """New content for every touched file (None = delete), computed without writing anything."""
    result: dict[Path, str | None] = {}
    for fp in parse(patch_text, strip):
        rel = fp.new_path or fp.old_path
        target = root / rel
        # New file: '/dev/null' (git) or a missing file whose only hunk starts at line 0 (`diff -N`).
        creates = fp.old_path is None or (not (root / fp.old_path).exists() and all(not h.old for h in fp.hunks))
        if creates:
            if target.exists():
                raise PatchError(f"{rel}: patch creates it but it already exists")
            result[target] = apply_to_text("", fp, rel)
            continue
        source = root / fp.old_path
        if not source.is_file():
            raise PatchError(f"{fp.old_path}: file to patch not found under {root}")
        text = result.get(source) if source in result else source.read_text()
        result[target] = None if fp.new_path is None else apply_to_text(text, fp, rel)
    return result


def apply_patch(patch_file: str | os.PathLike, root: str | os.PathLike, strip: int = 1) -> list[Path]:
    """Apply in place under `root`, all-or-nothing. Returns the touched paths."""
    root = Path(root)
    try:
        text = Path(patch_file).read_text()
    except OSError as e:
        raise PatchError(f"cannot read patch {patch_file}: {e.strerror}") from None
    changes = plan(text, root, strip)
    for path, content in changes.items():
        if content is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(content)
        if path.exists():
            shutil.copymode(path, tmp)
        os.replace(tmp, path)
    return list(changes)


def apply_to_copy(patch_file: str | os.PathLike, src: str | os.PathLike, out: str | os.PathLike,
                  strip: int = 1, force: bool = False) -> Path:
    """Copy the vendor tree `src` to `out` and apply the patch there. On failure `out` is left untouched
    (the copy is assembled next to it and renamed into place only after every hunk applied)."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise PatchError(f"vendor tree {src} not found")
    if out.exists() and not force:
        raise PatchError(f"{out} exists; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.staging-"))
    try:
        tree = staging / "tree"
        shutil.copytree(src, tree, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        apply_patch(patch_file, tree, strip)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tree, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
