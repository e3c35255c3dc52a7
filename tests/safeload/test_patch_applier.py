"""The confined applier (`sparse-core apply`) against GNU `patch` (issue 23 item 8).

Every case runs GNU `patch` on an identical tree in a temporary folder and compares: where GNU patch applies,
our result must be byte- and mode-identical; where GNU patch refuses, we refuse with one message and write
nothing. Where GNU patch does something we refuse on purpose (a symlink entry, a binary diff it silently
skips, a rename), the test shows what GNU did and that we refused by name with the tree untouched.
Patches are made by `diff -ruNa` from real files wherever a diff can express the case.
"""
import contextlib
import io
import os
import random
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from sparse_core.patching import PatchError, apply_patch, plan

REPO = Path(__file__).resolve().parents[2]


def write_tree(root: Path, files: dict) -> Path:
    """files: name (str or bytes) -> bytes, or (bytes, mode)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = Path(os.fsdecode(os.path.join(os.fsencode(root), os.fsencode(name))))
        path.parent.mkdir(parents=True, exist_ok=True)
        data, mode = content if isinstance(content, tuple) else (content, None)
        path.write_bytes(data)
        if mode is not None:
            os.chmod(path, mode)
    return root


def snapshot(root: Path) -> dict:
    """Every path under root: (kind, bytes or link target, permission bits incl. setuid/setgid/sticky)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, os.fsencode(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p), None)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", None, stat.S_IMODE(st.st_mode))
            else:
                with open(p, "rb") as f:
                    out[rel] = ("file", f.read(), stat.S_IMODE(st.st_mode))
    return out


def cli(*args):
    from sparse_core.cli import main
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main([os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in args])
        except SystemExit as e:       # argparse refusals
            code = e.code
    return code, err.getvalue()


def udiff(tmp_path: Path, old: dict, new: dict) -> bytes:
    """`diff -ruNa a b` of two trees (the independent maker of test patches)."""
    work = tmp_path / "mkdiff"
    shutil.rmtree(work, ignore_errors=True)
    write_tree(work / "a", old)
    write_tree(work / "b", new)
    r = subprocess.run(["diff", "-ruNa", "a", "b"], cwd=work, capture_output=True)
    assert r.returncode == 1, r.stderr
    return r.stdout


class Outcome:
    def __init__(self, before, mine_rc, mine_err, mine, gnu_rc, gnu_out, gnu):
        self.before, self.mine_rc, self.mine_err, self.mine = before, mine_rc, mine_err, mine
        self.gnu_rc, self.gnu_out, self.gnu = gnu_rc, gnu_out, gnu


def both(tmp_path: Path, patch: bytes, files: dict, strip=1, tag="case") -> Outcome:
    """Apply `patch` with `sparse-core apply --in-place` and with GNU patch to two identical trees."""
    base = tmp_path / tag
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir()
    pfile = base / "change.patch"
    pfile.write_bytes(patch)
    mine = write_tree(base / "mine", files)
    gnu = write_tree(base / "gnu", files)
    before = snapshot(mine)
    rc, err = cli("apply", pfile, "--in-place", mine, "-p", strip)
    g = subprocess.run(["patch", f"-p{strip}", "--batch", "--forward", "--no-backup-if-mismatch", "--reject-file=-",
                        "-i", str(pfile)], cwd=gnu, capture_output=True)
    return Outcome(before, rc, err, snapshot(mine), g.returncode, (g.stdout + g.stderr).decode(errors="replace"),
                   snapshot(gnu))


def assert_same_as_gnu(o: Outcome):
    assert o.gnu_rc == 0, o.gnu_out
    assert o.mine_rc == 0, o.mine_err
    assert o.mine == o.gnu


def assert_refused_untouched(o: Outcome, *words):
    assert o.mine_rc == 2, (o.mine_rc, o.mine_err)
    assert o.mine == o.before
    assert "nothing was written" in o.mine_err and "Traceback" not in o.mine_err
    assert o.mine_err.count("\n") == 1, o.mine_err            # one message
    for w in words:
        assert w in o.mine_err, o.mine_err


# ---------------------------------------------------------------- line endings

LF = b"one\ntwo\nthree\nfour\nfive\n"
CRLF = LF.replace(b"\n", b"\r\n")


def test_crlf_file_stays_crlf_like_gnu(tmp_path):
    new = CRLF.replace(b"three", b"THREE").replace(b"five\r\n", b"five\r\nsix\r\n")
    patch = udiff(tmp_path, {"f": CRLF}, {"f": new})
    assert b"\r\n" in patch
    o = both(tmp_path, patch, {"f": CRLF})
    assert_same_as_gnu(o)
    assert o.mine[b"f"][1] == new                       # every line still CRLF, the new one too


def test_mixed_line_endings_kept_byte_for_byte_like_gnu(tmp_path):
    old = b"a\r\nb\nc\r\nd\ne\r\nf\n"
    new = b"a\r\nb\nC\r\nd\nE\ne\r\nf\n"
    o = both(tmp_path, udiff(tmp_path, {"f": old}, {"f": new}), {"f": old})
    assert_same_as_gnu(o)
    assert o.mine[b"f"][1] == new


def test_patch_converted_to_crlf_applies_to_lf_file_like_gnu(tmp_path):
    """A patch saved with CRLF everywhere (its '+++' line too): GNU patch strips the CRs from it."""
    patch = udiff(tmp_path, {"f": LF}, {"f": LF.replace(b"two", b"TWO")}).replace(b"\n", b"\r\n")
    o = both(tmp_path, patch, {"f": LF})
    assert "Stripping trailing CRs" in o.gnu_out
    assert_same_as_gnu(o)
    assert o.mine[b"f"][1] == LF.replace(b"two", b"TWO")


@pytest.mark.parametrize("case", ["lf patch, crlf file", "crlf patch, lf file", "all-crlf patch, crlf file"])
def test_different_line_endings_refused_like_gnu(tmp_path, case):
    lf_patch = udiff(tmp_path, {"f": LF}, {"f": LF.replace(b"two", b"TWO")})
    crlf_patch = udiff(tmp_path, {"f": CRLF}, {"f": CRLF.replace(b"two", b"TWO")})
    patch, target = {"lf patch, crlf file": (lf_patch, CRLF), "crlf patch, lf file": (crlf_patch, LF),
                     "all-crlf patch, crlf file": (lf_patch.replace(b"\n", b"\r\n"), CRLF)}[case]
    o = both(tmp_path, patch, {"f": target})
    assert o.gnu_rc == 1 and "different line endings" in o.gnu_out
    assert_refused_untouched(o, "f: hunk #1", "different line endings")


# ---------------------------------------------------------------- bytes

@pytest.mark.parametrize("case", ["latin-1", "line breakers of str.splitlines", "NUL and lone CR", "no final newline"])
def test_bytes_applied_exactly_like_gnu(tmp_path, case):
    old, new = {
        "latin-1": (b"caf\xe9\nna\xefve\nend\n", b"caf\xe9\nna\xefve \xa9\nend\n"),
        "line breakers of str.splitlines": (b"a\x0cb\nc\x0bd\ne\x1cf\ng\xe2\x80\xa8h\nz\n",
                                            b"a\x0cb\nC\x0bD\ne\x1cf\nG\xe2\x80\xa8H\x85\nz\n"),
        "NUL and lone CR": (b"a\x00b\nc\rd\nz\n", b"a\x00b\nC\rD\x00\nz\n"),
        "no final newline": (b"a\nb\nc", b"a\nb\nC"),
    }[case]
    o = both(tmp_path, udiff(tmp_path, {"f": old}, {"f": new}), {"f": old})
    assert_same_as_gnu(o)
    assert o.mine[b"f"][1] == new


def test_check_reads_non_utf8_patches_and_writes_nothing(tmp_path):
    old, new = b"caf\xe9\r\nz\n", b"caf\xe8\r\nz\n"
    patch = tmp_path / "latin1.patch"
    patch.write_bytes(udiff(tmp_path, {"f": old}, {"f": new}))
    tree = write_tree(tmp_path / "t", {"f": old})
    before = snapshot(tree)
    code, err = cli("check", patch, "--src", tree)
    assert code == 0 and err == "" and snapshot(tree) == before
    assert plan(patch.read_bytes(), tree) == {(tree / "f").resolve(): new}
    code, err = cli("check", tmp_path / "missing.patch", "--src", tree)
    assert code == 2 and "missing.patch" in err and err.count("\n") == 1


def test_non_utf8_file_name_like_gnu(tmp_path):
    name = b"d\xe9j\xe0.txt"
    patch = udiff(tmp_path, {name: LF}, {name: LF.replace(b"one", b"ONE")})
    o = both(tmp_path, patch, {name: LF})
    assert_same_as_gnu(o)
    assert o.mine[name][1] == LF.replace(b"one", b"ONE")


def test_vendor_patches_give_gnu_patchs_trees(tmp_path):
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for p in sorted((REPO / "patches").glob("*.patch")):
        vendor = REPO / "vendor" / p.stem
        mine, gnu = tmp_path / p.stem / "mine", tmp_path / p.stem / "gnu"
        shutil.copytree(vendor, mine, ignore=ignore)
        shutil.copytree(vendor, gnu, ignore=ignore)
        apply_patch(p, mine)
        subprocess.run(["patch", "-p1", "-s", "--batch", "-i", str(p)], cwd=gnu, check=True)
        assert snapshot(mine) == snapshot(gnu), p.name


# ---------------------------------------------------------------- modes and symlinks

def git_new(name, mode, body=b"echo hi\n"):
    lines = b"".join(b"+" + line for line in body.splitlines(keepends=True))
    return (b"diff --git a/%s b/%s\nnew file mode %s\nindex 0000000..1111111\n--- /dev/null\n+++ b/%s\n"
            b"@@ -0,0 +1,%d @@\n" % (name, name, mode, name, len(body.splitlines())) + lines)


@pytest.mark.parametrize("mode", [b"104755", b"102755", b"101777", b"107777", b"100644"])
def test_git_new_file_never_gets_setuid_setgid_sticky(tmp_path, mode):
    o = both(tmp_path, git_new(b"t.sh", mode), {"keep": b"k\n"})
    assert_same_as_gnu(o)
    assert o.mine[b"t.sh"][2] == int(mode, 8) & 0o777


@pytest.mark.parametrize("mode", [0o4755, 0o2750, 0o1777, 0o6711])
def test_patched_special_mode_file_loses_setuid_setgid_sticky_like_gnu(tmp_path, mode):
    o = both(tmp_path, udiff(tmp_path, {"f": LF}, {"f": LF.replace(b"one", b"ONE")}), {"f": (LF, mode)})
    assert o.before[b"f"][2] == mode
    assert_same_as_gnu(o)
    assert o.mine[b"f"][2] == mode & 0o777


def test_git_mode_change_like_gnu(tmp_path):
    files = {"f": (b"x\n", 0o644), "g": (b"y\n", 0o644)}
    patch = (b"diff --git a/f b/f\nold mode 100644\nnew mode 104755\n"                # mode only
             b"diff --git a/g b/g\nold mode 100644\nnew mode 100755\n--- a/g\n+++ b/g\n@@ -1 +1 @@\n-y\n+Y\n")
    o = both(tmp_path, patch, files)
    assert_same_as_gnu(o)
    assert o.mine[b"f"][2] == 0o755 and o.mine[b"g"] == ("file", b"Y\n", 0o755)


def test_git_empty_files_created_and_deleted_like_gnu(tmp_path):
    patch = (b"diff --git a/e b/e\nnew file mode 100755\nindex 0000000..e69de29\n"
             b"diff --git a/gone b/gone\ndeleted file mode 100644\nindex e69de29..0000000\n")
    o = both(tmp_path, patch, {"gone": b""})
    assert_same_as_gnu(o)
    assert o.mine == {b"e": ("file", b"", 0o755)}
    o = both(tmp_path, patch, {"gone": b"not empty\n"}, tag="nonempty")
    assert o.gnu_rc == 1 and "Not deleting" in o.gnu_out
    assert_refused_untouched(o, "gone", "not deleted")


@pytest.mark.parametrize("case", ["new link out", "new link inside", "deleted link", "mode change to link",
                                  "changed link"])
def test_git_symlink_entries_refused_by_name(tmp_path, case):
    patch = {
        "new link out": git_new(b"evil", b"120000", b"../../../etc/passwd\n"),
        "new link inside": git_new(b"evil", b"120000", b"keep\n"),
        "deleted link": b"diff --git a/evil b/evil\ndeleted file mode 120000\n--- a/evil\n+++ /dev/null\n"
                        b"@@ -1 +0,0 @@\n-keep\n",
        "mode change to link": b"diff --git a/evil b/evil\nold mode 100644\nnew mode 120000\n",
        "changed link": b"diff --git a/evil b/evil\nindex 1111111..2222222 120000\n--- a/evil\n+++ b/evil\n"
                        b"@@ -1 +1 @@\n-keep\n\\ No newline at end of file\n+/etc/passwd\n"
                        b"\\ No newline at end of file\n",
    }[case]
    files = {"keep": b"k\n"} if case.startswith("new") else {"keep": b"k\n", "evil": b"keep\n"}
    o = both(tmp_path, patch, files)
    if case == "new link out":
        assert o.gnu[b"evil"][0] == "link"          # GNU patch makes a link that points out of the tree
    assert_refused_untouched(o, "evil", "symlink")


@pytest.mark.parametrize("old,new,files", [
    (b"x/new.py", b"c/new.py", {}),                      # creation: only c/ exists
    (b"c/new py", b"c/new.py", {}),                      # creation: a tie, the first name
    (b"c/f.orig", b"c/f", {"c/f.orig": LF}),             # both exist: the shorter base name
    (b"f", b"sub/f", {}),                                # only the deeper one exists
])
def test_two_different_names_resolved_like_gnu(tmp_path, old, new, files):
    epoch = b"1970-01-01 00:00:00 +0000"
    if files or old == b"f":
        body = b"@@ -1,2 +1,2 @@\n-one\n+ONE\n two\n"
        files = {"c/f": LF, "sub/f": LF, "c/keep": b"k\n", **files}
        header = b"--- a/%s\t2020-01-01 00:00:00 +0000\n+++ b/%s\t2020-01-02 00:00:00 +0000\n" % (old, new)
    else:
        body = b"@@ -0,0 +1 @@\n+x = 1\n"
        files = {"c/keep": b"k\n"}
        header = b"--- a/%s\t%s\n+++ b/%s\t2020-01-02 00:00:00 +0000\n" % (old, epoch, new)
    o = both(tmp_path, header + body, files)
    assert_same_as_gnu(o)


# ---------------------------------------------------------------- refusals GNU patch makes too

def test_symlinked_file_refused_symlinked_folder_followed_like_gnu(tmp_path):
    patch = b"--- a/f\n+++ b/f\n@@ -1 +1 @@\n-one\n+ONE\n"
    base = tmp_path / "links"
    results = {}
    for who in ("mine", "gnu"):
        tree = write_tree(base / who, {"real": b"one\n", "realpkg/f": b"one\n"})
        os.symlink("real", tree / "f")
        os.symlink("realpkg", tree / "pkg")
        results[who] = tree
    (base / "p").write_bytes(patch)
    before = snapshot(results["mine"])
    code, err = cli("apply", base / "p", "--in-place", results["mine"])
    g = subprocess.run(["patch", "-p1", "--batch", "--forward", "--reject-file=-", "-i", str(base / "p")],
                       cwd=results["gnu"], capture_output=True)
    assert g.returncode == 1 and b"not a regular file" in g.stdout
    assert code == 2 and "f: refused, it is a symlink" in err and snapshot(results["mine"]) == before
    folder = b"--- a/pkg/f\n+++ b/pkg/f\n@@ -1 +1 @@\n-one\n+ONE\n"
    (base / "p").write_bytes(folder)
    assert cli("apply", base / "p", "--in-place", results["mine"])[0] == 0
    subprocess.run(["patch", "-p1", "-s", "--batch", "-i", str(base / "p")], cwd=results["gnu"], check=True)
    assert snapshot(results["mine"]) == snapshot(results["gnu"])
    assert (results["mine"] / "realpkg" / "f").read_bytes() == b"ONE\n"


def test_negative_strip_refused_like_gnu(tmp_path):
    patch = udiff(tmp_path, {"f": LF}, {"f": LF.replace(b"two", b"TWO")})
    o = both(tmp_path, patch, {"f": LF}, strip=-1)
    assert o.gnu_rc == 2 and "negative" in o.gnu_out
    assert o.mine_rc == 2 and "-p" in o.mine_err and o.mine == o.before
    with pytest.raises(PatchError, match="-p -1"):
        plan(patch, tmp_path, -1)
    code, err = cli("check", tmp_path / "case" / "change.patch", "--src", tmp_path / "case" / "mine", "-p", "-3")
    assert code == 2 and "-p" in err


@pytest.mark.parametrize("case", ["lines differ", "more content than removed", "epoch-dated (diff -N) differs",
                                  "second of two files differs"])
def test_deletion_that_does_not_match_is_refused_like_gnu(tmp_path, case):
    gone = b"x\ny\nz\n"
    delete = udiff(tmp_path, {"gone": gone, "b": LF}, {"b": LF.replace(b"one", b"ONE")})   # diff -N: epoch dates
    git_delete = b"diff --git a/gone b/gone\ndeleted file mode 100644\n--- a/gone\n+++ /dev/null\n" \
                 b"@@ -1,3 +0,0 @@\n-x\n-y\n-z\n"
    patch, target = {"lines differ": (git_delete, b"u\nv\nw\n"),
                     "more content than removed": (git_delete, gone + b"kept\n"),
                     "epoch-dated (diff -N) differs": (delete, b"x\nY\nz\n"),
                     "second of two files differs": (delete, b"x\ny\nz\nmore\n")}[case]
    o = both(tmp_path, patch, {"gone": target, "b": LF})
    assert o.gnu_rc == 1, o.gnu_out                         # GNU patch fails too
    assert_refused_untouched(o, "gone")
    assert o.mine[b"b"][1] == LF                            # nothing else was changed either


@pytest.mark.parametrize("stamp", ["1970-01-01 00:00:00.000000000 +0000", "1969-12-31 19:00:00 -0500",
                                   "1970-01-02 01:59:59 +0000", "1970-01-02 02:00:00 +0000",
                                   "1969-12-30 23:00:01 +0000", "1969-12-30 23:00:00 +0000",
                                   "2020-01-01 00:00:00 +0000"])
def test_epoch_dated_deletion_decided_like_gnu(tmp_path, stamp):
    """`diff -N` marks a deleted file by dating its new side at the epoch; GNU patch's tolerance is copied."""
    patch = b"--- a/g\t2020-01-01 00:00:00 +0000\n+++ b/g\t%s\n@@ -1 +0,0 @@\n-x\n" % stamp.encode()
    o = both(tmp_path, patch, {"g": b"x\n", "k": b"k\n"})
    assert_same_as_gnu(o)


def test_matching_deletions_delete_like_gnu(tmp_path):
    gone = b"x\ny\nz\n"
    delete = udiff(tmp_path, {"gone": gone, "b": LF}, {"b": LF.replace(b"one", b"ONE")})
    o = both(tmp_path, delete, {"gone": gone, "b": LF})
    assert_same_as_gnu(o)
    assert b"gone" not in o.mine
    again = both(tmp_path, delete, {"b": LF.replace(b"one", b"ONE")}, tag="again")   # the result, patched again
    assert again.gnu_rc == 1 and "Reversed (or previously applied)" in again.gnu_out
    assert again.mine_rc == 1 and "already applied" in again.mine_err and again.mine == again.before


def test_previously_applied_hunk_refused_like_gnu(tmp_path):
    old = b"".join(b"l%d\n" % i for i in range(30))
    new = old.replace(b"l3\n", b"L3\n").replace(b"l25\n", b"L25\n")
    patch = udiff(tmp_path, {"f": old}, {"f": new})
    o = both(tmp_path, patch, {"f": new})                               # whole patch already there
    assert o.gnu_rc != 0 and "Reversed (or previously applied) patch detected" in o.gnu_out
    assert o.mine_rc == 1 and "already applied" in o.mine_err and o.mine == o.before
    half = old.replace(b"l25\n", b"L25\n")                               # second hunk already there
    o = both(tmp_path, patch, {"f": half}, tag="half")
    assert o.gnu_rc == 1 and "FAILED" in o.gnu_out
    assert_refused_untouched(o, "f: hunk #2", "previously applied")


def test_file_created_over_an_existing_one_refused_like_gnu(tmp_path):
    patch = udiff(tmp_path, {}, {"f": b"new\n"})             # diff -N: the old side dated at the epoch
    o = both(tmp_path, patch, {"f": b"already here\n"})
    assert o.gnu_rc == 1
    assert_refused_untouched(o, "f", "already exists")


# ---------------------------------------------------------------- refused where GNU patch does something odd

def test_nul_in_a_path_refused_by_name(tmp_path):
    patch = b"--- a/f\x00.py\n+++ b/f\x00.py\n@@ -1 +1 @@\n-x\n+y\n"
    o = both(tmp_path, patch, {"f": b"x\n"})
    assert o.gnu_rc == 0 and o.gnu[b"f"][1] == b"y\n"        # GNU patch cuts the name at the NUL: patches f
    assert_refused_untouched(o, "NUL", r"f\x00.py")


@pytest.mark.parametrize("case", ["binary", "git binary", "rename"])
def test_binary_and_rename_entries_refused_by_name(tmp_path, case):
    patch = {"binary": b"diff -ruN a/f b/f\nBinary files a/f and b/f differ\n",
             "git binary": b"diff --git a/f b/f\nindex 1..2 100644\nGIT binary patch\nliteral 1\nIcmZ?d00001\n\n",
             "rename": b"diff --git a/f b/g\nsimilarity index 100%\nrename from f\nrename to g\n"}[case]
    o = both(tmp_path, patch, {"f": b"\x00\x01\n"})
    if case == "rename":
        assert o.gnu_rc == 0 and b"g" in o.gnu               # GNU patch renames; we refuse renames
    else:
        assert o.gnu_rc != 0 and o.gnu == o.before           # GNU patch refuses binary diffs too
    assert_refused_untouched(o, "f")


# ---------------------------------------------------------------- no traceback for any input

def test_hand_made_malformed_patches_get_one_message(tmp_path):
    tree = write_tree(tmp_path / "t", {"f": LF, "d/g": LF})
    before = snapshot(tree)
    cases = [
        b"", b"\x00\xff\xfe garbage", b"--- a/f\n+++ b/f\n", b"--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n one\n",
        b"--- a/f\n+++ b/f\n@@ -1," + b"9" * 5000 + b" +1 @@\n-one\n",
        b"--- a/f\n+++ b/f\n@@ -1 +1 @@\n-one\n+ONE\n@@ garbage\n",
        b"--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n one\n?two\n",
        b"--- a/f\n+++ b/f\n@@ -1 +1 @@\n\\ No newline\n-one\n+ONE\n",
        b"--- \n+++ \n@@ -1 +1 @@\n-one\n+ONE\n",
        b'--- "a/f\\9"\n+++ "b/f\\9"\n@@ -1 +1 @@\n-one\n+ONE\n', b'--- "a/f\n+++ "b/f\n@@ -1 +1 @@\n-one\n+ONE\n',
        b'--- "a/f\\000x"\n+++ "b/f\\000x"\n@@ -1 +1 @@\n-one\n+ONE\n',
        b"--- a\n+++ b\n@@ -1 +1 @@\n-one\n+ONE\n",                                   # nothing left after -p1
        b"--- a/d\n+++ b/d\n@@ -1 +1 @@\n-one\n+ONE\n",                               # a folder
        b"--- /dev/null\n+++ b/f/sub\n@@ -0,0 +1 @@\n+x\n",                           # under a file
        b"--- /dev/null\n+++ b/n\n@@ -0,0 +1 @@\n+x\n--- /dev/null\n+++ b/n\n@@ -0,0 +1 @@\n+y\n",
        b"--- a/f\n+++ /dev/null\n@@ -1,5 +0,0 @@\n-one\n-two\n-three\n-four\n-five\n"
        b"--- a/f\n+++ b/f\n@@ -1 +1 @@\n-one\n+ONE\n",                               # changed after deleted
        b"diff --git a/f b/f\n", b"diff --git a/f b/g h\nnew mode 100755\n", b"diff --git \n",
        b"diff --git a/f b/f\nnew mode 040755\n", b"diff --git a/f b/f\nnew mode 160000\n",
        b"diff --git a/f b/f\nold mode 100644\nindex 0000000..1234567\nnew mode 100755\n",           # creates f
        b"diff --git a/q b/q\nnew file mode 100644\ndeleted file mode 100644\n",
        b"diff --git a/f b/f\nindex 1234567..7654321 100755\nnew mode 100644\n",              # two modes
        b"diff --git a/f b/f\nindex 12345z..7654321\n",
        b"--- /dev/null\n+++ /dev/null\n@@ -0,0 +1 @@\n+x\n",
        b"--- a/z\t1970-01-01 00:00:00 +0000\n+++ /dev/null\n@@ -0,0 +1 @@\n+x\n",
        b"--- a/f/\n+++ b/f/\n@@ -1 +1 @@\n-one\n+ONE\n", b"--- /dev/null\n+++ b/newdir/\n@@ -0,0 +1 @@\n+x\n",
        b"diff --git a/f b/f\nnew file mode 100644\n--- a/f\n+++ /dev/null\n@@ -0,0 +1 @@\n+x\n",
    ]
    for k, patch in enumerate(cases):
        p = tmp_path / f"bad{k}.patch"
        p.write_bytes(patch)
        for args in (("apply", p, "--in-place", tree), ("check", p, "--src", tree)):
            code, err = cli(*args)
            assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, (patch, err)
        with pytest.raises(PatchError):
            plan(patch, tree)
        assert snapshot(tree) == before, patch
    far = both(tmp_path, b"--- a/f\n+++ b/f\n@@ -99999999999999 +1 @@\n-one\n+ONE\n", {"f": LF})
    assert_same_as_gnu(far)                                   # a far-off start line: an offset, as GNU finds
    code, err = cli("apply", tmp_path, "--in-place", tree)                       # the patch is a folder
    assert code == 2 and str(tmp_path) in err
    long_name = tmp_path / "long.patch"                                          # the file system refuses it
    long_name.write_bytes(b"--- /dev/null\n+++ b/" + b"n" * 5000 + b"\n@@ -0,0 +1 @@\n+x\n")
    code, err = cli("apply", long_name, "--in-place", tree)
    assert code == 2 and "File name too long" in err and err.count("\n") == 1 and len(err) < 400
    assert snapshot(tree) == before
    create = tmp_path / "create.patch"
    create.write_bytes(b"--- /dev/null\n+++ b/new.py\n@@ -0,0 +1 @@\n+x\n")
    code, err = cli("apply", create, "--in-place", tmp_path / "no" / "such")     # no tree: nothing created
    assert code == 2 and "not an existing folder" in err and not (tmp_path / "no").exists()


def mutate(rng: random.Random, data: bytes) -> bytes:
    lines = data.split(b"\n")
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(7)
        k = rng.randrange(len(lines))
        if op == 0:
            del lines[k]
        elif op == 1:
            lines.insert(k, lines[rng.randrange(len(lines))])
        elif op == 2 and lines[k]:
            b = bytearray(lines[k])
            b[rng.randrange(len(b))] = rng.choice(b" +-@\\\t\r\x00\xff/.0123456789,")
            lines[k] = bytes(b)
        elif op == 3:
            lines[k] = rng.choice([b"", b"@@", b"@@ -1 +1 @@", b"\\ No newline at end of file", b"--- a/f",
                                   b"+++ /dev/null", b"diff --git a/f b/f", b"new file mode 120000",
                                   b"new mode 104755", b"--- /dev/null", b"+++ b/../x", b"+++ b/c/new"])
        elif op == 4:
            lines = lines[:k]
        elif op == 5:
            lines[k] = re_number(rng, lines[k])
        else:
            lines[k] = lines[k] + b"\r"
        if not lines:
            lines = [b""]
    return b"\n".join(lines)


def re_number(rng, line):
    if not line.startswith(b"@@"):
        return line
    return b"@@ -%d,%d +%d,%d @@" % tuple(rng.choice([0, 1, 2, 3, 7, 10**6]) for _ in range(4))


GIT_FILES = {"a.py": b"".join(b"%d\n" % i for i in range(1, 31)), "b.txt": b"one\r\ntwo\r\nthree\r\n",
             "gone": b"g1\ng2\n", "tool.sh": (b"sh\n", 0o644)}
GIT_PATCH = b"""diff --git a/a.py b/a.py
index e8823e1..20f0a5a 100644
--- a/a.py
+++ b/a.py
@@ -3,6 +3,7 @@
 3
 4
 5
+hook()
 6
 7
 8
diff --git a/b.txt b/b.txt
index e1587ff..103b2f6 100644
--- a/b.txt
+++ b/b.txt
@@ -1,3 +1,3 @@
 one\r
-two\r
+TWO\r
 three\r
diff --git a/gone b/gone
deleted file mode 100644
index afacc5d..0000000
--- a/gone
+++ /dev/null
@@ -1,2 +0,0 @@
-g1
-g2
diff --git a/new.py b/new.py
new file mode 100755
index 0000000..7d4290a
--- /dev/null
+++ b/new.py
@@ -0,0 +1 @@
+x = 1
diff --git a/tool.sh b/tool.sh
old mode 100644
new mode 100755
""".replace(b"\\r", b"\r")


@pytest.mark.parametrize("style", ["diff -ruN", "git"])
def test_fuzzed_patches_never_traceback_and_agree_with_gnu_when_applied(tmp_path, style):
    """300 seeded mutations (APPLIER_FUZZ_CASES) of a multi-file diff (changes, a CRLF file, a creation, a deletion; for git also
    modes): every one is applied or refused with one message and an untouched tree; every one we apply, GNU
    patch applies to the same bytes and modes (the unmutated patch too)."""
    if style == "git":
        files, good = GIT_FILES, GIT_PATCH          # the text `git diff --cached` printed for this change
    else:
        files = {"a.py": b"".join(b"line %d\n" % i for i in range(40)), "c/b.txt": CRLF, "gone": b"g1\ng2\n"}
        new = {"a.py": files["a.py"].replace(b"line 5\n", b"line 5\nhook()\n").replace(b"line 30\n", b""),
               "c/b.txt": CRLF.replace(b"two", b"TWO"), "c/new.py": b"x = 1\n"}
        good = udiff(tmp_path, files, new)
    rng = random.Random(23)
    applied = refused = 0
    for k in range(1 + int(os.environ.get("APPLIER_FUZZ_CASES", "300"))):   # more: APPLIER_FUZZ_CASES=3000
        patch = mutate(rng, good) if k else good
        base = tmp_path / "fuzz"
        shutil.rmtree(base, ignore_errors=True)
        tree = write_tree(base / "mine", files)
        before = snapshot(tree)
        (base / "p").write_bytes(patch)
        code, err = cli("apply", base / "p", "--in-place", tree)
        assert code in (0, 1, 2) and "Traceback" not in err, (k, patch, err)
        if code:
            assert k, err                                     # the unmutated patch applies
            refused += 1
            assert snapshot(tree) == before and err.count("\n") == 1, (k, patch, err)
            continue
        applied += 1
        gnu = write_tree(base / "gnu", files)
        g = subprocess.run(["patch", "-p1", "--batch", "--forward", "--no-backup-if-mismatch", "--reject-file=-", "-i",
                            str(base / "p")], cwd=gnu, capture_output=True)
        assert g.returncode == 0 and snapshot(gnu) == snapshot(tree), (k, patch, g.stdout)
        if not k:
            assert snapshot(tree) != before                   # the unmutated patch changed the tree
    assert applied >= 30 and refused >= 100, (applied, refused)   # both paths were exercised


def test_api_raises_only_patch_errors_on_fuzz(tmp_path):
    tree = write_tree(tmp_path / "t", {"f": LF})
    rng = random.Random(8)
    for _ in range(300):
        data = bytes(rng.choice(b"-+ @\\\n\r\t/,0123456789abf\x00\xe9") for _ in range(rng.randint(0, 120)))
        data = rng.choice([b"", b"--- a/f\n+++ b/f\n", b"diff --git a/f b/f\n"]) + data
        try:
            plan(data, tree)
        except PatchError:
            pass
    assert snapshot(tree) == {b"f": ("file", LF, snapshot(tree)[b"f"][2])}
