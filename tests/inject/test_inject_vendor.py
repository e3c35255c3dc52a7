"""`sparse-core inject` on our five vendor trees gives exactly the trees `patches/<vendor>.patch` gives (every
file, byte for byte), recognises each tree by itself, and a second run says "already injected" and writes
nothing. The hook points are found by syntax tree, not by the patch's text: the refusal tests
(test_inject_refusals.py) show they move with the code."""
import subprocess

import pytest

from inject_checks import ROOT, VENDORS, cli, copy_vendor, tree_files


@pytest.mark.parametrize("vendor", VENDORS)
def test_injected_tree_is_the_patched_tree_and_second_run_is_refused(vendor, patched, tmp_path):
    code, diff, err = cli("inject", ROOT / "vendor" / vendor, "--out", tmp_path / "out")
    assert code == 0, err
    assert f"is {vendor} (sparse-gan vendor tree)" in err          # recognised with --codebase auto
    injected, reference = tree_files(tmp_path / "out"), tree_files(patched(vendor))
    assert injected.keys() == reference.keys()
    assert [f for f in injected if injected[f] != reference[f]] == []
    assert injected != tree_files(ROOT / "vendor" / vendor)        # it did change something
    # the printed diff is an ordinary patch: GNU patch applied to a fresh copy gives the same tree
    copy = copy_vendor(vendor, tmp_path / "gnu")
    subprocess.run(["patch", "-p1", "-s"], input=diff.encode(), cwd=copy, check=True)
    assert tree_files(copy) == reference
    # idempotence: the injected tree is recognised as injected; nothing is written
    before = tree_files(tmp_path / "out")
    code, out, err = cli("inject", tmp_path / "out", "--in-place")
    assert code == 1 and "already injected" in err and out == ""
    assert tree_files(tmp_path / "out") == before


def test_in_place_and_diff_file(patched, tmp_path):
    tree = copy_vendor("sngan", tmp_path / "mine")
    code, diff, err = cli("inject", tree, "--in-place", "--diff", tmp_path / "sngan.diff")
    assert code == 0, err
    assert tree_files(tree) == tree_files(patched("sngan"))
    assert (tmp_path / "sngan.diff").read_text() == diff
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "sngan.diff"]   # no temporary files left


def test_dry_run_writes_nothing(tmp_path):
    tree = copy_vendor("fastgan", tmp_path / "mine")
    before = tree_files(tree)
    code, diff, err = cli("inject", tree)
    assert code == 0 and "dry run" in err
    assert diff.startswith("diff -ruN a/train.py b/train.py\n--- a/train.py\n+++ b/train.py\n@@ ")
    assert tree_files(tree) == before


def test_check_reports_each_hook_point_where_it_is(tmp_path):
    tree = ROOT / "vendor" / "autogan"
    code, out, err = cli("inject", tree, "--check")
    assert code == 0 and "is autogan (sparse-gan vendor tree)" in err
    lines = (tree / "train.py").read_text().splitlines()
    # independent reference: the line numbers of the anchors, counted here by text
    want = {"D optimizer step": lines.index("            dis_optimizer.step()") + 1,
            "G optimizer step": lines.index("                gen_optimizer.step()") + 1,
            "iteration end": lines.index('            c["global_steps"] += 1') + 1,
            "progress line": next(k for k, l in enumerate(lines) if "line = progress.tick(" in l) + 1,
            "real batch": lines.index("        for real_imgs in batches.epoch(device):") + 2,   # its first line
            "import": max(k for k, l in enumerate(lines) if l.startswith(("from ", "import "))) + 1}
    for name, line in want.items():
        assert f"{name}: found at train.py:{line}\n" in err
    assert err.count(": found at train.py:") == 23 and out == ""
    code, out, err = cli("inject", tree, "--check", "--out", tmp_path / "x")     # --check writes nothing
    assert code == 2 and "--check only reports" in err and not (tmp_path / "x").exists()

