"""The underscore-style vendor CLIs (issue 21, item 6): long flags with '-' and '_' alike (vendor/common/flags.py's
ArgumentParser), also flags added after construction through an argument group as sparse_core adds them; every
flag of every vendor and bench CLI has help text; a tree run where vendor.common cannot be imported stops with one
line naming `pip install -e .` (exit 2)."""
import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vendor.common.flags import ArgumentParser

ROOT = Path(__file__).resolve().parents[2]


def parser():
    p = ArgumentParser(prog="t")
    p.add_argument("--data-ratio", dest="data_ratio", type=float, default=1.0, help="h")
    p.add_argument("--total_steps", type=int, default=1, help="h")
    p.add_argument("--name", default="", help="h")
    group = p.add_argument_group("later")  # as sparse_core.integration.add_argparse_flags adds its flags
    group.add_argument("--rg-lambda", dest="rg_lambda", type=float, default=0.0, help="h")
    return p


@pytest.mark.parametrize("argv", [
    ["--data_ratio", "0.5", "--total-steps", "7", "--rg_lambda", "0.25"],
    ["--data_ratio=0.5", "--total-steps=7", "--rg_lambda=0.25"],
    ["--data-ratio", "0.5", "--total_steps", "7", "--rg-lambda", "0.25"],
])
def test_both_spellings_give_the_same_values(argv):
    args = parser().parse_args(argv)
    assert (args.data_ratio, args.total_steps, args.rg_lambda) == (0.5, 7, 0.25)


def test_values_and_words_after_double_dash_are_left_alone(capsys):
    p = parser()
    p.add_argument("rest", nargs="*", help="h")
    args = p.parse_args(["--name=--data_ratio", "--", "--total-steps"])
    assert args.name == "--data_ratio" and args.rest == ["--total-steps"]
    with pytest.raises(SystemExit) as info:
        parser().parse_args(["--total_step_s", "3"])  # not a spelling of any flag: argparse's own error
    assert info.value.code == 2 and "unrecognized arguments: --total_step_s" in capsys.readouterr().err


def test_two_registered_flags_differing_only_in_spelling_are_not_merged():
    p = ArgumentParser(prog="t")
    p.add_argument("--a-b", dest="x", default="", help="h")
    p.add_argument("--a_b", dest="y", default="", help="h")
    args = p.parse_args(["--a_b", "1", "--a-b", "2"])
    assert (args.x, args.y) == ("2", "1")
    assert "'-' or '_' alike" in p.format_help()


def _parsers():
    sys.path.insert(0, str(ROOT / "bench"))
    from vendor.autogan import cfg
    from vendor.fastgan import train as fastgan
    from vendor.progan import train as progan
    from vendor.sngan import train as sngan
    return {"sngan": sngan.build_argparser(), "progan": progan.build_argparser(), "fastgan": fastgan.build_argparser(),
            "autogan": cfg.build_argparser()}


@pytest.mark.parametrize("vendor,argv,dest,value", [
    ("sngan", ["--total-steps", "9", "--data_ratio", "0.5"], "total_steps", 9),
    ("progan", ["--tick-steps", "9"], "tick_steps", 9),
    ("fastgan", ["--save-interval", "9"], "save_interval", 9),
    ("autogan", ["--max-iter", "9"], "max_iter", 9),
])
def test_every_underscore_style_vendor_takes_both_spellings_and_documents_every_flag(vendor, argv, dest, value):
    parser = _parsers()[vendor]
    assert getattr(parser.parse_args(argv), dest) == value
    undocumented = [a.option_strings for a in parser._actions if not a.help]
    assert undocumented == []


def _bench_parsers():
    """The argparse parsers the bench scripts build, caught at parse time (nothing runs)."""
    import importlib

    sys.path.insert(0, str(ROOT / "bench"))
    caught = []

    class Caught(Exception):
        pass

    def catch(self, args=None, namespace=None):
        caught.append(self)
        raise Caught

    original = argparse.ArgumentParser.parse_known_args
    argparse.ArgumentParser.parse_known_args = catch
    try:
        for name in ("compare", "judge", "kernels", "kill_resume", "main_job", "overhead", "quality", "tickets"):
            try:
                importlib.import_module(name).main(["--help"])
            except Caught:
                pass
    finally:
        argparse.ArgumentParser.parse_known_args = original
    out = []
    for p in caught:
        out.append(p)
        out += [sub for a in p._actions if isinstance(a, argparse._SubParsersAction) for sub in a.choices.values()]
    return out


def test_every_bench_flag_has_help():
    parsers = _bench_parsers()
    assert len(parsers) >= 8
    undocumented = [(p.prog, a.option_strings) for p in parsers for a in p._actions
                    if not a.help and not isinstance(a, argparse._SubParsersAction)]
    assert undocumented == []


BLOCK_VENDOR = """
import runpy, sys
import click, numpy, torch, torch.nn.functional  # shared by the trees: imported once, never unloaded
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == 'vendor' or name.startswith('vendor.'):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, Block())
codes, scripts, path = [], sys.argv[1:], list(sys.path)
for script in scripts:
    before = set(sys.modules)
    sys.argv = [script, '--help']
    try:
        runpy.run_path(script, run_name='__main__')
        codes.append('ran')
    except SystemExit as e:
        codes.append(str(e.code))
    for name in set(sys.modules) - before:  # each tree's sibling modules (models, losses, ...) are its own
        del sys.modules[name]
    sys.path[:] = path
print(' '.join(codes))
"""


def test_a_tree_without_vendor_common_stops_with_one_line_naming_pip_install_e(tmp_path):
    scripts = [str(ROOT / "vendor" / v / "train.py") for v in ("sngan", "progan", "autogan", "fastgan", "stylegan2_ada")]
    scripts += [str(ROOT / "vendor" / v / "generate.py") for v in ("sngan", "progan", "autogan")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                        if p and Path(p).resolve() != ROOT)
    r = subprocess.run([sys.executable, "-c", BLOCK_VENDOR, *scripts], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=300)
    assert r.stdout.split() == ["2"] * len(scripts), r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == len(scripts) and "Traceback" not in r.stderr, r.stderr
    assert all(line.startswith("error: cannot import vendor.common") and "`pip install -e .`" in line
               for line in lines)
