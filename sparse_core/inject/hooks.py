"""Small calls the hook lines injected into upstream checkouts use where `sparse_core.integration` has no single
call for the job (each keeps an injected hook one line):

* `backward_regularizer(ctrl, net)`: the method's loss term for `net` backpropagated on its own, for loops whose
  losses are backpropagated inside helper functions (FastGAN's train_d). Nothing runs while the term is a
  constant (no method term: --sparse none, Re-GAN, RG-GAN's dense phases), so the loop computes what it did.
* `log_scalars(writer, stats, step)`: the numeric entries of `ctrl.stats()` into a TensorBoard-style writer
  (`add_scalar(tag, value, step)`), the log those codebases keep; text entries (method, phase) are skipped.
* `plain(obj)`: nested dict subclasses (e.g. dnnlib.EasyDict) as plain dicts / lists, so that an exported file
  loads with `torch.load(weights_only=True)`.
* `exit_usage(message)`: `on_error` for scripts whose argument parser is out of reach at that point: the
  message on stderr, exit status 2.
"""
from __future__ import annotations

import numbers
import sys

import torch


def backward_regularizer(ctrl, net: str) -> None:
    term = ctrl.regularizer(net)
    if isinstance(term, torch.Tensor) and term.requires_grad:
        term.backward()


def log_scalars(writer, stats: dict, step: int) -> None:
    for key, value in stats.items():
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
