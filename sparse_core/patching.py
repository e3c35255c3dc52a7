"""All-or-nothing application of a unified diff (what `patch -p1` reads), for injecting sparse_core into a
copy of a vendor tree.

Everything works on bytes, as GNU `patch` does: a line is what ends in `\\n`, a line's bytes (a `\\r` before
the `\\n`, bytes that are not UTF-8, a NUL) are kept exactly, and a hunk fits only where its bytes match.
As GNU `patch` does, trailing CRs are stripped from a file's hunk lines when that file's `+++ ` line ends in
CRLF (the whole patch was converted to CRLF); a hunk whose lines differ from the file only in their line
endings is refused and the message says so.

Every hunk of every file is applied in memory first; only when all of them fit is anything written. Writing
is staged too: every new content goes to a temporary file next to its target, then all of them are renamed
into place; if any write or rename fails, the files already replaced are restored from their backups, so the
tree is byte-identical to before. A hunk that does not fit raises `PatchError` naming the file, the hunk
number and its header; when the patch's result is already there (its reverse applies) the error says the
patch is already applied (`AlreadyApplied`). Hunks may have moved (an offset is searched for, nearest first,
as `patch` does) but their context must match exactly: no fuzz, because a silently misplaced hook is worse
than a refusal. A deletion removes a file only when the patch's `-` lines are exactly its content.

Confinement: every path of the diff must stay inside the target tree: absolute paths, `..` components and
symlinks leading out of the tree are refused, and so are names with a NUL byte. Symlinked folders inside the
tree are followed; a file to patch or delete that is itself a symlink is refused (as GNU `patch` does). Only
regular files are created or changed: git symlink (mode 120000) and submodule entries, renames, copies and
binary diffs are refused by name. File names follow GNU `patch` too: C-quoted names are unquoted, and of two
different names in a header the existing one with the fewest components, then the shortest base name, wins.
Modes, as GNU `patch` gives them: a patched file keeps its permission bits; a new file gets 0666 minus the
umask, or the permission bits a git diff states (`new file mode 100755`, `new mode 100755`);
no file is ever left setuid, setgid or sticky (git's 104755 gives 0755, a patched 4755 file becomes 0755).
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path


class PatchError(RuntimeError):
    pass


class AlreadyApplied(PatchError):
    """The patch's result is already in the tree (its reverse applies cleanly)."""


class OutsideTree(PatchError):
    """The patch names a path that would lead outside the target tree."""


# Line counts beyond 15 digits cannot be real; the bound also keeps int() away from huge digit strings.
_HUNK = re.compile(rb"^@@ -(\d{1,15})(?:,(\d{1,15}))? \+(\d{1,15})(?:,(\d{1,15}))? @@")
_GIT_MODE = re.compile(rb"^(new file mode|deleted file mode|old mode|new mode) ([0-7]{6})\s*$")
_GIT_UNSUPPORTED = (b"rename from ", b"rename to ", b"copy from ", b"copy to ", b"GIT binary patch")
_GIT_HEADER = (b"similarity index ", b"dissimilarity index ", b"Binary files ")
# an all-zero side: the file is absent there; a mode at the end: the file's mode on both sides
_GIT_INDEX = re.compile(rb"^index ([0-9a-f]+)\.\.([0-9a-f]+)(?: ([0-7]{6}))?\s*$")
_TIMESTAMP = re.compile(rb"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.\d+)? ([+-]\d{4})$")
_REGULAR, _SYMLINK, _GITLINK = 0o100000, 0o120000, 0o160000


@dataclasses.dataclass
class Hunk:
    header: str
    old_start: int
    old: list[bytes]
    new: list[bytes]
    new_start: int = 1


@dataclasses.dataclass
class FilePatch:
    old_path: str | None   # None for a new file
    new_path: str | None   # None for a deleted file
    hunks: list[Hunk]
    mode: int | None = None  # permission bits a git header states for the result (never setuid/setgid/sticky)
    creates: bool = False    # the old side is /dev/null or dated at the epoch (`diff -N`)
    removes: bool | None = False  # the new side is dated at the epoch (`diff -N`) and its hunks say '+0,0':
    #                               the file goes (None: its timestamp cannot be read, so nobody can tell)


def show(name) -> str:
    """A file name as messages print it: as is when printable, else escaped (a NUL, bytes that are not UTF-8)."""
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if len(name) > 160:
        name = f"{name[:70]}...({len(name)} characters)...{name[-70:]}"
    return name if name.isprintable() else ascii(name)


def _lines(data: bytes) -> list[bytes]:
    """Split after every b'\\n' only (as `patch` does: no other byte ends a line); the last piece may lack it."""
    parts = data.split(b"\n")
    out = [p + b"\n" for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


def _check_strip(strip) -> int:
    if isinstance(strip, bool) or not isinstance(strip, int) or strip < 0:
        raise PatchError(f"-p {strip!r}: the number of leading path components to strip must be an integer >= 0")
    return strip


def _name(raw: bytes, strip: int, where: str) -> tuple[str | None, bool]:
    """(path after stripping `strip` components or None for /dev/null, whether the header dates it at the
    epoch). `raw` is what follows '--- ' / '+++ '."""
    name, _, stamp = raw.rstrip(b"\r\n").partition(b"\t")
    name = name.strip()
    if name.startswith(b'"') and b"\0" not in name:
        name = _unquote(name, where)
    if b"\0" in name:
        raise PatchError(f"{where}: the file name {show(name)} contains a NUL byte: refused")
    if name.endswith(b"/"):
        raise PatchError(f"{where}: {show(name)} names a folder, not a file")
    if not name:
        raise PatchError(f"{where}: the file name is empty")
    if name == b"/dev/null":
        return None, False
    parts = name.split(b"/")
    if len(parts) <= strip:
        raise PatchError(f"{where}: cannot strip {strip} leading components from {show(name)}")
    return os.fsdecode(b"/".join(parts[strip:])), _at_epoch(stamp.strip())


_ESCAPES = {ord(k): v for k, v in zip('abfnrtv"\\', b'\a\b\f\n\r\t\v"\\')}


def _unquote(name: bytes, where: str) -> bytes:
    """The bytes of a C-quoted name, as diff and git write names with unusual bytes (octal escapes)."""
    out, k = bytearray(), 1
    while k < len(name) and name[k] != ord('"'):
        c = name[k]
        if c != ord("\\"):
            out.append(c)
            k += 1
        elif re.fullmatch(rb"[0-3][0-7][0-7]", name[k + 1:k + 4]):
            out.append(int(name[k + 1:k + 4], 8))
            k += 4
        elif k + 1 < len(name) and name[k + 1] in _ESCAPES:
            out.append(_ESCAPES[name[k + 1]])
            k += 2
        else:
            raise PatchError(f"{where}: bad escape in the quoted file name {show(name)}")
    if k != len(name) - 1:
        raise PatchError(f"{where}: malformed quoted file name {show(name)}")
    return bytes(out)


def _at_epoch(stamp: bytes) -> bool | None:
    """Whether a header's timestamp is the epoch (`diff -N`'s mark of a missing file); None when there is
    one but it cannot be read. GNU patch 2.7 takes any time from 25 hours before to 26 hours after the epoch
    as the epoch (measured: -89999 s and +93599 s count, -90000 s and +93600 s do not); so does this."""
    if not stamp:
        return False
    m = _TIMESTAMP.match(stamp)
    if not m:
        return None
    try:
        when = datetime.datetime.strptime((m.group(1) + b" " + m.group(2)).decode(), "%Y-%m-%d %H:%M:%S %z")
    except ValueError:
        return None
    return -90000 < when.timestamp() < 93600


def _git_names(rest: bytes, strip: int, where: str) -> str:
    """The file a 'diff --git a/X b/X' line names (both halves must name the same file)."""
    rest = rest.rstrip(b"\r\n")
    half = (len(rest) - 1) // 2
    left, right = rest[:half], rest[half + 1:]
    if len(rest) % 2 == 0 or rest[half:half + 1] != b" " or left.split(b"/", 1)[-1] != right.split(b"/", 1)[-1]:
        raise PatchError(f"{where}: cannot tell which file {show(rest)} names (renames are not supported)")
    return _name(right, strip, where)[0]


def parse(data: bytes | str, strip: int = 1) -> list[FilePatch]:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    strip = _check_strip(strip)
    lines = _lines(data)
    files: list[FilePatch] = []
    git = None   # the 'diff --git' section being read: its line, modes and whether it has ---/+++ headers
    i = 0

    def end_git_section():
        """A git section without ---/+++ lines: an empty file created or deleted, or a mode change."""
        if git is None or git["headers"]:
            return
        where = f"patch line {git['line']}"
        name = git["name"]
        _check_git_header(git, where)
        if git["new"] or git["absent_before"]:
            files.append(FilePatch(None, name, [], git["mode"], creates=True))
        elif git["deleted"] or git["absent_after"]:
            files.append(FilePatch(name, None, []))
        elif git["mode"] is not None:
            files.append(FilePatch(name, name, [], git["mode"]))
        else:
            raise PatchError(f"{where}: the git header for {show(name)} states no change this applier can make")

    while i < len(lines):
        line = lines[i]
        where = f"patch line {i + 1}"
        if line.startswith(b"diff ") and not line.startswith(b"diff --git "):   # a plain `diff -u` section
            end_git_section()
            git = None
        if line.startswith(b"diff --git "):
            end_git_section()
            rest = line[len(b"diff --git "):]
            git = {"line": i + 1, "rest": rest, "headers": False, "mode": None, "new": False, "deleted": False,
                   "name": _git_names(rest, strip, where), "absent_before": False, "absent_after": False,
                   "index_mode": None}
            i += 1
            continue
        file_header = line.startswith(b"--- ") and i + 1 < len(lines) and lines[i + 1].startswith(b"+++ ")
        if git is not None and not git["headers"] and not file_header:
            if not line.endswith(b"\n"):
                raise PatchError(f"{where}: the patch ends in the middle of the git header of "
                                 f"{show(git['rest'].rstrip())} (truncated)")
            entry = show(git["rest"].rstrip(b"\r\n"))
            m, m_index = _GIT_MODE.match(line), _GIT_INDEX.match(line)
            if m:
                mode = _regular_mode(m.group(2), entry, where)
                if m.group(1) in (b"new file mode", b"new mode"):
                    git["mode"] = mode
                git["new"] |= m.group(1) == b"new file mode"
                git["deleted"] |= m.group(1) == b"deleted file mode"
            elif m_index:
                git["absent_before"] |= not m_index.group(1).strip(b"0")
                git["absent_after"] |= not m_index.group(2).strip(b"0")
                if m_index.group(3):                    # 'index a..b 100644': the mode on both sides
                    git["index_mode"] = _regular_mode(m_index.group(3), entry, where)
            elif line.startswith(b"index "):
                raise PatchError(f"{where}: malformed index line in the git header of {entry}: "
                                 f"{show(line[:80].rstrip())}")
            elif line.startswith(_GIT_UNSUPPORTED):
                raise PatchError(f"{where}: {entry}: refused, git renames, copies and binary patches are not supported")
            elif not line.startswith(_GIT_HEADER):
                raise PatchError(f"{where}: unexpected line in the git header of {entry}: {show(line[:80])}")
        if line.startswith(b"Binary files ") and line.rstrip().endswith(b" differ"):
            raise PatchError(f"{where}: refused, a binary change cannot be applied: {show(line.rstrip())}")
        if not file_header:
            if line.startswith(b"@@ "):
                raise PatchError(f"{where}: a hunk header ({show(line.rstrip()[:80])}) outside any file's "
                                 f"---/+++ header (or a malformed one)")
            i += 1
            continue
        old_path, old_epoch = _name(line[4:], strip, where)
        new_path, new_epoch = _name(lines[i + 1][4:], strip, f"patch line {i + 2}")
        if old_path is None and new_path is None:
            raise PatchError(f"{where}: both sides of the file header are /dev/null")
        crlf = lines[i + 1].endswith(b"\r\n")   # GNU patch then strips trailing CRs from this file's hunks
        fp = FilePatch(old_path, new_path, [])
        gone_after = False
        if git is not None and git["headers"]:
            raise PatchError(f"{where}: a second file header inside the git section of {show(git['name'])} "
                             f"(patch line {git['line']})")
        if git is not None:
            if {old_path, new_path} - {None, git["name"]}:
                raise PatchError(f"{where}: the ---/+++ lines name {show(old_path or new_path)} -> "
                                 f"{show(new_path or old_path)}, the diff --git line {show(git['name'])}: refused "
                                 f"(git renames and copies are not supported)")
            git["headers"] = True
            _check_git_header(git, where)
            fp.mode = git["mode"]
            fp.creates |= git["new"] or git["absent_before"]
            gone_after = git["absent_after"] and new_path is not None
        i += 2

        def body(k):
            raw = lines[k]
            return raw[:-2] + b"\n" if crlf and raw.endswith(b"\r\n") else raw

        while i < len(lines) and lines[i].startswith(b"@@"):
            header = os.fsdecode(body(i).rstrip(b"\n"))
            m = _HUNK.match(lines[i])
            if not m:
                raise PatchError(f"patch line {i + 1}: malformed hunk header {show(header)} "
                                 f"of {show(new_path or old_path)}")
            n_old = int(m.group(2)) if m.group(2) is not None else 1
            n_new = int(m.group(4)) if m.group(4) is not None else 1
            if not n_old and not n_new:
                raise PatchError(f"patch line {i + 1}: empty hunk {show(header)} of {show(new_path or old_path)}")
            if (n_old and not int(m.group(1))) or (n_new and not int(m.group(3))):
                raise PatchError(f"patch line {i + 1}: malformed hunk header {show(header)} of "
                                 f"{show(new_path or old_path)}: a side with lines cannot start at line 0")
            hunk = Hunk(header, int(m.group(1)), [], [], int(m.group(3)))
            i += 1
            while (len(hunk.old) < n_old or len(hunk.new) < n_new) and i < len(lines):
                text = body(i)
                if not text.endswith(b"\n"):
                    raise PatchError(f"patch line {i + 1}: the patch ends in the middle of a line of hunk "
                                     f"{show(header)} of {show(new_path or old_path)} (truncated)")
                tag, rest = text[:1], text[1:]
                if tag == b" " or text in (b"\n", b"\r\n"):   # an empty context line may have lost its space
                    rest = rest if tag == b" " else text
                    hunk.old.append(rest)
                    hunk.new.append(rest)
                elif tag == b"-":
                    hunk.old.append(rest)
                elif tag == b"+":
                    hunk.new.append(rest)
                else:
                    raise PatchError(f"patch line {i + 1}: unexpected line in hunk {show(header)} of "
                                     f"{show(new_path or old_path)}: {show(text[:80])}")
                i += 1
                if i < len(lines) and lines[i].startswith(b"\\") and tag in (b" ", b"-", b"+"):
                    # '\ No newline at end of file': the line before it has no '\n'
                    seqs = [hunk.old] if tag == b"-" else [hunk.new] if tag == b"+" else [hunk.old, hunk.new]
                    for seq in seqs:
                        if seq[-1].endswith(b"\n"):
                            seq[-1] = seq[-1][:-1]
                    i += 1
            if len(hunk.old) != n_old or len(hunk.new) != n_new:
                raise PatchError(f"hunk {show(header)} of {show(new_path or old_path)} does not hold the "
                                 f"{n_old} old and {n_new} new lines its header announces (truncated or malformed)")
            if i < len(lines) and _continues_hunk(lines, i):
                raise PatchError(f"patch line {i + 1}: hunk {show(header)} of {show(new_path or old_path)} goes "
                                 f"on past the {n_old} old and {n_new} new lines its header announces")
            fp.hunks.append(hunk)
        if not fp.hunks:
            raise PatchError(f"{where}: the header for {show(new_path or old_path)} is followed by no hunk")
        # '/dev/null' or a side dated at the epoch (`diff -N`) says the file does not exist on that side
        # (and hunks that say '-0,0' / '+0,0' on that side, as GNU patch requires)
        fp.creates |= old_path is None or bool(old_epoch and all(h.old_start == 0 and not h.old for h in fp.hunks))
        fp.removes = new_epoch if all(h.new_start == 0 and not h.new for h in fp.hunks) else False
        fp.removes = True if gone_after else fp.removes
        if fp.creates and new_path is None:
            raise PatchError(f"{where}: {show(old_path)}: the file header both creates and deletes it")
        files.append(fp)
    end_git_section()
    if not files:
        raise PatchError("no file changes found: is this a unified diff?")
    return files


def _regular_mode(text: bytes, entry: str, where: str) -> int:
    """The permission bits of a git mode (setuid/setgid/sticky dropped); anything but a regular file refused."""
    kind = int(text, 8) & 0o170000
    if kind == _SYMLINK:
        raise PatchError(f"{where}: {entry}: refused, a git symlink entry (mode {text.decode()}); only regular "
                         f"files are created or patched")
    if kind != _REGULAR:
        raise PatchError(f"{where}: {entry}: refused, mode {text.decode()} is not a regular file"
                         f"{' (a git submodule)' if kind == _GITLINK else ''}")
    return int(text, 8) & 0o777


def _check_git_header(git: dict, where: str) -> None:
    if (git["new"] or git["absent_before"]) and (git["deleted"] or git["absent_after"]):
        raise PatchError(f"{where}: the git header of {show(git['name'])} both creates and deletes it")
    if git["index_mode"] is not None and git["mode"] is not None and git["index_mode"] != git["mode"]:
        raise PatchError(f"{where}: the git header of {show(git['name'])} states two different modes "
                         f"({git['mode']:o} and {git['index_mode']:o} on its index line)")


def _continues_hunk(lines: list[bytes], i: int) -> bool:
    """Whether line i, right after a complete hunk, still looks like a hunk line (the header's counts were
    wrong): a context, '+' or '-' line that is neither the next file's header nor a mail signature ('-- ')."""
    line = lines[i]
    if line.startswith(b"--- ") and i + 1 < len(lines) and lines[i + 1].startswith(b"+++ "):
        return False
    if line.rstrip(b"\r\n") in (b"--", b"-- "):
        return False
    return line[:1] in (b" ", b"+", b"-")


def _find(lines: list[bytes], old: list[bytes], guess: int, floor: int) -> int:
    """Position of `old` in `lines` at or after `floor`, nearest to `guess`; -1 if absent."""
    n = len(old)
    limit = len(lines) - n
    if limit < floor:
        return -1
    guess = min(max(guess, floor), limit)
    for delta in range(0, limit - floor + 1):
        for pos in (guess - delta, guess + delta) if delta else (guess,):
            if floor <= pos <= limit and lines[pos:pos + n] == old:
                return pos
        if guess - delta < floor and guess + delta > limit:
            break
    return -1


def _no_cr(lines: list[bytes]) -> list[bytes]:
    return [line[:-2] + b"\n" if line.endswith(b"\r\n") else line for line in lines]


def apply_hunks(original: bytes, fp: FilePatch, name: str) -> bytes:
    lines = _lines(original)
    out: list[bytes] = []
    cursor = 0
    for k, h in enumerate(fp.hunks, 1):
        guess = max(h.old_start - 1, 0) if h.old else h.old_start
        pos = _find(lines, h.old, guess, cursor)
        if pos < 0:
            why = "its context was not found"
            if h.new and h.old != h.new and _find(lines, h.new, guess, cursor) >= 0:
                why = "its result is already there (a reversed or previously applied patch)"
            elif _find(_no_cr(lines), _no_cr(h.old), guess, cursor) >= 0:
                why = "different line endings (CRLF in one of the file and the patch, LF in the other)"
            raise PatchError(f"{show(name)}: hunk #{k} ({show(h.header)}) does not apply: {why}")
        out.extend(lines[cursor:pos])
        out.extend(h.new)
        cursor = pos + len(h.old)
    out.extend(lines[cursor:])
    return b"".join(out)


def _inside(root: Path, rel: str | None) -> Path | None:
    """root/rel resolved, refused unless it stays inside root (no absolute path, no '..', no symlink leading
    out). Symlinked folders inside the tree are followed (a symlinked file is refused by _plan)."""
    if rel is None:
        return None
    parts = rel.replace("\\", "/").split("/")
    if rel.startswith("/") or os.path.isabs(rel) or ".." in parts or not rel.strip("/"):
        raise OutsideTree(f"{show(rel)}: refused, the patch names a path outside the target tree")
    top = root.resolve()
    path = (root / rel).resolve()
    if path != top and top not in path.parents:
        raise OutsideTree(f"{show(rel)}: refused, it leads outside the target tree (through a symlink) to "
                          f"{show(str(path))}")
    return path


def _reverse(fp: FilePatch) -> FilePatch:
    hunks = [Hunk(h.header, h.old_start, h.new, h.old) for h in fp.hunks]
    return FilePatch(fp.new_path, fp.old_path, hunks, None)


def _already_applied(files: list[FilePatch], root: Path) -> bool:
    """True when every file already has the patch's result: the reverse patch applies cleanly."""
    for fp in files:
        new = _inside(root, fp.new_path)
        if fp.new_path is None or fp.removes:        # a deletion is applied when the file is gone
            if os.path.lexists(_inside(root, fp.old_path or fp.new_path)):
                return False
            continue
        if not new.is_file():
            return False
        try:
            before = apply_hunks(new.read_bytes(), _reverse(fp), fp.new_path)
        except (PatchError, OSError):
            return False
        if fp.creates and before:                    # a created file must hold exactly what the patch wrote
            return False
    return True


def plan(patch_text: bytes | str, root: Path, strip: int = 1) -> dict[Path, bytes | None]:
    """New content for every touched file (None = delete), computed without writing anything.
    Raises AlreadyApplied when the tree already holds the patch's result."""
    files = parse(patch_text, strip)
    if not Path(root).is_dir():
        raise PatchError(f"target tree {show(str(root))} is not an existing folder")
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
            raise AlreadyApplied(f"the patch is already applied to {show(str(root))} (its reverse applies cleanly; "
                                 f"first mismatch: {error})") from None
        raise


def modes(patch_text: bytes | str, root: Path, strip: int = 1) -> dict[Path, int]:
    """Permission bits a git diff states (`new file mode`, `new mode`): path under root -> bits (0o777 at most)."""
    return {_inside(Path(root), fp.new_path): fp.mode for fp in parse(patch_text, strip)
            if fp.mode is not None and fp.new_path is not None}


def _read(path: Path, rel: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise PatchError(f"{show(rel)}: cannot read it: {e.strerror}") from None


def _plan(files: list[FilePatch], root: Path) -> dict[Path, bytes | None]:
    result: dict[Path, bytes | None] = {}
    top = root.resolve()
    for fp in files:
        _inside(root, fp.old_path)
        _inside(root, fp.new_path)
    for fp in files:
        # New file: '/dev/null' (git), an old side dated at the epoch, or nothing under either name and hunks
        # that say '-0,0' (`diff -N`).
        exists = [name for name in (fp.old_path, fp.new_path) if name is not None and _exists(root, name, result)]
        if fp.creates or (fp.hunks and not exists and all(h.old_start == 0 and not h.old for h in fp.hunks)):
            # As GNU patch names a new file: of the names whose folder exists (else of all), the preferred one
            names = [n for n in (fp.old_path, fp.new_path) if n is not None]
            rel = min([n for n in names if (root / n).parent.is_dir()] or names, key=_preference)
            target = _inside(root, rel)
            if exists or (target not in result and (os.path.lexists(target) or os.path.lexists(root / rel))):
                raise PatchError(f"{show(rel)}: the patch creates it but it already exists")
            for folder in [target.parent, *target.parent.parents]:
                if folder == top or top not in folder.parents:
                    break
                if folder.exists() and not folder.is_dir():
                    raise PatchError(f"{show(rel)}: cannot be created: {show(str(folder.relative_to(top)))} "
                                     f"is not a folder")
            result[target] = apply_hunks(b"", fp, rel)
            continue
        if not exists:
            deleted = [n for n in (fp.old_path, fp.new_path) if n is not None and _inside(root, n) in result]
            if deleted:
                raise PatchError(f"{show(deleted[0])}: the patch changes it after deleting it")
            raise PatchError(f"{show(fp.old_path or fp.new_path)}: file to patch not found under {show(str(root))}")
        # As GNU patch does without a git header: the existing file among the two names, fewest components,
        # then shortest base name, then shortest name (a deletion patches its old name).
        rel = fp.old_path if fp.new_path is None else min(exists, key=_preference)
        if rel not in exists:
            raise PatchError(f"{show(rel)}: file to delete not found under {show(str(root))}")
        target = _inside(root, rel)
        if os.path.islink(root / rel):
            raise PatchError(f"{show(rel)}: refused, it is a symlink, not a regular file (GNU patch refuses it too)")
        if target not in result and not target.is_file():
            raise PatchError(f"{show(rel)}: refused, it is not a regular file")
        text = result[target] if target in result else _read(target, rel)
        new = apply_hunks(text, fp, rel)
        if fp.removes is None and not new:
            raise PatchError(f"{show(rel)}: refused, the patch empties it and its +++ line's timestamp cannot be "
                             f"read, so whether the file should be deleted is unclear")
        if fp.new_path is None or fp.removes:
            if new:
                raise PatchError(f"{show(rel)}: not deleted: its content differs from what the patch "
                                 f"removes ({len(new)} bytes would remain)")
            result[target] = None
        else:
            result[target] = new
    return result


def _preference(name: str) -> tuple:
    return len(name.strip("/").split("/")), len(name.rsplit("/", 1)[-1]), len(name)


def _exists(root: Path, rel: str, result: dict) -> bool:
    """Whether something is at rel, as the patch has left the tree so far."""
    path = _inside(root, rel)
    return result[path] is not None if path in result else os.path.lexists(path) or os.path.lexists(root / rel)


def apply_patch(patch_file: str | os.PathLike, root: str | os.PathLike, strip: int = 1) -> list[Path]:
    """Apply in place under `root`, all-or-nothing. Returns the touched paths."""
    root = Path(root)
    try:
        data = Path(patch_file).read_bytes()
    except OSError as e:
        raise PatchError(f"cannot read patch {show(str(patch_file))}: {e.strerror}") from None
    changes = plan(data, root, strip)
    commit(changes, modes(data, root, strip))
    return list(changes)


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def commit(changes: dict[Path, bytes | None], new_modes: dict[Path, int] | None = None) -> None:
    """Write every change or none: stage all contents in temporary files, back up every file that will be
    replaced or deleted, then rename. Any failure restores the backups and removes what was created.
    `new_modes` gives permission bits for some paths (masked to 0o777); other existing files keep theirs."""
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
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            if path in new_modes:
                os.chmod(tmp, new_modes[path] & 0o777)
            elif path.exists():     # keeps its permission bits, less setuid/setgid/sticky (as GNU patch does)
                os.chmod(tmp, stat.S_IMODE(path.stat().st_mode) & 0o777)
            else:
                os.chmod(tmp, _new_file_mode())
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
