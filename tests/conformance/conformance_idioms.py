"""Small networks reproducing the idioms researchers' G / D are built with (our own code, written for these
tests): weights derived by a forward pre-hook (equalised learning rate with `weight_orig`), a scale applied
inside `forward`, classes rebuilt through `__reduce__` arguments (NVlabs-style persistence), old-API spectral
and weight norm, torch.nn.utils.parametrize, DataParallel- / DDP-style wrappers, tied weights and shared
modules, modulated convolutions, half precision and channels_last.

Every idiom is (net factory, input factory). Each masked weight is read exactly once per forward (batch 1 for
the modulated conv), so the fraction of zeros in the weights the forward's convolutions / products receive
equals the reported sparsity when the library masks what the forward reads.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations as P
from torch.nn.utils import spectral_norm, weight_norm


# ---------------------------------------------------------------------------------------------- equalised LR
class EqualLRHook:
    """Forward pre-hook: `weight = weight_orig * sqrt(2 / fan_in)` before every call (a plain attribute)."""

    def __init__(self, name):
        self.name = name

    def compute(self, module):
        w = getattr(module, self.name + "_orig")
        return w * math.sqrt(2 / (w[0].numel()))

    @staticmethod
    def apply(module, name="weight"):
        hook = EqualLRHook(name)
        w = getattr(module, name)
        del module._parameters[name]
        module.register_parameter(name + "_orig", nn.Parameter(w.data))
        module.register_forward_pre_hook(hook)
        return module

    def __call__(self, module, inputs):
        setattr(module, self.name, self.compute(module))


def equal_lr(module):
    module.weight.data.normal_()
    return EqualLRHook.apply(module)


class EqualLRNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = equal_lr(nn.Conv2d(3, 8, 3, 1, 1))
        self.fc = equal_lr(nn.Linear(8 * 16, 4))

    def forward(self, x):
        return self.fc(F.leaky_relu(self.conv(x), 0.2).flatten(1))


# ---------------------------------------------------------------------------------------------- scale in forward
class ScaledConv(nn.Module):
    """Unit-variance parameter, the He constant multiplied in at every call."""

    def __init__(self, cin, cout, k):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = 1 / math.sqrt(cin * k * k)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=1)


class ScaledLinear(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin))
        self.scale = 1 / math.sqrt(cin)

    def forward(self, x):
        return F.linear(x, self.weight * self.scale)


class ScaleInForwardNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = ScaledConv(3, 8, 3)
        self.fc = ScaledLinear(8 * 16, 4)

    def forward(self, x):
        return self.fc(F.leaky_relu(self.conv(x), 0.2).flatten(1))


# ---------------------------------------------------------------------------------------------- __reduce__ persistence
def rebuild_persistent(meta):
    obj = meta["cls"].__new__(meta["cls"])
    obj.__setstate__(meta["state"])
    return obj


class Persistent(nn.Module):
    """Rebuilds itself from (class, state) passed as reduce *arguments*, as NVlabs' persistence wrapper does."""

    def __reduce__(self):
        return rebuild_persistent, (dict(cls=type(self), state=dict(self.__dict__)),)


class PersistentConv(Persistent):
    """Every class persistent, the layers included (so sparse_core's hooks sit on rebuilt objects)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3) / math.sqrt(cin * 9))
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, padding=1)


class PersistentLinear(Persistent):
    def __init__(self, cin, cout):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / math.sqrt(cin))

    def forward(self, x):
        return F.linear(x, self.weight)


class PersistentNet(Persistent):
    def __init__(self):
        super().__init__()
        self.conv = PersistentConv(3, 8)
        self.sn = spectral_norm(nn.Conv2d(8, 8, 3, 1, 1))
        self.fc = PersistentLinear(8 * 16, 4)

    def forward(self, x):
        return self.fc(F.leaky_relu(self.sn(F.leaky_relu(self.conv(x), 0.2)), 0.2).flatten(1))


# ---------------------------------------------------------------------------------------------- norms
class SpectralNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = spectral_norm(nn.Conv2d(3, 8, 3, 1, 1))
        self.up = spectral_norm(nn.ConvTranspose2d(8, 8, 4, 2, 1))
        self.fc = spectral_norm(nn.Linear(8 * 64, 4))

    def forward(self, x):
        return self.fc(F.leaky_relu(self.up(F.leaky_relu(self.conv(x), 0.2)), 0.2).flatten(1))


class WeightNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = weight_norm(nn.ConvTranspose2d(3, 8, 4, 2, 1))
        self.fc = weight_norm(nn.Linear(8 * 64, 4))

    def forward(self, x):
        return self.fc(F.leaky_relu(self.up(x), 0.2).flatten(1))


class ParametrizeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = P.spectral_norm(nn.Conv2d(3, 8, 3, 1, 1))
        self.fc = P.weight_norm(nn.Linear(8 * 16, 4))

    def forward(self, x):
        return self.fc(F.leaky_relu(self.conv(x), 0.2).flatten(1))


# ---------------------------------------------------------------------------------------------- wrappers, tying
class PlainNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 1, 1)
        self.fc = nn.Linear(8 * 16, 4)

    def forward(self, x):
        return self.fc(F.leaky_relu(self.conv(x), 0.2).flatten(1))


class DDPStyle(nn.Module):
    """What DistributedDataParallel looks like to sparse_core: the network under `.module`."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, *args):
        return self.module(*args)


class TiedNet(nn.Module):
    """Decoder weight tied to the encoder's (one Parameter read by two layers), equal shapes."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(16, 16, bias=False)
        self.dec = nn.Linear(16, 16, bias=False)
        self.dec.weight = self.enc.weight

    def forward(self, x):
        return self.dec(torch.tanh(self.enc(x)))


class SharedModuleNet(nn.Module):
    """One layer object applied twice (registered once)."""

    def __init__(self):
        super().__init__()
        self.block = nn.Linear(16, 16)

    def forward(self, x):
        return self.block(torch.tanh(self.block(x)))


# ---------------------------------------------------------------------------------------------- modulated conv
class ModConv(nn.Module):
    """Per-sample modulated, demodulated 3x3 conv (grouped conv over the batch), its style from a linear layer."""

    def __init__(self, cin, cout, wdim):
        super().__init__()
        self.affine = nn.Linear(wdim, cin)
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3))
        self.affine.bias.data.fill_(1.0)

    def forward(self, x, w):
        n, cin = x.shape[:2]
        s = self.affine(w)
        wt = self.weight[None] * s[:, None, :, None, None]
        wt = wt * torch.rsqrt(wt.square().sum([2, 3, 4]) + 1e-8)[:, :, None, None, None]
        wt = wt.reshape(-1, cin, 3, 3)
        return F.conv2d(x.reshape(1, -1, *x.shape[2:]), wt, padding=1, groups=n).reshape(n, -1, *x.shape[2:])


class ModulatedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = ModConv(3, 8, 4)

    def forward(self, x):
        return self.conv(x, torch.ones(x.shape[0], 4))


# ---------------------------------------------------------------------------------------------- registry
def _img():
    return torch.randn(1, 3, 4, 4)


def _vec():
    return torch.randn(1, 16)


def _half(dtype):
    def make():
        return PlainNet().to(dtype)

    def inp():
        return torch.randn(1, 3, 4, 4, dtype=dtype)
    return make, inp


IDIOMS = {
    "plain": (PlainNet, _img),
    "equal_lr_prehook": (EqualLRNet, _img),
    "scale_in_forward": (ScaleInForwardNet, _img),
    "reduce_persistent": (PersistentNet, _img),
    "old_spectral_norm": (SpectralNormNet, _img),
    "old_weight_norm": (WeightNormNet, _img),
    "parametrize": (ParametrizeNet, _img),
    "dataparallel": (lambda: nn.DataParallel(PlainNet()), _img),
    "ddp_style": (lambda: DDPStyle(EqualLRNet()), _img),
    "tied": (TiedNet, _vec),
    "shared_module": (SharedModuleNet, _vec),
    "modulated": (ModulatedNet, _img),
    "bf16": _half(torch.bfloat16),
    "fp16": _half(torch.float16),
    "channels_last": (lambda: PlainNet().to(memory_format=torch.channels_last),
                      lambda: torch.randn(1, 3, 4, 4).to(memory_format=torch.channels_last)),
}
