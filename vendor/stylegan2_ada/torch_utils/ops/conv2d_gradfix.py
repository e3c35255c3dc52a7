"""Upstream's conv2d_gradfix, reduced to a plain wrapper around torch.nn.functional.conv2d /
conv_transpose2d.

Upstream replaces the convolution with a custom op so that double backward works on old
PyTorch releases and so that weight gradients can be skipped during the path-length
regularisation. On the PyTorch versions we support, F.conv2d supports double backward
natively, so this module keeps the same names (`enabled`, `no_weight_gradients`, `conv2d`,
`conv_transpose2d`) for call compatibility, and `no_weight_gradients()` is a no-op context:
gradients are still correct, only the small speed optimisation is not reproduced."""
import contextlib

import torch.nn.functional as F

enabled = False                    # kept for compatibility; has no effect on results
weight_gradients_disabled = False  # set inside no_weight_gradients(); informational only


@contextlib.contextmanager
def no_weight_gradients(disable=True):
    global weight_gradients_disabled
    old = weight_gradients_disabled
    if disable:
        weight_gradients_disabled = True
    try:
        yield
    finally:
        weight_gradients_disabled = old


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return F.conv2d(input=input, weight=weight, bias=bias, stride=stride, padding=padding,
                    dilation=dilation, groups=groups)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    return F.conv_transpose2d(input=input, weight=weight, bias=bias, stride=stride, padding=padding,
                              output_padding=output_padding, groups=groups, dilation=dilation)
