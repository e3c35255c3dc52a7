"""FastGAN helpers (upstream's operation.py role): EMA parameter lists, the batch sampler, run folders and the
checkpoint formats.

Checkpoints, both read with torch.load(weights_only=True) (nothing in a file is ever executed or constructed):
- ours: `snapshot-{it}.pt` / `last.pt` in the run folder, written atomically (vendor.common.runlog): G, D, the EMA
  list, both optimizers, iteration, image count, RNG and sampler state -> a resumed run is exact.
- upstream's: `models/{it}.pth` = {g: EMA weights, d} and `models/all_{it}.pth` = {g, d, g_ema (list), opt_g,
  opt_d}, keys with DataParallel's `module.` prefix (upstream always wraps in DataParallel). Both are written by
  our train.py too, and read with or without the prefix; the iteration comes from the file name.
"""
from __future__ import annotations

import os
import re

import torch

try:
    import vendor.common  # noqa: F401  (installed with `pip install -e .`)
except ImportError:  # a source checkout without installing: use the repository root
    import sys

    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
    try:
        import vendor.common  # noqa: F401
    except ImportError:  # e.g. a patched copy run outside the clone after a plain `pip install .`
        print("error: cannot import vendor.common (the project's shared data, metrics and logging code): run "
              "`pip install -e .` in the sparse-gan clone, or run this script from inside the clone", file=sys.stderr)
        sys.exit(2)
from vendor.common.runlog import SnapshotError, load_snapshot, save_snapshot

PREFIX = "module."


def copy_G_params(model) -> list:
    """The EMA list: detached copies of the parameters, in `model.parameters()` order (buffers not averaged)."""
    return [p.detach().clone() for p in model.parameters()]


def load_params(model, new_params) -> None:
    """Copy a parameter list (EMA or backup) into the model, in order."""
    for p, new_p in zip(model.parameters(), new_params):
        p.data.copy_(new_p)


@torch.no_grad()
def update_ema(model, avg_params, decay: float = 0.999) -> None:
    """avg = decay * avg + (1 - decay) * p, after every G step (upstream: mul_(0.999).add_(0.001 * p))."""
    for p, avg_p in zip(model.parameters(), avg_params):
        avg_p.mul_(decay).add_((1 - decay) * p.detach())


def strip_prefix(state: dict) -> dict:
    """Drop DataParallel's `module.` from every key (upstream files have it, ours may not)."""
    return {(k[len(PREFIX):] if k.startswith(PREFIX) else k): v for k, v in state.items()}


def add_prefix(state: dict) -> dict:
    return {PREFIX + k: v for k, v in state.items()}


class InfiniteBatches:
    """Endless random batches (upstream: InfiniteSamplerWrapper, a fresh permutation per pass) of a uint8
    dataset held as one tensor, scaled to [-1, 1] with upstream's random horizontal flip. Its state goes into
    our snapshots, so a resumed run draws the same batches."""

    def __init__(self, images_uint8: torch.Tensor, batch_size: int, seed: int):
        self.images, self.batch_size = images_uint8, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(images_uint8), generator=self.generator)
        self.position = 0

    def _indices(self) -> torch.Tensor:
        picked, needed = [], self.batch_size
        while needed > 0:  # a batch may span two passes: datasets smaller than a batch work
            if self.position == len(self.order):
                self.order = torch.randperm(len(self.images), generator=self.generator)
                self.position = 0
            take = min(needed, len(self.order) - self.position)
            picked.append(self.order[self.position:self.position + take])
            self.position += take
            needed -= take
        return torch.cat(picked)

    def next(self, device) -> torch.Tensor:
        batch = self.images[self._indices()].to(torch.float32) / 127.5 - 1.0
        flip = torch.rand(len(batch), generator=self.generator) < 0.5
        batch[flip] = batch[flip].flip(3)
        return batch.to(device)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order.clone(), "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order, self.position = state["order"].clone(), int(state["position"])


def get_dir(args) -> tuple[str, str, str]:
    """(run folder, models/, images/) under --output_path, as upstream: train_results/<name>/."""
    run_dir = os.path.join(args.output_path, "train_results", args.name)
    return run_dir, os.path.join(run_dir, "models"), os.path.join(run_dir, "images")


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------------
# upstream's files

_UPSTREAM_NAME = re.compile(r"^(all_)?(\d+)\.pth$")


def upstream_iteration(path: str) -> int:
    """The iteration in `models/{it}.pth` / `models/all_{it}.pth` (upstream parses the name the same way)."""
    match = _UPSTREAM_NAME.match(os.path.basename(path))
    if match is None:
        raise SnapshotError(f"{path}: not an upstream FastGAN checkpoint name ({{it}}.pth or all_{{it}}.pth)")
    return int(match.group(2))


def load_checkpoint(path: str) -> dict:
    """Any checkpoint this tree reads, weights_only; returns {'kind': 'ours' | 'upstream_all' | 'upstream_g' |
    'export', ...} with state_dicts stripped of `module.` prefixes."""
    state = load_snapshot(path)
    if not isinstance(state, dict):
        raise SnapshotError(f"{path}: holds {type(state).__name__}, not a dict")
    if "netG" in state and "g_ema" in state:
        return {"kind": "ours", **state}
    if "g" not in state:
        raise SnapshotError(f"{path}: no 'g' entry (keys: {sorted(state)[:8]}); expected an upstream FastGAN "
                            f"models/{{it}}.pth or all_{{it}}.pth, or one of our snapshots")
    out = dict(state)
    out["g"] = strip_prefix(state["g"])
    if "d" in state:
        out["d"] = strip_prefix(state["d"])
    if {"g_ema", "opt_g", "opt_d", "d"} <= set(state):
        out["kind"] = "upstream_all"
    elif "kind" in state and state.get("kind") in ("sparse", "dense"):
        out["kind"] = "export"  # G_sparse.pt / G_dense.pt of a patched run
    else:
        out["kind"] = "upstream_g"
    return out


def ema_state_dict(netG, avg_params) -> dict:
    """G's state_dict with the EMA weights in place of the raw ones (buffers as they are)."""
    backup = copy_G_params(netG)
    load_params(netG, avg_params)
    state = {k: v.detach().clone() for k, v in netG.state_dict().items()}
    load_params(netG, backup)
    return state


def save_upstream(models_dir: str, iteration: int, netG, netD, avg_params, opt_g, opt_d, extra=None) -> None:
    """Upstream's pair of files, `module.`-prefixed as upstream writes them (atomic here)."""
    extra = extra or {}
    save_snapshot({"g": add_prefix(ema_state_dict(netG, avg_params)), "d": add_prefix(netD.state_dict()), **extra},
                  os.path.join(models_dir, f"{iteration}.pth"))
    save_snapshot({"g": add_prefix(netG.state_dict()), "d": add_prefix(netD.state_dict()),
                   "g_ema": [p.detach().clone() for p in avg_params], "opt_g": opt_g.state_dict(),
                   "opt_d": opt_d.state_dict(), **extra}, os.path.join(models_dir, f"all_{iteration}.pth"))


def export_upstream(snapshot_path: str, models_dir: str) -> list[str]:
    """Write one of our snapshots in upstream's layout (models/{it}.pth and models/all_{it}.pth)."""
    state = load_checkpoint(snapshot_path)
    if state["kind"] != "ours":
        raise SnapshotError(f"{snapshot_path}: not one of our snapshots (it is {state['kind']})")
    os.makedirs(models_dir, exist_ok=True)
    it = int(state["iteration"])
    g = state["netG"]
    ema = dict(g)  # G's state with the EMA list in place of its parameters (named in parameters() order)
    for name, value in zip(state["param_names"], state["g_ema"]):
        ema[name] = value
    save_snapshot({"g": add_prefix(ema), "d": add_prefix(state["netD"])}, os.path.join(models_dir, f"{it}.pth"))
    save_snapshot({"g": add_prefix(g), "d": add_prefix(state["netD"]), "g_ema": state["g_ema"],
                   "opt_g": state["opt_g"], "opt_d": state["opt_d"]}, os.path.join(models_dir, f"all_{it}.pth"))
    return [os.path.join(models_dir, f"{it}.pth"), os.path.join(models_dir, f"all_{it}.pth")]


def main(argv=None) -> int:
    """`python vendor/fastgan/operation.py export SNAPSHOT MODELS_DIR`: one of our snapshots in upstream's layout."""
    import argparse

    parser = argparse.ArgumentParser(description="FastGAN checkpoint tools")
    sub = parser.add_subparsers(dest="cmd", required=True)
    export = sub.add_parser("export", help="write a snapshot as upstream's models/{it}.pth and models/all_{it}.pth")
    export.add_argument("snapshot")
    export.add_argument("models_dir")
    args = parser.parse_args(argv)
    try:
        for path in export_upstream(args.snapshot, args.models_dir):
            print(path)
    except SnapshotError as error:
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
