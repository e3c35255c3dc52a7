"""What a patched training script needs, so that each patch stays a handful of one-line hooks.

- `add_argparse_flags(parser, interval=..., warmup=None)` / `click_options(interval=...)`: the method flags,
  identical in every vendor.
- `controller_from_flags(args, G, D)`: a SparseController, or a `DenseController` with the same methods doing
  nothing when `--sparse none`, so the patched loop calls the hooks unconditionally.
- `export_generators(ctrl, G, out_dir)`: the sparse and the dense generator, as plain state_dicts (atomic write).
"""
from __future__ import annotations

import argparse
import os
import tempfile

import torch

from .config import ConfigError, ReGANConfig, RGGANConfig
from .controller import prepare

METHODS = ("none", "regan", "rggan")

# (flag, dest, type, default, help); `None` defaults are filled per vendor by the caller.
_FLAGS = [
    ("--sparse", "sparse", str, "none", "sparse training method: none | regan | rggan"),
    ("--sparsity", "sparsity", float, 0.3, "Re-GAN: fraction of each masked tensor pruned in sparse phases"),
    ("--interval", "interval", int, None, "Re-GAN: iterations per sparse / dense phase"),
    ("--warmup", "warmup", int, None, "Re-GAN: dense iterations before the first prune (default: --interval)"),
    ("--prune-target", "prune_target", str, "G", "Re-GAN: networks to prune: G | D | both"),
    ("--regrow", "regrow", str, "zero", "Re-GAN: values of regrown weights: zero | random (Re-GAN-RI)"),
    ("--dense-lr-scale", "dense_lr_scale", float, 0.1, "Re-GAN: LR multiplier in dense phases (1.0 = Re-GAN-lr)"),
    ("--sparse-scope", "sparse_scope", str, "weights", "Re-GAN: mask conv/linear 'weights' or 'all' parameters"),
    ("--sparse-exclude", "sparse_exclude", str, "", "comma-separated regexes of parameter names never masked"),
    ("--rg-lambda", "rg_lambda", float, 5e-12, "RG-GAN: sparsity regulariser λ (official code: 1e-12)"),
    ("--rg-official", "rg_official", bool, False, "RG-GAN: official code's detached mask (comparison only)"),
    ("--rg-no-augmented", "rg_no_augmented", bool, False, "RG-GAN: disable augmented regeneration (DP+RR only)"),
]


def add_argparse_flags(parser: argparse.ArgumentParser, interval: int, warmup: int | None = None,
                       exclude: str = "") -> argparse.ArgumentParser:
    defaults = {"interval": interval, "warmup": warmup, "sparse_exclude": exclude}
    g = parser.add_argument_group("sparse training (Re-GAN / RG-GAN, sparse_core)")
    for flag, dest, typ, default, help_ in _FLAGS:
        default = defaults.get(dest, default)
        if typ is bool:
            g.add_argument(flag, dest=dest, action="store_true", help=help_)
        elif dest == "sparse":
            g.add_argument(flag, dest=dest, choices=METHODS, default=default, help=help_)
        else:
            g.add_argument(flag, dest=dest, type=typ, default=default, help=help_)
    return parser


def click_options(interval: int, warmup: int | None = None, exclude: str = ""):
    """Decorator adding the same flags to a click command (StyleGAN2-ADA's train.py)."""
    import click

    defaults = {"interval": interval, "warmup": warmup, "sparse_exclude": exclude}

    def decorate(f):
        for flag, dest, typ, default, help_ in reversed(_FLAGS):
            default = defaults.get(dest, default)
            if typ is bool:
                f = click.option(flag, dest, is_flag=True, default=False, help=help_)(f)
            elif dest == "sparse":
                f = click.option(flag, dest, type=click.Choice(METHODS), default=default, help=help_)(f)
            else:
                f = click.option(flag, dest, type=typ, default=default, show_default=True, help=help_)(f)
        return f
    return decorate


def pop_flags(kwargs: dict, on_error=None) -> dict:
    """Remove the method flags from a click kwargs dict (so the vendor's own option parsing never sees them),
    validate them, and return them as a plain dict for the training loop."""
    flags = {dest: kwargs.pop(dest) for _, dest, *_ in _FLAGS if dest in kwargs}
    try:
        config_from_flags(flags)
    except ConfigError as e:
        if on_error is None:
            raise
        on_error(f"sparse training: {e}")
        raise
    return flags


def config_from_flags(args):
    """ReGANConfig / RGGANConfig from parsed flags (a namespace or a dict); None for --sparse none."""
    get = args.get if isinstance(args, dict) else lambda k, d=None: getattr(args, k, d)
    method = get("sparse", "none")
    if method not in METHODS:
        raise ConfigError(f"--sparse must be one of {METHODS}, got {method!r}")
    exclude = tuple(p for p in (get("sparse_exclude") or "").split(",") if p)
    if method == "regan":
        interval = get("interval")
        warmup = get("warmup")
        return ReGANConfig(sparsity=get("sparsity"), interval=interval,
                           warmup=interval if warmup is None else warmup, target=get("prune_target"),
                           regrow=get("regrow"), dense_lr_scale=get("dense_lr_scale"), scope=get("sparse_scope"),
                           exclude=exclude)
    if method == "rggan":
        return RGGANConfig(lam=get("rg_lambda"), official=bool(get("rg_official")),
                           augmented=not get("rg_no_augmented"), exclude=exclude)
    return None


class DenseController:
    """Stands in for SparseController under `--sparse none`: every hook is a no-op, steps just step."""

    method = "none"

    def bind(self, **kwargs):
        pass

    def pause(self, paused=True):
        pass

    def measure_flops(self, *args, **kwargs):
        pass

    def regularizer(self, net_name):
        return 0.0

    def before_step(self, net_name):
        pass

    def after_step(self, net_name):
        pass

    def optimizer_step(self, net_name, optimizer):
        optimizer.step()

    def after_ema(self):
        pass

    def advance(self, real_images):
        return None

    def feed_metric(self, value):
        return None

    def stats(self, per_layer=True):
        return {}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        if state:
            raise ConfigError("this snapshot holds sparse training state; resume it with the same --sparse flags")


def controller_from_flags(args, G, D, on_error=None):
    """on_error: e.g. `parser.error`, so a bad flag value ends with the CLI's usual one-line message."""
    try:
        cfg = config_from_flags(args)
        return DenseController() if cfg is None else prepare(cfg, G=G, D=D)
    except ConfigError as e:
        if on_error is None:
            raise
        on_error(f"sparse training: {e}")
        raise


def _save_atomic(obj, path: str) -> None:
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".pt")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def export_generators(ctrl, which: str, out_dir: str, extra: dict | None = None, key: str = "G") -> list[str]:
    """Write G_sparse.pt and G_dense.pt ({key: state_dict, **extra}) for a sparse run; nothing for a dense one.

    The state_dicts have the vendor's own keys, so the unmodified vendor code loads them (`key` and `extra`
    make the file look like the vendor's own snapshot where its tools expect one).
    """
    if isinstance(ctrl, DenseController):
        return []
    paths = []
    for kind, sparse in (("sparse", True), ("dense", False)):
        net = ctrl.export(which, sparse=sparse)
        path = os.path.join(out_dir, f"G_{kind}.pt")
        _save_atomic({key: net.state_dict(), "kind": kind, "method": ctrl.method, **(extra or {})}, path)
        paths.append(path)
    return paths
