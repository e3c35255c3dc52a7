"""Small calls the hook lines injected into upstream checkouts use where `sparse_core.integration` has no single
call for the job (each keeps an injected hook one line):

* `backward_regularizer(ctrl, net)`: the method's loss term for `net` backpropagated on its own, for loops whose
  losses are backpropagated inside helper functions (FastGAN's train_d). Nothing runs while the term is a
  constant (no method term: --sparse none, Re-GAN, RG-GAN's dense phases), so the loop computes what it did.
* `log_scalars(writer, stats, step)`: the numeric entries of `ctrl.stats()` into a TensorBoard-style writer
  (`add_scalar(tag, value, step)`), the log those codebases keep; text entries (method, phase) are skipped.
* `plain(obj)`: nested dict subclasses (e.g. dnnlib.EasyDict) as plain dicts / lists, so that an exported file
  loads with `torch.load(weights_only=True)`.
* `summary(stats)`: one printable line of `ctrl.stats()` for loops that log by print.
* `one_device_only(ctrl)`: refuses a sparse run that nn.DataParallel would spread over several GPUs.
* `add_argparse_flags(parser, interval, warmup, exclude)`: `integration.add_argparse_flags` for a parser that
  already defines one of the method flags for the same setting (the official Re-GAN scripts' `--sparsity`): that
  flag is shared (one option, sparse_core's type and default); one the script uses for anything else is refused.
* `load_resume_state(ctrl, state, source)`: `integration.load_resume_state`, a refusal (settings that differ from
  the snapshot's, a dense snapshot without --sparse-from-dense) one message naming the file, exit status 2.
* `exit_usage(message)`: `on_error` for scripts whose argument parser is out of reach at that point: the
  message on stderr, exit status 2.
"""
from __future__ import annotations

import numbers
import sys

import torch

from .. import integration
from ..config import ConfigError


def backward_regularizer(ctrl, net: str) -> None:
    term = ctrl.regularizer(net)
    if isinstance(term, torch.Tensor) and term.requires_grad:
        term.backward()


def log_scalars(writer, stats: dict, step: int) -> None:
    for key, value in stats.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            writer.add_scalar(key, float(value), step)


def plain(obj):
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def exit_usage(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def summary(stats: dict) -> str:
    """One line of the controller's stats for a loop that logs by print (FastGAN, the Re-GAN ProGAN script)."""
    parts = [f"sparse: {stats.get('sparse/method')} {stats.get('sparse/phase')}",
             f"iteration {stats.get('sparse/iteration')}"]
    for net in ("G", "D"):
        if f"sparse/{net}/sparsity" in stats:
            parts.append(f"{net} sparsity {float(stats[f'sparse/{net}/sparsity']):.4f}")
    parts.append(f"train FLOPs {float(stats.get('flops/train_total', 0.0)):.4g}")
    return "  ".join(parts)


def one_device_only(ctrl) -> None:
    """Refuse a sparse run that nn.DataParallel would spread over several GPUs (its replicas share each layer's
    method state within one forward), before anything is trained."""
    if ctrl.targets and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        exit_usage(f"--sparse {ctrl.method}: nn.DataParallel over {torch.cuda.device_count()} GPUs is not "
                   f"supported; make one GPU visible (CUDA_VISIBLE_DEVICES=0)")


def add_argparse_flags(parser, interval, warmup=None, exclude: str = ""):
    ours = {f.flag: f for f in integration.all_flags()}
    for action in parser._actions:
        for option in action.option_strings:
            f = ours.get(option)
            if f is not None and action.dest != f.dest:
                exit_usage(f"{option}: this script already defines it (for {action.dest!r}); sparse_core's {option} "
                           f"sets {f.dest!r}: rename the script's flag before injecting")
    before = parser.conflict_handler
    parser.conflict_handler = "resolve"   # a shared flag becomes sparse_core's (same dest, so the script reads it)
    try:
        integration.add_argparse_flags(parser, interval=interval, warmup=warmup, exclude=exclude)
    finally:
        parser.conflict_handler = before
    return parser


def load_resume_state(ctrl, state, source: str) -> None:
    try:
        integration.load_resume_state(ctrl, state, source=str(source))
    except ConfigError as e:
        exit_usage(f"resume: {e}")
