"""`sparse-core inject`: the command around the engine (argument parsing is in sparse_core/cli.py).

stdout carries the diff only (so `sparse-core inject PATH > my.diff` is a patch file); every message goes to
stderr, the --check report too (one line per hook point: found at file:line, or missing / ambiguous and what was
looked for). Exit status: 0 done (or, with --check, every hook point found); 1 already injected (nothing written);
2 refused (not recognised, a hook point missing or ambiguous, a file that cannot be read or parsed, --out exists):
nothing written.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from ..patching import AlreadyApplied, PatchError, apply_to_copy, commit, plan, show
from .engine import AlreadyInjected, InjectError, inject


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _stage_diff(path: str, diff: str) -> str:
    """Write the diff to a temporary file next to `path` (renamed into place once everything else is done)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InjectError(f"--diff {show(path)}: the folder {show(folder)} does not exist")
    if os.path.isdir(path):
        raise InjectError(f"--diff {show(path)}: is a folder")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(diff)
    return tmp


def run_inject(args) -> int:
    root = Path(args.path)
    staged = None
    if args.check and (args.out or args.in_place or args.diff):
        _say("sparse-core inject: error: --check only reports; it takes no --out, --in-place or --diff; "
             "nothing was written")
        return 2
    try:
        try:
            result = inject(root, args.codebase)
        except AlreadyInjected as e:
            _say(f"sparse-core inject: {e}; nothing was written")
            return 1
        _say(f"sparse-core inject: {root} is {result.recipe.label}")
        if args.check:
            _say(result.report())
            if not result.ok:
                _say("sparse-core inject: some hook points are missing or ambiguous; inject would refuse")
            return 0 if result.ok else 2
        if not result.ok:
            raise InjectError("refused, hook points not found exactly once:\n  " + "\n  ".join(result.problems()))
        if args.out and os.path.lexists(args.out):
            raise InjectError(f"--out {show(args.out)} exists; choose a new folder")
        if args.out and Path(os.path.abspath(args.out)).resolve().is_relative_to(root.resolve()):
            raise InjectError(f"--out {show(args.out)} is inside the checkout {show(str(root))}; choose a folder "
                              f"outside it (the copy would contain itself)")
        if args.diff:
            staged = _stage_diff(args.diff, result.diff)
        if args.in_place:
            changes = plan(result.diff, root)
            want = {(root / rel).resolve(): text.encode("utf-8") for rel, text in result.new_text.items()}
            if {p.resolve(): c for p, c in changes.items()} != want:
                raise InjectError("internal error: the diff does not reproduce the computed files")
            commit(changes)
        elif args.out:
            with tempfile.TemporaryDirectory() as folder:
                patch = Path(folder) / "inject.diff"
                patch.write_text(result.diff, encoding="utf-8", newline="")
                apply_to_copy(patch, root, args.out)
            wrong = [rel for rel, text in result.new_text.items()
                     if (Path(args.out) / rel).read_bytes() != text.encode("utf-8")]
            if wrong:   # cannot happen unless the checkout changed while it was read: say so, keep nothing
                shutil.rmtree(args.out)
                raise InjectError(f"{', '.join(wrong)} changed while inject read the checkout; run it again")
        if staged:
            os.replace(staged, args.diff)
            staged = None
        sys.stdout.write(result.diff)
        sys.stdout.flush()
        where = (f"written to {args.out}" if args.out else f"applied in place to {root}" if args.in_place
                 else "dry run: nothing written (use --out DIR or --in-place)")
        _say(f"sparse-core inject: {len(result.new_text)} files, {len(result.found)} hook points; {where}")
        return 0
    except AlreadyApplied as e:
        _say(f"sparse-core inject: {e}; nothing was written")
        return 1
    except (InjectError, PatchError) as e:
        _say(f"sparse-core inject: error: {e}; nothing was written")
        return 2
    except OSError as e:
        where = f"{show(str(e.filename))}: " if e.filename else ""
        _say(f"sparse-core inject: error: {where}{e.strerror or e}; nothing was written")
        return 2
    finally:
        if staged and os.path.exists(staged):
            os.unlink(staged)
