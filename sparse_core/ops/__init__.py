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
        ext = loader.load(device.type)
        problem = _verify(ext, device.type)
        if problem:
            raise RuntimeError(f"{loader.MODE_ENV}=ext forces the native extension, but its self-check failed: {problem}")
        return ext
    ext = loader.try_load(device.type)
    if ext is not None and _verify(ext, device.type):
        return None
    return ext


# Device type -> '' (native kernels agree with the reference) or a description of the first mismatch.
_verified: dict[str, str] = {}


def _verify(ext, device_type: str) -> str:
    """Compare the native kernels with the reference once per device type, on small fp32 tensors, before
    trusting them with a training run (the CUDA kernels in particular cannot be tested where CI runs).
    A mismatch warns once and the caller uses the reference."""
    if device_type in _verified:
        return _verified[device_type]
    _verified[device_type] = problem = self_check(ext, torch.device(device_type))
    if problem and ops_mode() != "ext":
        import warnings
        warnings.warn(f"sparse_core: native {device_type} kernels disagree with the reference ({problem}); "
                      "using the PyTorch reference ops", RuntimeWarning, stacklevel=4)
    return problem


def self_check(ext, device: torch.device) -> str:
    """'' if every native kernel matches the reference (values and gradients) on a small case, else what differs."""
    g = torch.Generator().manual_seed(0)
    rand = lambda *shape: torch.randn(*shape, generator=g).to(device)  # noqa: E731
    w = rand(6, 5, 3, 3).requires_grad_()
    t = (torch.rand(6, generator=g) * 0.8).to(device).requires_grad_()
    mask = (torch.rand(6, 5, 3, 3, generator=g) > 0.3).float().to(device)
    styles = (torch.rand(2, 5, generator=g) + 0.5).to(device).requires_grad_()
    cases = {
        "masked_weight": (lambda: native.MaskedWeight.apply(ext, w, mask), lambda: reference.masked_weight(w, mask)),
        "threshold_masked_weight": (lambda: native.ThresholdMaskedWeight.apply(ext, w, t, 0, False),
                                    lambda: reference.threshold_masked_weight(w, t, 0, False)),
        "modconv_weights": (lambda: torch.cat([x.flatten() for x in native.ModconvWeights.apply(ext, w, mask, styles, 1e-8)]),
                            lambda: torch.cat([(w * mask).flatten(), reference.demodulation_coefficients(
                                w * mask, styles, 1e-8).flatten()])),
        "modconv_fused_weights": (lambda: native.ModconvFusedWeights.apply(ext, w, mask, styles, True, 1e-8),
                                  lambda: (w * mask).unsqueeze(0) * styles[:, None, :, None, None]
                                  * reference.demodulation_coefficients(w * mask, styles, 1e-8)[:, :, None, None, None]),
    }
    for name, (mine, ref) in cases.items():
        try:
            a, b = mine(), ref()
            upstream_grad = torch.randn(a.shape, generator=g).to(device)
            ga = torch.autograd.grad(a, (w, t, styles), upstream_grad, allow_unused=True)
            gb = torch.autograd.grad(b, (w, t, styles), upstream_grad, allow_unused=True)
        except Exception as exc:  # a kernel that cannot even run is a failed check, not a crash
            return f"{name}: {type(exc).__name__}: {exc}"
        if not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
            return f"{name}: forward differs by {float((a - b).detach().abs().max()):.3g}"
        for label, x, y in zip(("w", "t", "styles"), ga, gb):
            x = torch.zeros_like(y) if x is None and y is not None else x
            y = torch.zeros_like(x) if y is None and x is not None else y
            if x is not None and not torch.allclose(x, y, rtol=1e-4, atol=1e-5):
                return f"{name}: gradient for {label} differs by {float((x - y).abs().max()):.3g}"
    return ""


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
