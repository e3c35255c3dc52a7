"""Pure-PyTorch reference ops: the ground truth that the native extension is tested against.

Everything here is written with differentiable torch operations only, so first and second order
gradients (R1 through D, path-length through G) come from autograd without custom backward code.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "masked_weight",
    "masked_conv2d",
    "masked_linear",
    "long_tailed_grad",
    "long_tailed_antiderivative",
    "threshold_mask",
    "threshold_masked_weight",
    "threshold_masked_conv2d",
    "threshold_masked_linear",
    "modulated_conv2d",
    "check_threshold_args",
    "check_modulated_args",
    "check_reset_density",
    "hard_mask",
    "collapsed",
    "reset_collapsed_thresholds",
]

# Breakpoints of the RG-GAN long-tailed straight-through estimator (paper, section "Learned threshold").
_INNER = 0.4  # s'(x) = 2 - 4|x| for |x| <= 0.4
_OUTER = 1.0  # s'(x) = 0.4 for 0.4 < |x| <= 1, else 0
_S_AT_INNER = 2 * _INNER - 2 * _INNER * _INNER  # s(0.4) = 0.48
_TAIL_SLOPE = 0.4


def masked_weight(w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """w * mask (mask may be bool or a float tensor that broadcasts to w)."""
    if mask.dtype == torch.bool:
        mask = mask.to(w.dtype)
    return w * mask


def masked_conv2d(x, w, mask, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return F.conv2d(x, masked_weight(w, mask), bias, stride, padding, dilation, groups)


def masked_linear(x, w, mask, bias=None):
    return F.linear(x, masked_weight(w, mask), bias)


def long_tailed_grad(x: torch.Tensor) -> torch.Tensor:
    """s'(x): the long-tailed surrogate derivative of step(x) used for the thresholds' gradient.

    Written with differentiable ops so that its own derivative (-4 sign(x) on |x| <= 0.4, else 0)
    is what autograd returns in second-order passes.
    """
    ax = x.abs()
    inner = 2.0 - 4.0 * ax
    tail = torch.full_like(x, _TAIL_SLOPE)
    return torch.where(ax <= _INNER, inner, torch.where(ax <= _OUTER, tail, torch.zeros_like(x)))


def long_tailed_antiderivative(x: torch.Tensor) -> torch.Tensor:
    """s(x) with s(0) = 0 and ds/dx = long_tailed_grad(x); odd and bounded by 0.72."""
    ax = x.abs()
    inner = 2.0 * x - 2.0 * x * ax
    middle = torch.sign(x) * (_S_AT_INNER + _TAIL_SLOPE * (ax - _INNER))
    outer = torch.sign(x) * (_S_AT_INNER + _TAIL_SLOPE * (_OUTER - _INNER))
    return torch.where(ax <= _INNER, inner, torch.where(ax <= _OUTER, middle, outer.detach()))


def check_threshold_args(w: torch.Tensor, t: torch.Tensor, channel_dim: int) -> int:
    """Validate (w, t, channel_dim); return channel_dim as a non-negative index."""
    if not isinstance(channel_dim, int) or isinstance(channel_dim, bool):
        raise TypeError(f"channel_dim must be an int, got {type(channel_dim).__name__}")
    if w.dim() < 1:
        raise ValueError("w must have at least one dimension (one threshold per output channel)")
    if not -w.dim() <= channel_dim < w.dim():
        raise ValueError(f"channel_dim={channel_dim} is out of range for a weight of shape {tuple(w.shape)}")
    channel_dim %= w.dim()
    if t.dim() != 1 or t.shape[0] != w.shape[channel_dim]:
        raise ValueError(
            f"t must have shape ({w.shape[channel_dim]},) (one threshold per channel of dim {channel_dim} "
            f"of w with shape {tuple(w.shape)}), got {tuple(t.shape)}"
        )
    if not (w.is_floating_point() and t.is_floating_point()):
        raise TypeError(f"w and t must be floating point, got {w.dtype} and {t.dtype}")
    return channel_dim


def _broadcast_threshold(t: torch.Tensor, ndim: int, channel_dim: int) -> torch.Tensor:
    shape = [1] * ndim
    shape[channel_dim] = -1
    return t.reshape(shape)


def threshold_mask(w: torch.Tensor, t: torch.Tensor, channel_dim: int = 0, official: bool = False) -> torch.Tensor:
    """M = step(|w| - t) in the forward; the thresholds' gradient goes through s (long-tailed STE).

    |w| is detached inside the mask, so the weights receive their gradient only through the
    product w * M (dL/dw = g * M exactly). With official=True the mask is fully detached, which
    reproduces the official RG-GAN code (its bool cast): t then learns from the regulariser only.
    """
    channel_dim = check_threshold_args(w, t, channel_dim)
    x = w.detach().abs() - _broadcast_threshold(t, w.dim(), channel_dim)
    hard = (x > 0).to(x.dtype)
    if official:
        return hard.detach()
    soft = long_tailed_antiderivative(x)
    # Forward value is exactly `hard`; the gradient is the one of `soft`.
    return hard + (soft - soft.detach())


def check_reset_density(reset_density) -> None:
    if isinstance(reset_density, bool) or not isinstance(reset_density, (int, float)) or reset_density != reset_density:
        raise TypeError(f"reset_density must be a real number (a fraction of the weight's entries), got {reset_density!r}")


def hard_mask(w: torch.Tensor, t: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """The forward mask step(|w| - t) as a bool tensor (no autograd)."""
    return w.detach().abs() > _broadcast_threshold(t.detach(), w.dim(), channel_dim)


def collapsed(keep: torch.Tensor, reset_density: float) -> torch.Tensor:
    """RG-GAN's reset condition: the bool mask `keep` keeps <= reset_density of its entries (0-d bool tensor)."""
    return keep.sum() <= reset_density * keep.numel()


@torch.no_grad()
def reset_collapsed_thresholds(w: torch.Tensor, t: torch.Tensor, channel_dim: int, reset_density: float) -> None:
    """RG-GAN's reset rule: t := 0 when step(|w| - t) keeps <= reset_density of w's entries. Branch-free (no host
    sync); writes through t.data so a graph that saved t in an earlier forward of this step is not invalidated."""
    reset = collapsed(hard_mask(w, t, channel_dim), reset_density)
    t.data.copy_(torch.where(reset, torch.zeros_like(t), t))


def threshold_masked_weight(w, t, channel_dim: int = 0, official: bool = False):
    mask = threshold_mask(w, t, channel_dim, official)
    return w * mask.to(w.dtype)


def threshold_masked_conv2d(x, w, t, bias=None, stride=1, padding=0, dilation=1, groups=1, official=False):
    return F.conv2d(x, threshold_masked_weight(w, t, 0, official), bias, stride, padding, dilation, groups)


def threshold_masked_linear(x, w, t, bias=None, official=False):
    return F.linear(x, threshold_masked_weight(w, t, 0, official), bias)


def check_modulated_args(x, w, styles, mask):
    if w.dim() != 4:
        raise ValueError(f"modulated_conv2d: w must be [out, in, kh, kw], got shape {tuple(w.shape)}")
    if x.dim() != 4 or x.shape[1] != w.shape[1]:
        raise ValueError(
            f"modulated_conv2d: x must be [N, {w.shape[1]}, H, W] to match w {tuple(w.shape)}, got {tuple(x.shape)}"
        )
    if styles.dim() != 2 or tuple(styles.shape) != (x.shape[0], w.shape[1]):
        raise ValueError(
            f"modulated_conv2d: styles must be [N, in] = {(x.shape[0], w.shape[1])}, got {tuple(styles.shape)}"
        )
    if mask is not None and tuple(mask.shape) != tuple(w.shape):
        raise ValueError(f"modulated_conv2d: mask shape {tuple(mask.shape)} differs from w shape {tuple(w.shape)}")


def demodulation_coefficients(w_eff: torch.Tensor, styles: torch.Tensor, eps: float) -> torch.Tensor:
    """dcoefs[n, o] = (sum_{i,k} (w_eff[o,i,k] * styles[n,i])^2 + eps)^-1/2."""
    per_sample = w_eff.unsqueeze(0) * styles[:, None, :, None, None]
    return (per_sample.square().sum(dim=[2, 3, 4]) + eps).rsqrt()


def modulated_conv2d(x, w, styles, mask=None, demodulate=True, padding=0, fused=False, eps=1e-8):
    """StyleGAN2 modulated convolution (no resampling; stride 1).

    fused=False is StyleGAN2's training path: scale the input channels by the styles, run one
    convolution with the shared weight, scale the output channels by the demodulation
    coefficients. fused=True builds per-sample weights and runs one grouped convolution.
    """
    check_modulated_args(x, w, styles, mask)
    n, c_in, h, wd = x.shape
    c_out = w.shape[0]
    w_eff = w if mask is None else masked_weight(w, mask)
    dcoefs = demodulation_coefficients(w_eff, styles, eps) if demodulate else None
    if not fused:
        y = F.conv2d(x * styles[:, :, None, None], w_eff, padding=padding)
        return y * dcoefs[:, :, None, None] if demodulate else y
    per_sample = w_eff.unsqueeze(0) * styles[:, None, :, None, None]
    if demodulate:
        per_sample = per_sample * dcoefs[:, :, None, None, None]
    y = F.conv2d(x.reshape(1, n * c_in, h, wd), per_sample.reshape(n * c_out, c_in, *w.shape[2:]),
                 padding=padding, groups=n)
    return y.reshape(n, c_out, *y.shape[2:])
