"""Runs command lines of patched vendor trees in ONE process (torch is imported once), for the flag tests.

    python patched_cli_worker.py JOBS.json RESULT.json

JOBS.json: [{"tree": folder, "argvs": [argv, ...]}]: each argv is run through that tree's train.py main().
RESULT.json: one list per job of {"code": exit code, "out": stdout + stderr}. Between trees every module
loaded from the previous tree is dropped, so same-named modules (models.py, losses.py) never mix.
Not a test module: tests/patches/test_patched_flags.py starts it.
"""
import contextlib
import importlib
import io
import json
import os
import sys


def run_tree(tree, argvs):
    os.chdir(tree)
    sys.path.insert(0, tree)
    try:
        train = importlib.import_module("train")
        results = []
        for argv in argvs:
            out = io.StringIO()
            code = 0
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                try:
                    if hasattr(train.main, "main"):  # click command (StyleGAN2-ADA)
                        train.main.main(args=argv, standalone_mode=True)
                    else:
                        code = train.main(argv)
                except SystemExit as stop:
                    code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            results.append({"code": code, "out": out.getvalue()})
        return results
    finally:
        sys.path.remove(tree)
        for name, module in list(sys.modules.items()):
            if os.path.abspath(getattr(module, "__file__", None) or "/").startswith(os.path.abspath(tree) + os.sep):
                del sys.modules[name]


def main(jobs_path, result_path):
    jobs = json.load(open(jobs_path))
    results = [run_tree(job["tree"], job["argvs"]) for job in jobs]
    with open(result_path, "w") as handle:
        json.dump(results, handle)


if __name__ == "__main__":
    main(*sys.argv[1:3])
