"""ProGAN generator and critic with the layout and state_dict keys of the network the official Re-GAN code trains.

Facts (see shared/upstream/README.md "ProGAN"): equalised-LR layers keep the unscaled weight as the
parameter `weight_orig` (init N(0, 1), bias 0) and use `weight_orig * sqrt(2 / fan_in)` in the forward,
fan_in = weight.size(1) * k * k (for the transposed input layer size(1) is the OUTPUT width, so the scale is
only He's when z_dim == ch; kept as upstream). PixelNorm after every G conv and every D conv, LReLU 0.1,
nearest x2 upsampling in G, average pooling in D, a one-scalar minibatch-std channel over the whole batch.

Resolutions 4 .. max_res; every block exists from the start (so a checkpoint's keys do not depend on how
far training got) and `forward(x, alpha, step)` only walks the first step + 1 of them. Width: `ch` up to
32x32, then halved per doubling (Karras' fmap_base 8192 / fmap_max 512 pattern at ch 512: 256 at 64^2 ...
16 at 1024^2). With max_res 32 and ch 512 the keys and shapes are exactly those of `regan-progan-32`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MAX_RESOLUTION = 1024


def channels_at(res: int, ch: int) -> int:
    """Feature maps of the blocks working at `res`: ch up to 32x32, halved for each further doubling."""
    return max(1, ch * 32 // res) if res > 32 else ch


def resolutions(max_res: int) -> list[int]:
    if max_res < 4 or max_res > MAX_RESOLUTION or max_res & (max_res - 1):
        raise ValueError(f"max_res must be a power of two in [4, {MAX_RESOLUTION}], got {max_res}")
    return [4 * 2 ** i for i in range(int(math.log2(max_res // 4)) + 1)]


class _EqualLR(nn.Module):
    """The layer holding `weight_orig` and `bias` (upstream's `.conv` / `.linear` child).

    The forward reads `self.weight_orig` each call, so anything that swaps that parameter for the duration
    of a forward (a masking hook) is seen; the scale is a constant of the shape.
    """

    def __init__(self, weight_shape, kind: str, stride: int = 1, padding: int = 0):
        super().__init__()
        self.kind, self.stride, self.padding = kind, stride, padding
        self.transposed = kind == "conv_transpose"  # output channels on dim 1 (masking libraries look for this)
        self.weight_orig = nn.Parameter(torch.randn(weight_shape))
        self.bias = nn.Parameter(torch.zeros(weight_shape[1] if self.transposed else weight_shape[0]))
        receptive = 1
        for k in weight_shape[2:]:
            receptive *= k
        self.scale = math.sqrt(2.0 / (weight_shape[1] * receptive))

    def forward(self, x):
        w = self.weight_orig * self.scale
        if self.kind == "linear":
            return F.linear(x, w, self.bias)
        if self.transposed:
            return F.conv_transpose2d(x, w, self.bias, self.stride, self.padding)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"{self.kind}, weight_orig {tuple(self.weight_orig.shape)}, scale {self.scale:.5f}"


class EqualConv2d(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, padding: int = 0):
        super().__init__()
        self.conv = _EqualLR((c_out, c_in, kernel, kernel), "conv", padding=padding)

    def forward(self, x):
        return self.conv(x)


class EqualConvTranspose2d(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.conv = _EqualLR((c_in, c_out, kernel, kernel), "conv_transpose", stride=stride, padding=padding)

    def forward(self, x):
        return self.conv(x)


class EqualLinear(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.linear = _EqualLR((c_out, c_in), "linear")

    def forward(self, x):
        return self.linear(x)


class PixelNorm(nn.Module):
    def forward(self, x):
        return x / torch.sqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)


class ConvBlock(nn.Module):
    """conv -> PixelNorm -> LReLU 0.1, twice (Sequential indices 0 and 3 hold the convs)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, padding: int = 1, kernel2: int | None = None,
                 padding2: int | None = None):
        super().__init__()
        kernel2 = kernel if kernel2 is None else kernel2
        padding2 = padding if padding2 is None else padding2
        self.conv = nn.Sequential(EqualConv2d(c_in, c_out, kernel, padding), PixelNorm(), nn.LeakyReLU(0.1),
                                  EqualConv2d(c_out, c_out, kernel2, padding2), PixelNorm(), nn.LeakyReLU(0.1))

    def forward(self, x):
        return self.conv(x)


def _blend(alpha: float) -> bool:
    """Upstream blends the old path in only for 0 <= alpha < 1 (alpha > 1 happens in its last epoch)."""
    return 0 <= alpha < 1


class Generator(nn.Module):
    def __init__(self, z_dim: int = 512, ch: int = 512, max_res: int = 32, img_channels: int = 3):
        super().__init__()
        self.z_dim, self.ch, self.max_res = z_dim, ch, max_res
        self.resolutions = resolutions(max_res)
        c4 = channels_at(4, ch)
        self.input_layer = nn.Sequential(EqualConvTranspose2d(z_dim, c4, 4, 1, 0), PixelNorm(), nn.LeakyReLU(0.1))
        previous = c4
        for res in self.resolutions:  # progression_<res> then to_rgb_<res>, registered in upstream's order
            self.add_module(f"progression_{res}", ConvBlock(previous, channels_at(res, ch)))
            previous = channels_at(res, ch)
        for res in self.resolutions:
            self.add_module(f"to_rgb_{res}", EqualConv2d(channels_at(res, ch), img_channels, 1))

    @property
    def max_step(self) -> int:
        return len(self.resolutions) - 1

    def forward(self, z, alpha: float = -1, step: int = 0):
        if not 0 <= step <= self.max_step:
            raise ValueError(f"step must be in [0, {self.max_step}] for max_res {self.max_res}, got {step}")
        feat = self.progression_4(self.input_layer(z.view(-1, self.z_dim, 1, 1)))
        if step == 0:
            return self.to_rgb_4(feat)  # upstream: no tanh at 4x4
        for res in self.resolutions[1:step + 1]:
            previous = feat
            feat = getattr(self, f"progression_{res}")(F.interpolate(feat, scale_factor=2))
        res = self.resolutions[step]
        out = getattr(self, f"to_rgb_{res}")(feat)
        if _blend(alpha):
            skip = F.interpolate(getattr(self, f"to_rgb_{res // 2}")(previous), scale_factor=2)
            out = (1 - alpha) * skip + alpha * out
        return torch.tanh(out)


def minibatch_std(x):
    """One scalar: mean over features of sqrt(biased variance over the whole batch + 1e-8), as a channel."""
    std = torch.sqrt(x.var(0, unbiased=False) + 1e-8).mean()
    return torch.cat([x, std.expand(x.size(0), 1, x.size(2), x.size(3))], 1)


class Discriminator(nn.Module):
    """`progression.i` / `from_rgb.i` are indexed from the top resolution down (index 0 = max_res)."""

    def __init__(self, ch: int = 512, max_res: int = 32, img_channels: int = 3):
        super().__init__()
        self.ch, self.max_res = ch, max_res
        self.resolutions = resolutions(max_res)
        top_down = self.resolutions[::-1]
        blocks = [ConvBlock(channels_at(r, ch), channels_at(r // 2, ch)) for r in top_down[:-1]]
        c4 = channels_at(4, ch)
        blocks.append(ConvBlock(c4 + 1, c4, 3, 1, 4, 0))
        self.progression = nn.ModuleList(blocks)
        self.from_rgb = nn.ModuleList([EqualConv2d(img_channels, channels_at(r, ch), 1) for r in top_down])
        self.n_layer = len(self.progression)
        self.linear = EqualLinear(c4, 1)

    @property
    def max_step(self) -> int:
        return self.n_layer - 1

    def forward(self, x, alpha: float = -1, step: int = 0):
        if not 0 <= step <= self.max_step:
            raise ValueError(f"step must be in [0, {self.max_step}] for max_res {self.max_res}, got {step}")
        top = self.n_layer - step - 1
        out = self.from_rgb[top](x)
        for index in range(top, self.n_layer):
            if index == self.n_layer - 1:
                out = minibatch_std(out)
            out = self.progression[index](out)
            if index < self.n_layer - 1:
                out = F.avg_pool2d(out, 2)
                if index == top and _blend(alpha):
                    skip = self.from_rgb[index + 1](F.avg_pool2d(x, 2))
                    out = (1 - alpha) * skip + alpha * out
        return self.linear(out.flatten(1))
