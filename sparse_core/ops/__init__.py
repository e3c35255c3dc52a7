"""sparse_core.ops: masked, threshold-masked and modulated convolutions.

The functions here dispatch per call: to the native extension (cuda/, built on first use) when it
is built for the tensors' device and dtype, otherwise to the pure-PyTorch reference
(`sparse_core.ops.reference`), which is the ground truth. `SPARSE_CORE_OPS=ref|ext|auto` forces a
path (see `sparse_core.ops.loader`). Both paths give the same values and gradients, including
second-order gradients (create_graph=True).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import loader, native, reference
from .loader import ExtensionBuildError, ops_mode
from .reference import long_tailed_grad, threshold_mask

__all__ = [
    "masked_weight",
    "masked_conv2d",
    "masked_linear",
    "threshold_masked_weight",
    "threshold_masked_conv2d",
    "threshold_masked_linear",
    "threshold_mask",
    "long_tailed_grad",
    "modulated_conv2d",
    "backend_for",
    "ExtensionBuildError",
    "ops_mode",
]

# dtypes with native kernels, per device type (CPU: fp32/fp64 only; fp16/bf16 go to the reference).
NATIVE_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
}


def _native(w: torch.Tensor, *others: torch.Tensor | None, same_shape: torch.Tensor | None = None):
    """The extension to use for these tensors, or None for the reference path."""
    mode = ops_mode()
    if mode == "ref":
        return None
    device = w.device
    reason = None
    if device.type not in NATIVE_DTYPES or w.dtype not in NATIVE_DTYPES[device.type]:
        reason = f"no native kernels for {w.dtype} on {device.type}"
    elif any(o is not None and o.device != device for o in others):
        reason = "tensors are on different devices"
    elif same_shape is not None and same_shape.shape != w.shape:
        reason = f"mask shape {tuple(same_shape.shape)} differs from weight shape {tuple(w.shape)} (broadcasting)"
    if reason is not None:
        if mode == "ext":
            raise RuntimeError(f"{loader.MODE_ENV}=ext forces the native extension, but {reason}")
        return None
    if mode == "ext":
        return loader.load(device.type)
    return loader.try_load(device.type)


def backend_for(w: torch.Tensor) -> str:
    """'native' or 'reference': which path an op on a weight like `w` takes now (builds if needed)."""
    return "reference" if _native(w) is None else "native"


def _as_weight_dtype(mask: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return mask.to(w.dtype) if mask.dtype != w.dtype else mask


def masked_weight(w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    ext = _native(w, mask, same_shape=mask)
    if ext is None:
        return reference.masked_weight(w, mask)
    return native.MaskedWeight.apply(ext, w, _as_weight_dtype(mask, w))


def masked_conv2d(x, w, mask, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return F.conv2d(x, masked_weight(w, mask), bias, stride, padding, dilation, groups)


def masked_linear(x, w, mask, bias=None):
    return F.linear(x, masked_weight(w, mask), bias)


def threshold_masked_weight(w: torch.Tensor, t: torch.Tensor, channel_dim: int = 0, official: bool = False):
    channel_dim = reference.check_threshold_args(w, t, channel_dim)
    ext = _native(w, t)
    if ext is None:
        return reference.threshold_masked_weight(w, t, channel_dim, official)
    return native.ThresholdMaskedWeight.apply(ext, w, t, channel_dim, bool(official))


def threshold_masked_conv2d(x, w, t, bias=None, stride=1, padding=0, dilation=1, groups=1, official=False):
    return F.conv2d(x, threshold_masked_weight(w, t, 0, official), bias, stride, padding, dilation, groups)


def threshold_masked_linear(x, w, t, bias=None, official=False):
    return F.linear(x, threshold_masked_weight(w, t, 0, official), bias)


def modulated_conv2d(x, w, styles, mask=None, demodulate=True, padding=0, fused=False, eps=1e-8):
    """StyleGAN2 modulated conv (no resampling). See reference.modulated_conv2d for the maths."""
    reference.check_modulated_args(x, w, styles, mask)
    ext = _native(w, styles, mask) if styles.dtype == w.dtype else None
    if ext is None:
        if ops_mode() == "ext":
            raise RuntimeError(f"{loader.MODE_ENV}=ext: native modulated_conv2d needs styles in the weight dtype "
                               f"{w.dtype}, got {styles.dtype}")
        return reference.modulated_conv2d(x, w, styles, mask, demodulate, padding, fused, eps)
    if mask is not None:
        mask = _as_weight_dtype(mask, w)
    n, c_in, height, width = x.shape
    c_out = w.shape[0]
    if not fused:
        if demodulate:
            w_eff, dcoefs = native.ModconvWeights.apply(ext, w, mask, styles, float(eps))
        else:
            w_eff = w if mask is None else native.MaskedWeight.apply(ext, w, mask)
        y = F.conv2d(x * styles[:, :, None, None], w_eff, padding=padding)
        return y * dcoefs[:, :, None, None] if demodulate else y
    per_sample = native.ModconvFusedWeights.apply(ext, w, mask, styles, bool(demodulate), float(eps))
    y = F.conv2d(x.reshape(1, n * c_in, height, width), per_sample.reshape(n * c_out, c_in, *w.shape[2:]),
                 padding=padding, groups=n)
    return y.reshape(n, c_out, *y.shape[2:])
