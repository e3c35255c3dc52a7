"""The all-or-nothing patch applier agrees with GNU patch and refuses cleanly."""
import shutil
import subprocess
import sys

import pytest

from sparse_core.patching import PatchError, apply_patch, apply_to_copy

A = "".join(f"line {i}\n" for i in range(1, 31))


def make_tree(root):
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text(A)
    (root / "b.py").write_text("x = 1\ny = 2\n")
    return root


def diff(tmp_path, edit):
    """A real unified diff made by `diff -ruN` between a tree and an edited copy."""
    old = make_tree(tmp_path / "a")
    new = tmp_path / "b"
    shutil.copytree(old, new)
    edit(new)
    out = subprocess.run(["diff", "-ruN", "a", "b"], cwd=tmp_path, capture_output=True, text=True).stdout
    p = tmp_path / "change.patch"
    p.write_text(out)
    return p, new


def edit_ok(root):
    t = (root / "pkg" / "a.py").read_text().replace("line 5\n", "line 5\nhook()\n").replace("line 25\n", "")
    (root / "pkg" / "a.py").write_text(t)
    (root / "b.py").write_text("x = 1\ny = 3\n")
    (root / "new.py").write_text("added = True\n")


def test_matches_gnu_patch(tmp_path):
    patch, want = diff(tmp_path, edit_ok)
    mine = make_tree(tmp_path / "mine")
    apply_patch(patch, mine)
    gnu = make_tree(tmp_path / "gnu")
    subprocess.run(["patch", "-p1", "-s", "-i", str(patch)], cwd=gnu, check=True)
    for rel in ("pkg/a.py", "b.py", "new.py"):
        assert (mine / rel).read_text() == (want / rel).read_text() == (gnu / rel).read_text()


def test_offset_hunks_still_apply(tmp_path):
    patch, want = diff(tmp_path, edit_ok)
    tree = make_tree(tmp_path / "t")
    (tree / "pkg" / "a.py").write_text("# header\n# more\n" + A)
    apply_patch(patch, tree)
    assert (tree / "pkg" / "a.py").read_text() == "# header\n# more\n" + (want / "pkg" / "a.py").read_text()


def test_failing_hunk_is_named_and_nothing_is_written(tmp_path):
    patch, _ = diff(tmp_path, edit_ok)
    tree = make_tree(tmp_path / "t")
    (tree / "pkg" / "a.py").write_text(A.replace("line 24\n", "changed upstream\n"))
    before = {p: p.read_text() for p in tree.rglob("*.py")}
    with pytest.raises(PatchError, match=r"pkg/a.py: hunk #2 \(@@ -22,7 \+23,6 @@\) does not apply"):
        apply_patch(patch, tree)
    assert {p: p.read_text() for p in tree.rglob("*.py")} == before   # b.py (a later, fine file) untouched too
    assert not (tree / "new.py").exists()


def test_copy_mode_leaves_no_output_on_failure_and_cli_reports(tmp_path):
    patch, _ = diff(tmp_path, edit_ok)
    src = make_tree(tmp_path / "src")
    (src / "b.py").write_text("something else\n")
    out = tmp_path / "work" / "patched"
    with pytest.raises(PatchError, match="b.py: hunk #1"):
        apply_to_copy(patch, src, out)
    assert not out.exists() and list((tmp_path / "work").iterdir()) == []
    r = subprocess.run([sys.executable, "-m", "sparse_core", "apply", str(patch), "--src", str(src), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "b.py: hunk #1" in r.stderr and "nothing was written" in r.stderr
    good = make_tree(tmp_path / "good")
    assert apply_to_copy(patch, good, out) == out and (out / "new.py").exists()
    with pytest.raises(PatchError, match="exists"):
        apply_to_copy(patch, good, out)


def test_not_a_diff(tmp_path):
    p = tmp_path / "x.patch"
    p.write_text("hello\n")
    with pytest.raises(PatchError, match="unified diff"):
        apply_patch(p, tmp_path)
