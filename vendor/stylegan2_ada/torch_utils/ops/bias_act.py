"""Fused-style bias + activation + gain + clamp (upstream's bias_act), in plain PyTorch.

y = clamp(act(x + b) * gain, -clamp, clamp), with b broadcast along `dim`. Each activation has
a default alpha and a default gain; the ReLU family and swish default to gain sqrt(2) so that
activations keep unit variance (equalized learning rate)."""
import numpy as np
import torch
import torch.nn.functional as F

import dnnlib

activation_funcs = {
    'linear':   dnnlib.EasyDict(func=lambda x, **_: x, def_alpha=0, def_gain=1, ref='', has_2nd_grad=False),
    'relu':     dnnlib.EasyDict(func=lambda x, **_: F.relu(x), def_alpha=0, def_gain=np.sqrt(2), ref='y', has_2nd_grad=False),
    'lrelu':    dnnlib.EasyDict(func=lambda x, alpha, **_: F.leaky_relu(x, alpha), def_alpha=0.2, def_gain=np.sqrt(2), ref='y', has_2nd_grad=False),
    'tanh':     dnnlib.EasyDict(func=lambda x, **_: torch.tanh(x), def_alpha=0, def_gain=1, ref='y', has_2nd_grad=True),
    'sigmoid':  dnnlib.EasyDict(func=lambda x, **_: torch.sigmoid(x), def_alpha=0, def_gain=1, ref='y', has_2nd_grad=True),
    'elu':      dnnlib.EasyDict(func=lambda x, **_: F.elu(x), def_alpha=0, def_gain=1, ref='y', has_2nd_grad=True),
    'selu':     dnnlib.EasyDict(func=lambda x, **_: F.selu(x), def_alpha=0, def_gain=1, ref='y', has_2nd_grad=True),
    'softplus': dnnlib.EasyDict(func=lambda x, **_: F.softplus(x), def_alpha=0, def_gain=1, ref='y', has_2nd_grad=True),
    'swish':    dnnlib.EasyDict(func=lambda x, **_: torch.sigmoid(x) * x, def_alpha=0, def_gain=np.sqrt(2), ref='x', has_2nd_grad=True),
}


def bias_act(x, b=None, dim=1, act='linear', alpha=None, gain=None, clamp=None, impl=None):
    """Add bias `b` (1D, length x.shape[dim]) along `dim`, apply `act`, scale by `gain`, clamp.

    alpha/gain default to the activation's def_alpha/def_gain; clamp=None (or < 0) disables
    clamping. `impl` is accepted for upstream call compatibility and ignored."""
    if not isinstance(x, torch.Tensor):
        raise ValueError('bias_act: x must be a tensor')
    if act not in activation_funcs:
        raise ValueError(f'bias_act: unknown act {act!r}; expected one of {sorted(activation_funcs)}')
    if clamp is not None and clamp < 0:
        clamp = None
    spec = activation_funcs[act]
    alpha = float(alpha if alpha is not None else spec.def_alpha)
    gain = float(gain if gain is not None else spec.def_gain)

    if b is not None:
        if not (isinstance(b, torch.Tensor) and b.ndim == 1):
            raise ValueError('bias_act: b must be a 1D tensor')
        if not 0 <= dim < x.ndim:
            raise ValueError(f'bias_act: dim {dim} out of range for a {x.ndim}D input')
        if b.shape[0] != x.shape[dim]:
            raise ValueError(f'bias_act: b has {b.shape[0]} elements but x.shape[{dim}] is {x.shape[dim]}')
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])

    x = spec.func(x, alpha=alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x
