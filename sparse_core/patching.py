"""All-or-nothing application of a unified diff (what `patch -p1` reads), for injecting sparse_core into a
copy of a vendor tree.

Every hunk of every file is applied in memory first; only when all of them fit is anything written. Writing
is staged too: every new content goes to a temporary file next to its target, then all of them are renamed
into place; if any write or rename fails, the files already replaced are restored from their backups, so the
tree is byte-identical to before. A hunk that does not fit raises `PatchError` naming the file, the hunk
number and its header; when the patch's result is already there (its reverse applies) the error says the
patch is already applied (`AlreadyApplied`). Hunks may have moved (an offset is searched for, nearest first,
as `patch` does) but their context must match exactly: no fuzz, because a silently misplaced hook is worse
than a refusal.

Confinement: every path of the diff must stay inside the target tree: absolute paths, `..` components and
symlinks leading out of the tree are refused. Modes: a patched file keeps its mode; a new file gets the mode
`patch` gives (0666 minus the umask), or the one a git diff states (`new file mode 100755`).
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


class AlreadyApplied(PatchError):
    """The patch's result is already in the tree (its reverse applies cleanly)."""


class OutsideTree(PatchError):
    """The patch names a path that would lead outside the target tree."""


_MODE = re.compile(r"^(?:new file mode|new mode) ([0-7]{6})\s*$")


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
    mode: int | None = None  # permission bits a git header states for the new file


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
    mode = None
    i = 0
    while i < len(lines):
        if lines[i].startswith("diff "):
            mode = None
        m_mode = _MODE.match(lines[i])
        if m_mode:
            mode = int(m_mode.group(1), 8) & 0o7777
        if lines[i].startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            fp = FilePatch(_strip(lines[i][4:], strip), _strip(lines[i + 1][4:], strip), [], mode)
            mode = None
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


def _inside(root: Path, rel: str | None) -> Path | None:
    """root/rel, refused unless it stays inside root (no absolute path, no '..', no symlink leading out).
    Symlinks inside the tree are followed, so the file they point to is the one patched."""
    if rel is None:
        return None
    parts = rel.replace("\\", "/").split("/")
    if rel.startswith("/") or os.path.isabs(rel) or ".." in parts or not rel.strip("/"):
        raise OutsideTree(f"{rel}: refused, the patch names a path outside the target tree")
    top = root.resolve()
    path = (root / rel).resolve()
    if path != top and top not in path.parents:
        raise OutsideTree(f"{rel}: refused, it leads outside the target tree (through a symlink) to {path}")
    return path


def _reverse(fp: FilePatch) -> FilePatch:
    hunks = [Hunk(h.header, h.old_start, h.new, h.old) for h in fp.hunks]
    return FilePatch(fp.new_path, fp.old_path, hunks, None)


def _already_applied(files: list[FilePatch], root: Path) -> bool:
    """True when every file already has the patch's result: the reverse patch applies cleanly."""
    for fp in files:
        new = _inside(root, fp.new_path)
        if fp.new_path is None:                      # a deletion is applied when the file is gone
            if _inside(root, fp.old_path).exists():
                return False
            continue
        if not new.is_file():
            return False
        try:
            apply_to_text(new.read_text(), _reverse(fp), fp.new_path)
        except (PatchError, UnicodeDecodeError):
            return False
    return True


def plan(patch_text: str, root: Path, strip: int = 1) -> dict[Path, str | None]:
    """New content for every touched file (None = delete), computed without writing anything.
    Raises AlreadyApplied when the tree already holds the patch's result."""
    files = parse(patch_text, strip)
    try:
        return _plan(files, Path(root))
    except PatchError as error:
        if isinstance(error, (AlreadyApplied, OutsideTree)):
            raise
        try:
            applied = _already_applied(files, Path(root))
        except PatchError:
            applied = False
        if applied:
            raise AlreadyApplied(f"the patch is already applied to {root} (its reverse applies cleanly; "
                                 f"first mismatch: {error})") from None
        raise


def modes(patch_text: str, root: Path, strip: int = 1) -> dict[Path, int]:
    """Modes a git diff states for new files (path under root -> permission bits)."""
    return {_inside(Path(root), fp.new_path): fp.mode for fp in parse(patch_text, strip)
            if fp.mode is not None and fp.new_path is not None}


def _plan(files: list[FilePatch], root: Path) -> dict[Path, str | None]:
    result: dict[Path, str | None] = {}
    for fp in files:
        _inside(root, fp.old_path)
        _inside(root, fp.new_path)
    for fp in files:
        rel = fp.new_path or fp.old_path
        target = _inside(root, rel)
        # New file: '/dev/null' (git) or a missing file whose only hunk starts at line 0 (`diff -N`).
        creates = fp.old_path is None or (not _inside(root, fp.old_path).exists() and all(not h.old for h in fp.hunks))
        if creates:
            if target.exists():
                raise PatchError(f"{rel}: patch creates it but it already exists")
            result[target] = apply_to_text("", fp, rel)
            continue
        source = _inside(root, fp.old_path)
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
    commit(changes, modes(text, root, strip))
    return list(changes)


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def commit(changes: dict[Path, str | None], new_modes: dict[Path, int] | None = None) -> None:
    """Write every change or none: stage all contents in temporary files, back up every file that will be
    replaced or deleted, then rename. Any failure restores the backups and removes what was created."""
    new_modes = new_modes or {}
    staged: dict[Path, str | None] = {}   # target -> temporary file holding its new content (None: delete)
    backups: dict[Path, str] = {}         # target -> a copy of its old content (and mode)
    made_dirs: list[Path] = []
    done: list[Path] = []
    try:
        for path, content in changes.items():
            if content is None:
                staged[path] = None
                continue
            missing = [d for d in [path.parent, *path.parent.parents] if not d.exists()]
            for folder in reversed(missing):
                folder.mkdir()
                made_dirs.append(folder)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            staged[path] = tmp
            with os.fdopen(fd, "w") as f:
                f.write(content)
            if path.exists():
                shutil.copymode(path, tmp)
            else:
                os.chmod(tmp, new_modes.get(path, _new_file_mode()))
        for path in staged:
            if path.exists():
                fd, backup = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".orig")
                os.close(fd)
                backups[path] = backup
                shutil.copy2(path, backup)
        for path, tmp in staged.items():
            if tmp is None:
                os.unlink(path)
            else:
                os.replace(tmp, path)
            done.append(path)
    except BaseException as error:
        problems = _rollback(staged, backups, made_dirs, done)
        if problems:
            raise PatchError(f"writing failed ({error}) and the rollback failed too: {'; '.join(problems)}") from error
        raise
    for backup in backups.values():
        try:
            os.unlink(backup)
        except OSError:
            pass


def _rollback(staged, backups, made_dirs, done) -> list[str]:
    problems = []
    for path in reversed(done):
        try:
            if path in backups:
                os.replace(backups.pop(path), path)
            else:
                os.unlink(path)
        except OSError as e:
            problems.append(f"{path}: {e}")
    for tmp in staged.values():
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    for backup in backups.values():
        if os.path.exists(backup):
            os.unlink(backup)
    for folder in reversed(made_dirs):
        try:
            folder.rmdir()
        except OSError as e:
            problems.append(f"{folder}: {e}")
    return problems


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
