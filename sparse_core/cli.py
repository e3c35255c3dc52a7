"""sparse_core's command lines: the `sparse-core` tool (patch applier, `main`) and the flags sparse_core adds to a
training script's command line (argparse / click, built from the method registry; integration.py uses them)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import methods
from .config import ConfigError
from .controller import prepare
from .methods.base import Flag
from .patching import AlreadyApplied, PatchError, apply_patch, apply_to_copy, plan, show

USAGE = """`sparse-core` command line (also `python -m sparse_core`).

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
    ap = argparse.ArgumentParser(prog="sparse-core", description=USAGE,
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


# ---------------------------------------------------------------------- a training script's sparse-training flags
# Flags whose default each vendor sets (add_argparse_flags(..., interval=, warmup=, exclude=)).
_VENDOR_DEFAULTS = {"interval": "interval", "warmup": "warmup", "sparse_exclude": "exclude"}
_FROM_DENSE = Flag("--sparse-from-dense", "sparse_from_dense", bool, False,
                   "allow --resume from a dense run's snapshot: the sparse method starts from its weights")


def all_flags() -> list[Flag]:
    """--sparse, then every method's flags (a flag several methods declare appears once), --sparse-from-dense."""
    out: dict[str, Flag] = {}
    for m in methods.all_methods():
        for f in m.flags:
            have = out.get(f.dest)
            if have is not None and (have.flag, have.type, have.choices) != (f.flag, f.type, f.choices):
                raise TypeError(f"method {m.name} declares {f.flag} differently from another method")
            out.setdefault(f.dest, f)
    names = methods.names()
    sparse = Flag("--sparse", "sparse", str, "none", "sparse training method: " + " | ".join(names), choices=names)
    return [sparse, *out.values(), _FROM_DENSE]


def _with_defaults(interval, warmup, exclude) -> list[tuple[Flag, object]]:
    overrides = {"interval": interval, "warmup": warmup, "exclude": exclude}
    return [(f, overrides[_VENDOR_DEFAULTS[f.dest]] if f.dest in _VENDOR_DEFAULTS else f.default) for f in all_flags()]


def add_argparse_flags(parser: argparse.ArgumentParser, interval: int, warmup: int | None = None,
                       exclude: str = "") -> argparse.ArgumentParser:
    g = parser.add_argument_group("sparse training (sparse_core: " + ", ".join(methods.names()) + ")")
    for f, default in _with_defaults(interval, warmup, exclude):
        if f.type is bool:
            g.add_argument(f.flag, dest=f.dest, action="store_true", help=f.help)
        else:
            g.add_argument(f.flag, dest=f.dest, type=f.type, choices=f.choices, default=default, help=f.help)
    return parser


def _click_type(f: Flag):
    import click

    if f.choices:
        return click.Choice(f.choices)
    if f.type in (str, int, float):
        return f.type

    class _Checked(click.ParamType):
        name = getattr(f.type, "__name__", "value")

        def convert(self, value, param, ctx):
            try:
                return f.type(value)
            except argparse.ArgumentTypeError as e:
                self.fail(str(e), param, ctx)
    return _Checked()


def click_options(interval: int, warmup: int | None = None, exclude: str = ""):
    """Decorator adding the same flags to a click command (StyleGAN2-ADA's train.py)."""
    import click

    def decorate(fn):
        for f, default in reversed(_with_defaults(interval, warmup, exclude)):
            if f.type is bool:
                fn = click.option(f.flag, f.dest, is_flag=True, default=False, help=f.help)(fn)
            else:
                fn = click.option(f.flag, f.dest, type=_click_type(f), default=default, show_default=True,
                                  help=f.help)(fn)
        return fn
    return decorate


def _reported(on_error, fn):
    """fn(), a ConfigError also passed to on_error (e.g. parser.error: the CLI's usual one-line message)."""
    try:
        return fn()
    except ConfigError as e:
        if on_error is not None:
            on_error(f"sparse training: {e}")
        raise


def pop_flags(kwargs: dict, on_error=None) -> dict:
    """Remove the method flags from a click kwargs dict (the vendor's option parsing never sees them), validate
    them and return them as a plain dict for the training loop."""
    flags = {f.dest: kwargs.pop(f.dest) for f in all_flags() if f.dest in kwargs}
    _reported(on_error, lambda: config_from_flags(flags))
    return flags


def _getter(args):
    return args.get if isinstance(args, dict) else (lambda k, d=None: getattr(args, k, d))


def _method_values(args):
    get = _getter(args)
    name = get("sparse", "none") or "none"
    if name not in methods.names():
        raise ConfigError(f"--sparse must be one of {methods.names()}, got {name!r}")
    cls = methods.get(name)
    return cls, {f.dest: f.default if (v := get(f.dest, f.default)) is None and f.type is not bool else v
                 for f in cls.flags}


def unused_flags(args) -> list[str]:
    """Flags given a non-default value that the chosen method does not read (reported, not silently dropped)."""
    get = _getter(args)
    cls, _ = _method_values(args)
    mine = {f.dest for f in cls.flags}
    out = []
    for f in all_flags()[1:-1]:
        if f.dest in mine or f.dest in _VENDOR_DEFAULTS:
            continue
        v = get(f.dest, f.default)
        if v is not None and v != f.default:
            owners = [m.name for m in methods.all_methods() if any(g.dest == f.dest for g in m.flags)]
            out.append(f"{f.flag} (a flag of --sparse {' / '.join(owners)})")
    return out


def config_from_flags(args):
    """The method config from parsed flags (a namespace or a dict); None for --sparse none."""
    cls, values = _method_values(args)
    cfg = cls.config_from_flags(values)
    return None if cls.name == "none" else cfg


def _name_the_flag(msg: str, cls) -> str:
    """'interval must be ...' -> '--interval: interval must be ...' when a flag of the method sets that field."""
    field = msg.split(" ", 1)[0]
    flag = next((f.flag for f in cls.flags if f.field == field and f.flag not in msg), None)
    return f"{flag}: {msg}" if flag else msg


def controller_from_flags(args, G, D, on_error=None, run_length: int | None = None):
    """A controller from parsed flags. on_error: e.g. `parser.error`; run_length: the method's iterations (its
    advance() calls while not paused): a schedule that never reaches its sparse training is reported on stderr."""
    def build():
        cls, values = _method_values(args)
        try:
            return cls, prepare(cls.config_from_flags(values), G=G, D=D, **cls.prepare_kwargs(values))
        except ConfigError as e:
            raise ConfigError(_name_the_flag(str(e), cls)) from None
    cls, ctrl = _reported(on_error, build)
    for note in unused_flags(args):
        print(f"sparse training: --sparse {cls.name} ignores {note}", file=sys.stderr, flush=True)
    if run_length is not None and ctrl.targets:
        msg = ctrl.check_run_length(run_length, warn=False)
        if msg:
            print(f"sparse training: warning: --sparse {cls.name}: {msg}", file=sys.stderr, flush=True)
    ctrl.from_dense = bool(_getter(args)("sparse_from_dense", False))
    return ctrl


if __name__ == "__main__":
    sys.exit(main())
