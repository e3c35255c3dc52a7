"""`sparse-core apply` is all-or-nothing, confined to its tree, keeps modes and knows an applied patch
(issue 14 item 3). GNU patch is the reference for modes and for what a good diff produces."""
import contextlib
import io
import os
import shutil
import stat
import subprocess

import pytest

from sparse_core import patching
from sparse_core.patching import AlreadyApplied, OutsideTree, PatchError, apply_patch, apply_to_copy

A = "".join(f"line {i}\n" for i in range(1, 31))


def make_tree(root):
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text(A)
    (root / "b.py").write_text("x = 1\ny = 2\n")
    (root / "run.sh").write_text("echo hi\n")
    os.chmod(root / "run.sh", 0o755)
    os.chmod(root / "b.py", 0o640)
    return root


def edit(root):
    (root / "pkg" / "a.py").write_text(A.replace("line 5\n", "line 5\nhook()\n"))
    (root / "b.py").write_text("x = 1\ny = 3\n")
    (root / "run.sh").write_text("echo hi\necho there\n")
    (root / "pkg" / "sub").mkdir()
    (root / "pkg" / "sub" / "new.py").write_text("added = True\n")


@pytest.fixture
def patch(tmp_path):
    old = make_tree(tmp_path / "a")
    new = tmp_path / "b"
    shutil.copytree(old, new)
    edit(new)
    text = subprocess.run(["diff", "-ruN", "a", "b"], cwd=tmp_path, capture_output=True, text=True).stdout
    path = tmp_path / "change.patch"
    path.write_text(text)
    return path


def snapshot(root):
    """Every path under root with its bytes and mode (dirs too): 'byte-identical' means equal snapshots."""
    out = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = (p.read_bytes() if p.is_file() else None, stat.S_IMODE(p.lstat().st_mode))
    return out


class Result:
    def __init__(self, returncode, stderr):
        self.returncode, self.stderr = returncode, stderr


def cli(*args):
    """`sparse-core ...` in this process (its main() is the console script's entry point)."""
    from sparse_core.cli import main
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([str(a) for a in args])
    return Result(code, err.getvalue())


def test_failed_rename_midway_rolls_back_to_identical_tree(patch, tmp_path, monkeypatch):
    tree = make_tree(tmp_path / "t")
    before = snapshot(tree)
    real_replace = os.replace
    calls = []

    def failing_replace(src, dst):
        calls.append(dst)
        if len(calls) == 3:   # two files already replaced, the third write fails
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(patching.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        apply_patch(patch, tree)
    monkeypatch.undo()
    assert calls[3:] == calls[1::-1]         # the two replaced files were restored, last first
    assert snapshot(tree) == before          # contents, modes, no temp/backup files, no new folders


def test_failed_staging_write_leaves_tree_identical(patch, tmp_path, monkeypatch):
    tree = make_tree(tmp_path / "t")
    before = snapshot(tree)
    real_mkstemp = patching.tempfile.mkstemp
    count = []

    def failing_mkstemp(*a, **k):
        count.append(1)
        if len(count) == 2:
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(*a, **k)

    monkeypatch.setattr(patching.tempfile, "mkstemp", failing_mkstemp)
    with pytest.raises(PermissionError):
        apply_patch(patch, tree)
    monkeypatch.undo()
    assert snapshot(tree) == before


def test_cli_in_place_failure_says_nothing_written_and_is_true(patch, tmp_path):
    tree = make_tree(tmp_path / "t")
    (tree / "b.py").write_text("conflict\n")
    before = snapshot(tree)
    r = cli("apply", patch, "--in-place", tree)
    assert r.returncode == 2 and "b.py: hunk #1" in r.stderr and "nothing was written" in r.stderr
    assert snapshot(tree) == before


def test_modes_match_gnu_patch(patch, tmp_path):
    mine = make_tree(tmp_path / "mine")
    gnu = make_tree(tmp_path / "gnu")
    apply_patch(patch, mine)
    subprocess.run(["patch", "-p1", "-s", "-i", str(patch)], cwd=gnu, check=True)
    assert snapshot(mine) == snapshot(gnu)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((mine / "pkg" / "sub" / "new.py").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((mine / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((mine / "b.py").stat().st_mode) == 0o640


def test_git_new_file_mode_is_honoured(tmp_path):
    tree = tmp_path / "t"
    tree.mkdir()
    p = tmp_path / "git.patch"
    p.write_text("diff --git a/tool.sh b/tool.sh\nnew file mode 100755\nindex 0000000..1111111\n"
                 "--- /dev/null\n+++ b/tool.sh\n@@ -0,0 +1 @@\n+echo tool\n")
    apply_patch(p, tree)
    assert stat.S_IMODE((tree / "tool.sh").stat().st_mode) == 0o755
    assert (tree / "tool.sh").read_text() == "echo tool\n"


@pytest.mark.parametrize("name", ["../../escaped.py", "sub/../../escaped.py", "/tmp/escaped-abs.py"])
def test_paths_outside_the_tree_are_refused(tmp_path, name):
    tree = make_tree(tmp_path / "deep" / "t")
    strip = 0 if name.startswith("/") else 1
    header = name if strip == 0 else f"b/{name}"
    p = tmp_path / "evil.patch"
    p.write_text(f"--- /dev/null\n+++ {header}\n@@ -0,0 +1 @@\n+owned = True\n")
    before = snapshot(tmp_path)
    with pytest.raises(OutsideTree, match="outside the target tree"):
        apply_patch(p, tree, strip)
    r = cli("apply", p, "--in-place", tree, "-p", strip)
    assert r.returncode == 2 and "outside the target tree" in r.stderr
    assert snapshot(tmp_path) == before
    assert not os.path.exists("/tmp/escaped-abs.py")


def test_symlink_leading_out_is_refused(patch, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.py").write_text(A)
    tree = make_tree(tmp_path / "t")
    shutil.rmtree(tree / "pkg")
    os.symlink(outside, tree / "pkg")          # pkg/a.py now resolves outside the tree
    before = snapshot(tmp_path)
    with pytest.raises(OutsideTree, match="outside the target tree"):
        apply_patch(patch, tree)
    assert snapshot(tmp_path) == before and (outside / "a.py").read_text() == A


def test_applying_twice_says_already_applied(patch, tmp_path):
    tree = make_tree(tmp_path / "t")
    assert cli("apply", patch, "--in-place", tree).returncode == 0
    after = snapshot(tree)
    with pytest.raises(AlreadyApplied, match="already applied"):
        apply_patch(patch, tree)
    r = cli("apply", patch, "--in-place", tree)
    assert r.returncode == 1 and "already applied" in r.stderr and "nothing was written" in r.stderr
    assert snapshot(tree) == after
    out = tmp_path / "copy"
    with pytest.raises(AlreadyApplied):
        apply_to_copy(patch, tree, out)
    assert not out.exists()


def test_half_applied_tree_is_not_called_applied(patch, tmp_path):
    tree = make_tree(tmp_path / "t")
    (tree / "b.py").write_text("x = 1\ny = 3\n")   # one file already has the change, the rest not
    with pytest.raises(PatchError, match="b.py: hunk #1") as info:
        apply_patch(patch, tree)
    assert not isinstance(info.value, AlreadyApplied)
