"""sparse_core.ops: masked, threshold-masked and modulated convolutions.

The threshold-masked and modulated ops dispatch per call: to the native extension (csrc/, built on first use)
when it is built for the tensors' device and dtype, otherwise to the pure-PyTorch reference
(`sparse_core.ops.reference`), which is the ground truth. `SPARSE_CORE_OPS=ref|ext|auto` forces a
path (see `sparse_core.ops.loader`). Both paths give the same values and gradients, including
second-order gradients (create_graph=True). Plain masking (`masked_weight`, `masked_conv2d`, `masked_linear`)
is always the reference's single multiply: no training path uses a masked forward (Re-GAN and tickets zero
the pruned weights in place), so it has no native kernel.
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
    "modulation",
    "backend_for",
    "backend_counts",
    "native_shares",
    "ExtensionBuildError",
    "ops_mode",
]

# dtypes with native kernels, per device type (CPU: fp32/fp64 only; fp16/bf16 go to the reference).
NATIVE_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
}


# Op families with native kernels: each is self-checked and counted on its own.
FAMILIES = ("threshold_masked_weight", "modulated_conv2d")

# Calls served per family since the process started: {family: [native, reference]}. Counted for real on every
# call, so a run's stats can say which backend its forwards actually used (see backend_counts()).
_calls: dict[str, list[int]] = {f: [0, 0] for f in FAMILIES}


def _count(family: str, ext) -> None:
    _calls[family][0 if ext is not None else 1] += 1


def backend_counts() -> dict[str, tuple[int, int]]:
    """{family: (calls served natively, calls served by the reference)} since the process started."""
    return {f: (n, r) for f, (n, r) in _calls.items()}


def native_shares(since: dict[str, tuple[int, int]] | None = None) -> dict[str, float]:
    """Share of calls served natively per family since the counts `since` (a backend_counts() result),
    for the families called in between: {family: share in [0, 1]}."""
    since = since or {}
    out = {}
    for f, (n, r) in backend_counts().items():
        n0, r0 = since.get(f, (0, 0))
        if n + r > n0 + r0:
            out[f] = (n - n0) / (n + r - n0 - r0)
    return out


def _native(family: str, w: torch.Tensor, *others: torch.Tensor | None):
    """The extension to use for this call of op `family`, or None for the reference path."""
    mode = ops_mode()
    if mode == "ref":
        return None
    device = w.device
    reason = None
    if device.type not in NATIVE_DTYPES or w.dtype not in NATIVE_DTYPES[device.type]:
        reason = f"no native kernels for {w.dtype} on {device.type}"
    elif any(o is not None and o.device != device for o in others):
        reason = "tensors are on different devices"
    if reason is not None:
        if mode == "ext":
            raise RuntimeError(f"{loader.MODE_ENV}=ext forces the native extension, but {reason}")
        return None
    if mode == "ext":
        ext = loader.load(device.type)
        problem = _verify(ext, family, device)
        if problem:
            raise RuntimeError(f"{loader.MODE_ENV}=ext forces the native extension, but its self-check failed: {problem}")
        return ext
    ext = loader.try_load(device.type)
    if ext is not None and _verify(ext, family, device):
        return None
    return ext


# (family, device) -> '' (the native kernel agrees with the reference) or a description of the first mismatch.
_verified: dict[tuple[str, str], str] = {}


def _verify(ext, family: str, device: torch.device) -> str:
    """Compare one op family's native kernel with the reference once per device, on small fp32 tensors, before
    trusting it with a training run (the CUDA kernels in particular cannot be tested where CI runs). A mismatch
    warns once and that family alone uses the reference."""
    key = (family, str(device))
    if key in _verified:
        return _verified[key]
    _verified[key] = problem = self_check(ext, device, families=(family,))
    if problem and ops_mode() != "ext":
        import warnings
        warnings.warn(f"sparse_core: native {device} kernel for {family} disagrees with the reference ({problem}); "
                      f"using the PyTorch reference for {family}", RuntimeWarning, stacklevel=4)
    return problem


def _check_cases(ext, device: torch.device, g: torch.Generator):
    rand = lambda *shape: torch.randn(*shape, generator=g).to(device)  # noqa: E731
    w = rand(6, 5, 3, 3).requires_grad_()
    t = (torch.rand(6, generator=g) * 0.8).to(device).requires_grad_()
    mask = (torch.rand(6, 5, 3, 3, generator=g) > 0.3).float().to(device)
    styles = (torch.rand(2, 5, generator=g) + 0.5).to(device).requires_grad_()
    inputs = (w, t, styles)
    return inputs, {
        "threshold_masked_weight": [(lambda: native.ThresholdMaskedWeight.apply(ext, w, t, 0, False),
                                     lambda: reference.threshold_masked_weight(w, t, 0, False))],
        "modulated_conv2d": [
            (lambda: torch.cat([x.flatten() for x in native.ModconvWeights.apply(ext, w, mask, styles, 1e-8)]),
             lambda: torch.cat([(w * mask).flatten(), reference.demodulation_coefficients(
                 w * mask, styles, 1e-8).flatten()])),
            (lambda: native.ModconvFusedWeights.apply(ext, w, mask, styles, True, 1e-8),
             lambda: (w * mask).unsqueeze(0) * styles[:, None, :, None, None]
             * reference.demodulation_coefficients(w * mask, styles, 1e-8)[:, :, None, None, None]),
        ],
    }


def self_check(ext, device: torch.device, families=FAMILIES) -> str:
    """'' if the native kernels of `families` match the reference (values and gradients) on a small case, else
    what differs. Runs with gradients on and outside any dispatch mode, whatever the caller's context (the
    first forward of a run often happens under no_grad or inference_mode, or while FLOPs are being counted)."""
    from torch.utils._python_dispatch import _disable_current_modes

    with _disable_current_modes(), torch.inference_mode(False), torch.enable_grad():
        g = torch.Generator().manual_seed(0)
        inputs, cases = _check_cases(ext, device, g)
        for name in families:
            for mine, ref in cases[name]:
                problem = _compare(name, mine, ref, inputs, g, device)
                if problem:
                    return problem
    return ""


def _compare(name, mine, ref, inputs, g, device) -> str:
    try:
        a, b = mine(), ref()
        upstream_grad = torch.randn(a.shape, generator=g).to(device)
        ga = torch.autograd.grad(a, inputs, upstream_grad, allow_unused=True)
        gb = torch.autograd.grad(b, inputs, upstream_grad, allow_unused=True)
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


def backend_for(w: torch.Tensor, family: str = "threshold_masked_weight") -> str:
    """'native' or 'reference': which path op `family` on a weight like `w` takes now (builds if needed)."""
    return "reference" if _native(family, w) is None else "native"


def _as_weight_dtype(mask: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return mask.to(w.dtype) if mask.dtype != w.dtype else mask


def masked_weight(w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """w * mask (one multiply; see the module docstring for why there is no native kernel)."""
    return reference.masked_weight(w, mask)


def masked_conv2d(x, w, mask, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return F.conv2d(x, masked_weight(w, mask), bias, stride, padding, dilation, groups)


def masked_linear(x, w, mask, bias=None):
    return F.linear(x, masked_weight(w, mask), bias)


def threshold_masked_weight(w: torch.Tensor, t: torch.Tensor, channel_dim: int = 0, official: bool = False):
    channel_dim = reference.check_threshold_args(w, t, channel_dim)
    ext = _native("threshold_masked_weight", w, t)
    _count("threshold_masked_weight", ext)
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
    ext = _native("modulated_conv2d", w, styles, mask) if styles.dtype == w.dtype else None
    _count("modulated_conv2d", ext)
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
            w_eff = w if mask is None else reference.masked_weight(w, mask)
        y = F.conv2d(x * styles[:, :, None, None], w_eff, padding=padding)
        return y * dcoefs[:, :, None, None] if demodulate else y
    per_sample = native.ModconvFusedWeights.apply(ext, w, mask, styles, bool(demodulate), float(eps))
    y = F.conv2d(x.reshape(1, n * c_in, height, width), per_sample.reshape(n * c_out, c_in, *w.shape[2:]),
                 padding=padding, groups=n)
    return y.reshape(n, c_out, *y.shape[2:])


def modulation(w: torch.Tensor, styles: torch.Tensor, demodulate: bool = True, fused: bool = False, eps: float = 1e-8):
    """The weight side of a StyleGAN2 modulated conv, for a caller that runs the convolution itself (with its
    own resampling, noise and precision handling): returns (per-sample weights [N, O, I, kh, kw] or None,
    demodulation coefficients [N, O] or None).

    fused=False (the training path) needs only the coefficients rsqrt(sum_{i,k} (w[o,i,k] styles[n,i])^2 + eps),
    computed natively in one pass over the weight without building the [N, O, I, kh, kw] product; fused=True
    returns the (demodulated) per-sample weights for one grouped convolution and no separate coefficients.
    """
    reference.check_modulated_args(torch.empty(styles.shape[0], w.shape[1], 1, 1, device=w.device), w, styles, None)
    if not fused and not demodulate:
        return None, None
    ext = _native("modulated_conv2d", w, styles) if styles.dtype == w.dtype else None
    _count("modulated_conv2d", ext)
    if ext is None:
        dcoefs = reference.demodulation_coefficients(w, styles, eps) if demodulate else None
        if not fused:
            return None, dcoefs
        per_sample = w.unsqueeze(0) * styles[:, None, :, None, None]
        return (per_sample * dcoefs[:, :, None, None, None] if demodulate else per_sample), None
    if not fused:
        return None, native.ModconvWeights.apply(ext, w, None, styles, float(eps))[1]
    return native.ModconvFusedWeights.apply(ext, w, None, styles, bool(demodulate), float(eps)), None
