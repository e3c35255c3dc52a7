"""`sparse-core` command line (also `python -m sparse_core`).

    sparse-core apply patches/sngan.patch --src vendor/sngan --out runs/work/sngan   # patched copy
    sparse-core apply patches/sngan.patch --in-place path/to/my/sngan               # into an existing tree
    sparse-core check patches/sngan.patch --src vendor/sngan                        # dry run
    sparse-core inject path/to/checkout                          # dry run: prints the diff it would make
    sparse-core inject path/to/checkout --out runs/work/mine     # injected copy
    sparse-core inject path/to/checkout --in-place --diff my.diff
    sparse-core inject path/to/checkout --check                  # where each hook point is, or what is missing

Exit status: 0 applied (or, for check, applies); 1 the patch is already applied (nothing to do, nothing
written); 2 refused (a hunk does not fit, for inject a hook point missing or ambiguous, a path outside the tree, an unreadable file, a symlink or binary entry, a
negative -p): nothing was written. Files are patched byte for byte, as GNU `patch` does (CRLF kept, any
encoding).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .patching import AlreadyApplied, PatchError, apply_patch, apply_to_copy, plan, show


def _strip_count(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(f"{value!r}: the number of leading path components to strip must be an "
                                         f"integer >= 0")
    return count


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="sparse-core", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("apply", help="apply a patch all-or-nothing")
    a.add_argument("patch")
    g = a.add_mutually_exclusive_group(required=True)
    g.add_argument("--src", help="vendor tree to copy (with --out)")
    g.add_argument("--in-place", metavar="DIR", help="tree to patch in place")
    a.add_argument("--out", help="where the patched copy goes")
    a.add_argument("--force", action="store_true", help="replace an existing --out")
    a.add_argument("-p", "--strip", type=_strip_count, default=1)
    c = sub.add_parser("check", help="check that a patch applies, write nothing")
    c.add_argument("patch")
    c.add_argument("--src", required=True)
    c.add_argument("-p", "--strip", type=_strip_count, default=1)
    from .inject import CODEBASES
    about = ("put the Re-GAN / RG-GAN hooks into a GAN checkout, found by syntax tree; without --out / --in-place "
             "it is a dry run: the diff is printed, nothing is written")
    j = sub.add_parser("inject", help=about, description=about)
    j.add_argument("path", help="the checkout (upstream or a fork of it)")
    j.add_argument("--codebase", default="auto", choices=("auto", *CODEBASES),
                   help="which codebase it is (default: recognise it)")
    j.add_argument("--check", action="store_true", help="report where each hook point is found, write nothing")
    w = j.add_mutually_exclusive_group()
    w.add_argument("--out", metavar="DIR", help="write an injected copy of the checkout to DIR (must not exist)")
    w.add_argument("--in-place", action="store_true", help="edit the checkout itself")
    j.add_argument("--diff", metavar="FILE", help="also write the diff to FILE")
    args = ap.parse_args(argv)
    if args.cmd == "inject":
        from .inject.cli import run_inject
        return run_inject(args)
    try:
        if args.cmd == "check":
            try:
                data = Path(args.patch).read_bytes()
            except OSError as e:
                raise PatchError(f"cannot read patch {show(args.patch)}: {e.strerror}") from None
            changed = plan(data, Path(args.src), args.strip)
            print(f"{args.patch}: applies cleanly to {args.src} ({len(changed)} files)")
        elif args.src:
            if not args.out:
                ap.error("--src needs --out")
            out = apply_to_copy(args.patch, args.src, args.out, args.strip, args.force)
            print(f"patched copy of {args.src} written to {out}")
        else:
            touched = apply_patch(args.patch, args.in_place, args.strip)
            print(f"applied {args.patch} to {args.in_place} ({len(touched)} files)")
    except AlreadyApplied as e:
        print(f"sparse-core: {e}; nothing was written", file=sys.stderr)
        return 1
    except PatchError as e:
        print(f"sparse-core: error: {e}; nothing was written", file=sys.stderr)
        return 2
    except OSError as e:       # a write failed (disk full, permissions): rolled back
        where = f"{show(str(e.filename))}: " if e.filename else ""
        print(f"sparse-core: error: {where}{e.strerror or e}; nothing was written", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
