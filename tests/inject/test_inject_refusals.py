"""`sparse-core inject` refuses, writing nothing, when a hook point is missing or found more than once (naming the
hook point, the file, the lines and what it looked for), when the checkout is not recognised or fits several
recipes, when it is partly injected, or when a file does not parse; and its anchors are syntactic: renamed
variables and moved code are followed."""
import re

import pytest

from inject_checks import ROOT, cli, copy_vendor, tree_files


def edited(vendor, tmp_path, old, new, count=1):
    """A copy of the vendor tree with `old` (a whole line of train.py) replaced by `new`."""
    tree = copy_vendor(vendor, tmp_path / "mine")
    train = tree / "train.py"
    text = train.read_text()
    assert text.count(old) == count, old
    train.write_text(text.replace(old, new))
    return tree


def assert_refused(tree, tmp_path, *expected):
    before = tree_files(tree)
    code, out, err = cli("inject", tree, "--out", tmp_path / "out", "--diff", tmp_path / "my.diff")
    assert code == 2 and out == "", err
    for text in expected:
        assert text in err, (text, err)
    assert "nothing was written" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "my.diff").exists()
    assert tree_files(tree) == before
    return err


REMOVED = {  # vendor -> (line taken out of train.py, the hook point then missing, what it looked for, every
    #                     hook point then missing: the D loss is found from the D step)
    "sngan": ("            optim_D.step()\n", "D optimizer step", "`<opt_D>.step()` in main()",
              ["D loss", "D optimizer step"]),
    "fastgan": ("            stats_writer.write(stats)\n", "stats row", "`stats_writer.write(<row>)` in main()",
                ["stats row"]),
}
DUPLICATED = {  # vendor -> (line written twice, the hook point then ambiguous)
    "sngan": ("            update_ema(net_G_ema, net_G, ema_decay_at(args.ema_decay, step))  # (c) EMA of G after "
              "every G step\n", "EMA update"),
    "fastgan": ("        nimg += real_image.size(0)  # (e) real images shown to D\n", "iteration end"),
}


@pytest.mark.parametrize("vendor", sorted(REMOVED))
def test_missing_hook_point_is_refused(vendor, tmp_path):
    line, hook, looked_for, all_missing = REMOVED[vendor]
    tree = edited(vendor, tmp_path, line, "")
    err = assert_refused(tree, tmp_path, f"{hook}: missing in train.py: looked for {looked_for}")
    assert re.findall(r"\n  ([^:\n]+): missing in", err) == all_missing and "ambiguous" not in err
    code, out, err = cli("inject", tree, "--check")
    assert code == 2 and f"{hook}: missing in train.py" in err


@pytest.mark.parametrize("vendor", sorted(DUPLICATED))
def test_duplicated_hook_point_is_refused(vendor, tmp_path):
    line, hook = DUPLICATED[vendor]
    tree = edited(vendor, tmp_path, line, line + line)
    lines = (tree / "train.py").read_text().splitlines(keepends=True)
    first = lines.index(line) + 1
    assert_refused(tree, tmp_path, f"{hook}: ambiguous in train.py (lines {first}, {first + 1}): looked for")


def test_renamed_and_moved_code_is_followed(patched, tmp_path):
    """The hook points are found by syntax: a fork that renamed D and its optimizer and moved code down gets the
    same hooks with its own names (reference: the patched tree with the same renames)."""
    tree = copy_vendor("sngan", tmp_path / "fork")
    rename = [(r"\bnet_D\b", "disc"), (r"\boptim_D\b", "opt_disc")]
    text = (tree / "train.py").read_text()
    for old, new in rename:
        text = re.sub(old, new, text)
    text = text.replace("def main(argv=None):\n", "# a fork's own comment\n\n\ndef main(argv=None):\n")
    (tree / "train.py").write_text(text)
    want = (patched("sngan") / "train.py").read_text()
    for old, new in rename:
        want = re.sub(old, new, want)
    want = want.replace("def main(argv=None):\n", "# a fork's own comment\n\n\ndef main(argv=None):\n")
    code, diff, err = cli("inject", tree, "--in-place")
    assert code == 0, err
    assert (tree / "train.py").read_text() == want
    assert 'ctrl.optimizer_step("D", opt_disc)' in diff


def test_unrecognised_and_ambiguous_checkouts(tmp_path):
    code, out, err = cli("inject", ROOT / "vendor" / "common")
    assert code == 2 and "no codebase recognised" in err and "--codebase" in err
    # a tree with the marks of two codebases (sngan's and fastgan's): auto refuses and names both
    tree = tmp_path / "both"
    tree.mkdir()
    (tree / "train.py").write_text("import vendor.common\n\n\ndef build_argparser():\n    pass\n\n\n"
                                   "def main():\n    pass\n")
    (tree / "models.py").write_text("class ResGenerator32:\n    pass\n\n\nclass ResDiscriminator32:\n    pass\n\n\n"
                                    "class Generator:\n    pass\n\n\nclass SimpleDecoder:\n    pass\n")
    (tree / "losses.py").write_text("")
    (tree / "operation.py").write_text("def copy_G_params(model):\n    pass\n")
    code, out, err = cli("inject", tree)
    assert code == 2 and "ambiguous" in err and "sngan (sparse-gan vendor tree)" in err \
        and "fastgan (sparse-gan vendor tree)" in err
    # naming the codebase: its hook points say what is missing
    code, out, err = cli("inject", tree, "--codebase", "fastgan")
    assert code == 2 and "D optimizer constructed: missing in train.py" in err


def test_partly_injected_tree_is_refused(tmp_path):
    tree = copy_vendor("stylegan2_ada", tmp_path / "sg2")
    train = tree / "train.py"
    train.write_text("import sparse_core.integration as sparse\n" + train.read_text())
    before = tree_files(tree)
    code, out, err = cli("inject", tree, "--in-place")
    assert code == 2 and "partly injected" in err and "training/training_loop.py" in err
    assert tree_files(tree) == before


def test_unparsable_file_and_existing_or_nested_out_are_refused(tmp_path):
    tree = edited("autogan", tmp_path, "def main(argv=None):\n", "def main(argv=None:\n")
    code, out, err = cli("inject", tree, "--codebase", "autogan")
    assert code == 2 and "train.py: does not parse as Python" in err
    (tmp_path / "taken").mkdir()
    code, out, err = cli("inject", ROOT / "vendor" / "autogan", "--out", tmp_path / "taken")
    assert code == 2 and "exists" in err and not any((tmp_path / "taken").iterdir())
    tree = copy_vendor("autogan", tmp_path / "fine")
    before = tree_files(tree)
    code, out, err = cli("inject", tree, "--out", tree / "work" / "copy")
    assert code == 2 and "inside the checkout" in err and tree_files(tree) == before
