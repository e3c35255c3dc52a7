"""What a patched training script needs, so that each patch stays a handful of one-line hooks: the method flags
(argparse / click, built from the registry in cli.py), a controller for every --sparse value (none included),
load_resume_state and export_generators."""
from __future__ import annotations

import os
import sys

from .atomic import save_atomic
from .cli import (add_argparse_flags, all_flags, click_options, config_from_flags, flag_getter,  # noqa: F401
                  method_values, name_the_flag, pop_flags, reported, unused_flags)
from .config import ConfigError
from .controller import prepare


def controller_from_flags(args, G, D, on_error=None, run_length: int | None = None):
    """A controller from parsed flags. on_error: e.g. `parser.error`; run_length: the method's iterations (its
    advance() calls while not paused): a schedule that never reaches its sparse training is reported on stderr."""
    def build():
        cls, values = method_values(args)
        try:
            return cls, prepare(cls.config_from_flags(values), G=G, D=D, **cls.prepare_kwargs(values))
        except ConfigError as e:
            raise ConfigError(name_the_flag(str(e), cls)) from None
    cls, ctrl = reported(on_error, build)
    for note in unused_flags(args):
        print(f"sparse training: --sparse {cls.name} ignores {note}", file=sys.stderr, flush=True)
    if run_length is not None and ctrl.targets:
        msg = ctrl.check_run_length(run_length, warn=False)
        if msg:
            print(f"sparse training: warning: --sparse {cls.name}: {msg}", file=sys.stderr, flush=True)
    ctrl.from_dense = bool(flag_getter(args)("sparse_from_dense", False))
    return ctrl


def load_resume_state(ctrl, state, source: str | None = None) -> None:
    """The patches' name for `ctrl.load_state_dict(state, allow_dense=<--sparse-from-dense>)`."""
    ctrl.load_state_dict(state, allow_dense=ctrl.from_dense, source=source)


def export_generators(ctrl, which: str, out_dir: str, extra: dict | None = None, key: str = "G") -> list[str]:
    """Write G_sparse.pt and G_dense.pt ({key: state_dict with the vendor's keys, **extra}) and the method's own
    files for a sparse run; nothing for a dense one."""
    if not ctrl.targets:
        return []
    paths = []
    for kind, sparse in (("sparse", True), ("dense", False)):
        net = ctrl.export(which, sparse=sparse)
        path = os.path.join(out_dir, f"G_{kind}.pt")
        save_atomic({key: net.state_dict(), "kind": kind, "method": ctrl.method, **(extra or {})}, path)
        paths.append(path)
    return paths + ctrl.export_files(out_dir)
