"""The engine's edits on a small checkout of our own, with a recipe written here: where `before` / `after` /
`replace` put the text (indentation, comments, blocks), `${operand}` parentheses, captured names flowing into
later hook points, and the missing / ambiguous reports. Expected files are written out by hand."""
import textwrap

import pytest

from sparse_core.inject.engine import (Hook, InjectError, Recipe, Signature, assigns, call_stmts, import_hook,
                                       inject, recognise)

TRAIN = textwrap.dedent('''\
    import torch  # the framework
    from lib import make_nets


    def main():
        g, d = make_nets()
        opt = torch.optim.SGD(d.parameters(), lr=0.1)
        for step in range(3):
            # the critic's loss
            loss = d(g()) if step else -d(
                g())
            loss.backward()
            opt.step()
            if step:
                print(step)
                # end of the logging block
            # after the block
        return 0
    ''')

WANT = textwrap.dedent('''\
    import torch  # the framework
    from lib import make_nets
    import sparse_core.integration as sparse


    def main():
        g, d = make_nets()
        opt = torch.optim.SGD(d.parameters(), lr=0.1)
        ctrl = make(opt,
                    "two lines")
        for step in range(3):
            hook_before(step)
            # the critic's loss
            loss = (d(g()) if step else -d(
                g())) + extra()
            loss.backward()
            ctrl.step(opt)
            if step:
                print(step)
                # end of the logging block
            hook_after_block()
            # after the block
        return 0
    ''')


def recipe(extra_hooks=()):
    opt = Hook("optimizer", "train.py", "`<opt> = torch.optim.*(...)`",
               lambda src, caps: assigns(src, r"torch\.optim\.\w+", within="main", capture="opt"), "after",
               "ctrl = make(${opt},\n            \"two lines\")")
    return Recipe("sngan", "engine test", (Signature("train.py", "def main", lambda src: bool(src.functions("main"))),),
                  (import_hook("train.py", "import sparse_core.integration as sparse"), opt,
                   Hook("loss", "train.py", "`loss = ...`",
                        lambda src, caps: assigns(src, r"d", within="main", target="loss", edit="value"), "replace",
                        "${operand} + extra()"),
                   Hook("before the loss", "train.py", "`loss = ...`",
                        lambda src, caps: assigns(src, r"d", within="main", target="loss"), "before", "hook_before(step)"),
                   Hook("step", "train.py", "`<opt>.step()`",
                        lambda src, caps: call_stmts(src, caps["opt"] + r"\.step", within="main"), "replace",
                        "ctrl.step(${opt})"),
                   Hook("print call", "train.py", "`print(...)` in main()",
                        lambda src, caps: call_stmts(src, r"print", within="main"), "none", ""),
                   Hook("logging block", "train.py", "the `if step:` block",
                        lambda src, caps: [type(m)(src.parent(src.parent(src.parent(m.node))))
                                           for m in call_stmts(src, r"print", within="main")], "after",
                        "hook_after_block()"),
                   *extra_hooks))


def test_edits_land_where_the_format_says(tmp_path):
    (tmp_path / "train.py").write_text(TRAIN)
    result = inject(tmp_path, recipe=recipe())
    assert result.ok, result.report()
    assert result.new_text["train.py"] == WANT
    # CRLF in, CRLF out, every other byte kept
    (tmp_path / "train.py").write_bytes(TRAIN.replace("\n", "\r\n").encode())
    assert inject(tmp_path, recipe=recipe()).new_text["train.py"] == WANT.replace("\n", "\r\n")


def test_missing_ambiguous_and_dependent_hook_points_are_reported(tmp_path):
    text = TRAIN.replace("    opt = torch.optim.SGD(d.parameters(), lr=0.1)\n", "")
    text = text.replace("        loss.backward()\n", "        loss.backward()\n        print(0)\n")
    assert text.count("print(") == TRAIN.count("print(") + 1 and "torch.optim" not in text
    (tmp_path / "train.py").write_text(text)
    result = inject(tmp_path, recipe=recipe())
    assert not result.ok and result.new_text == {}
    report = result.report().splitlines()
    assert "optimizer: missing in train.py: looked for `<opt> = torch.optim.*(...)`" in report
    assert any(line.startswith("step: missing in train.py: looked for `<opt>.step()`; needs 'opt'") for line in report)
    assert "print call: ambiguous in train.py (lines 12, 15): looked for `print(...)` in main()" in report


def test_recognition_and_already_injected(tmp_path):
    (tmp_path / "train.py").write_text(TRAIN)
    r = recipe()
    assert recognise(tmp_path, candidates=[r]) is r
    with pytest.raises(InjectError, match="no codebase recognised"):
        recognise(tmp_path, candidates=[
            Recipe("fastgan", "x", (Signature("models.py", "exists"),), ())])
    (tmp_path / "train.py").write_text(WANT)
    with pytest.raises(InjectError, match="already injected"):
        inject(tmp_path, recipe=r)
