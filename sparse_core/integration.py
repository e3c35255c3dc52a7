"""What a patched training script needs, so that each patch stays a handful of one-line hooks: the method flags
and a controller for every --sparse value (none included) from cli.py, run_suffix, load_resume_state and
export_generators."""
import os

from .atomic import save_atomic
from .cli import (add_argparse_flags, all_flags, click_options, config_from_flags,  # noqa: F401
                  controller_from_flags, pop_flags, unused_flags)
from .config import ConfigError  # noqa: F401  (the patches catch sparse.ConfigError)


def run_suffix(flags) -> str:
    """`-<method>` for a run folder's name (StyleGAN2-ADA's `00001-mydata-...-rggan`); '' for --sparse none."""
    name = flags.get("sparse") or "none"
    return "" if name == "none" else f"-{name}"


def load_resume_state(ctrl, state, source: str | None = None) -> None:
    """The patches' name for `ctrl.load_state_dict(state, allow_dense=<--sparse-from-dense>)`."""
    ctrl.load_state_dict(state, allow_dense=ctrl.from_dense, source=source)


def export_generators(ctrl, which: str, out_dir: str, extra: dict | None = None, key: str = "G") -> list[str]:
    """A sparse run's G_sparse.pt / G_dense.pt ({key: the vendor's state_dict, **extra}) and the method's files."""
    if not ctrl.targets:
        return []
    paths = []
    for kind, sparse in (("sparse", True), ("dense", False)):
        net = ctrl.export(which, sparse=sparse)
        path = os.path.join(out_dir, f"G_{kind}.pt")
        save_atomic({key: net.state_dict(), "kind": kind, "method": ctrl.method, **(extra or {})}, path)
        paths.append(path)
    return paths + ctrl.export_files(out_dir)
