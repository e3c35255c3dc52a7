"""sparse_core.ops: masked, threshold-masked and modulated convolutions.

The threshold-masked and modulated ops dispatch per call: to the native extension (the checkout's cuda/ folder,
shipped in the package as ops/csrc/, built on first use) when it is built for the tensors' device and dtype and
its self-check passed for that dtype and the caller's precision settings (autocast, TF32), otherwise to the pure-PyTorch reference
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
    if torch.compiler.is_compiling():
        _count_at_trace(family, ext is not None)  # a counter inside the graph would guard on its value
        return
    _calls[family][0 if ext is not None else 1] += 1


@torch.compiler.assume_constant_result
def _count_at_trace(family: str, native_call: bool) -> int:
    """A call site inside a torch.compile'd region is counted once, when it is traced (which backend it uses is
    fixed then), not on every run of the compiled graph."""
    _calls[family][0 if native_call else 1] += 1
    return 0


def backend_counts() -> dict[str, tuple[int, int]]:
    """{family: (calls served natively, calls served by the reference)} since the process started (a call site
    in a torch.compile'd region counts once, when traced)."""
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


# The CUDA modulated-conv kernel keeps (batch + in_channels) accumulators in shared memory; past the default
# per-block limit (48 KiB, not opted into more) the call goes to the reference instead of failing.
CUDA_SHARED_LIMIT = 48 * 1024


def modconv_fits(device_type: str, dtype: torch.dtype, batch: int, in_channels: int) -> bool:
    """Whether the native modulated-conv kernel can take this shape on this device type."""
    if device_type != "cuda":
        return True
    acc_bytes = 8 if dtype == torch.float64 else 4
    return acc_bytes * (batch + in_channels) <= CUDA_SHARED_LIMIT


def _native(family: str, w: torch.Tensor, *others: torch.Tensor | None, styles: torch.Tensor | None = None):
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
    elif styles is not None and not modconv_fits(device.type, w.dtype, styles.shape[0], w.shape[1]):
        reason = (f"batch + in_channels = {styles.shape[0] + w.shape[1]} exceeds the modulated-conv kernel's "
                  f"shared memory ({CUDA_SHARED_LIMIT} bytes)")
    if reason is not None:
        if mode == "ext":
            raise RuntimeError(f"{loader.MODE_ENV}=ext forces the native extension, but {reason}")
        return None
    if torch.compiler.is_compiling():
        # torch.compile traces this call: build and self-check eagerly, outside the trace (a constant of the graph)
        problem = _decide_outside_trace(family, device.type, str(device), w.dtype, mode)
        if problem:
            if mode == "ext":
                raise RuntimeError(f"{loader.MODE_ENV}=ext forces the native extension, but {problem}")
            return None
        return loader.load(device.type)
    if mode == "ext":
        ext = loader.load(device.type)
        problem = _verify(ext, family, device, w.dtype)
        if problem:
            raise RuntimeError(f"{loader.MODE_ENV}=ext forces the native extension, but its self-check failed: {problem}")
        return ext
    ext = loader.try_load(device.type)
    if ext is not None and _verify(ext, family, device, w.dtype):
        return None
    return ext


@torch.compiler.assume_constant_result  # run eagerly while torch.compile traces; its result is a graph constant
def _decide_outside_trace(family: str, device_type: str, device: str, dtype: torch.dtype, mode: str) -> str:
    """'' if op `family` runs natively on `device` in `dtype` under the current settings, else why not: the
    build (or cache lookup) and the self-check of _native, for a call that torch.compile is tracing."""
    try:
        ext = loader.load(device_type) if mode == "ext" else loader.try_load(device_type)
    except loader.ExtensionBuildError as exc:
        return str(exc).splitlines()[0]
    if ext is None:
        return f"the native {device_type} extension is unavailable"
    problem = _verify(ext, family, torch.device(device), dtype)
    return f"its self-check failed: {problem}" if problem else ""


@torch.compiler.assume_constant_result  # read while torch.compile traces: a constant of the compiled graph
def precision_context(device_type: str) -> tuple:
    """The caller's settings that change what a kernel's results are compared against: autocast (on, dtype) for
    this device type and the float32 matmul precision (TF32 / bf16 passes), plus cuBLAS's TF32 switch on CUDA."""
    autocast = torch.is_autocast_enabled(device_type)
    cast_dtype = torch.get_autocast_dtype(device_type) if autocast else None
    tf32 = torch.backends.cuda.matmul.allow_tf32 if device_type == "cuda" else False
    return (autocast, cast_dtype, torch.get_float32_matmul_precision(), tf32)


# (family, device, dtype, precision_context) -> '' (the native kernel agrees with the reference) or what differs.
_verified: dict[tuple, str] = {}


def _verify(ext, family: str, device: torch.device, dtype: torch.dtype = torch.float32) -> str:
    """Compare one op family's native kernel with the reference once per (device, dtype, precision settings),
    before trusting it with a training run (the CUDA kernels in particular cannot be tested where CI runs). A
    mismatch warns once and that family alone uses the reference for that dtype and those settings."""
    context = precision_context(device.type)
    key = (family, str(device), dtype, context)
    if key in _verified:
        return _verified[key]
    _verified[key] = problem = self_check(ext, device, families=(family,), dtype=dtype)
    if problem and ops_mode() != "ext":
        import warnings
        warnings.warn(f"sparse_core: native {device} kernel for {family} disagrees with the reference in {dtype} "
                      f"(autocast/matmul settings {context}: {problem}); using the PyTorch reference for {family}",
                      RuntimeWarning, stacklevel=4)
    return problem


# Relative error (||native - reference|| / ||reference||, reference in float64) the self-check accepts: 16-bit
# types round every stored element (and their backward runs in that type); TF32 / reduced-precision float32
# matmuls carry 10 mantissa bits; full float32 leaves only summation order.
SELF_CHECK_TOLERANCE = {torch.float64: 1e-9, torch.float32: 2e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}
REDUCED_FP32_TOLERANCE = 1e-2


def self_check_tolerance(device_type: str, dtype: torch.dtype) -> float:
    """The tolerance for `dtype` under the caller's current autocast / matmul-precision settings."""
    autocast, cast_dtype, matmul_precision, tf32 = precision_context(device_type)
    tol = SELF_CHECK_TOLERANCE[dtype]
    if dtype == torch.float32:
        if autocast and cast_dtype in SELF_CHECK_TOLERANCE:
            tol = max(tol, SELF_CHECK_TOLERANCE[cast_dtype])
        if tf32 or matmul_precision != "highest":
            tol = max(tol, REDUCED_FP32_TOLERANCE)
    return tol


def _check_cases(ext, device: torch.device, dtype: torch.dtype, g: torch.Generator):
    """Small inputs in `dtype` and, per family, (native, reference) closures of them. The reference closures get
    the float64 copies of the same (already rounded) inputs."""
    rand = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    w0, t0 = rand(6, 5, 3, 3), torch.rand(6, generator=g) * 0.8
    mask0 = (torch.rand(6, 5, 3, 3, generator=g) > 0.3).float()
    styles0 = torch.rand(2, 5, generator=g) + 0.5
    mine = [x.to(device, dtype).requires_grad_() for x in (w0, t0, styles0)]
    ref = [x.detach().to(device, dtype).double().requires_grad_() for x in (w0, t0, styles0)]
    mask, mask_ref = mask0.to(device, dtype), mask0.to(device, torch.float64)

    def modconv_ref(w, t, styles, m, fused):
        w_eff = w * m
        d = reference.demodulation_coefficients(w_eff, styles, 1e-8)
        if not fused:
            return torch.cat([w_eff.flatten(), d.flatten()])
        return w_eff.unsqueeze(0) * styles[:, None, :, None, None] * d[:, :, None, None, None]

    return (mine, ref), {
        "threshold_masked_weight": [
            (lambda w, t, s: native.ThresholdMaskedWeight.apply(ext, w, t, 0, False),
             lambda w, t, s: reference.threshold_masked_weight(w, t, 0, False)),
        ],
        "modulated_conv2d": [
            (lambda w, t, s: torch.cat([x.flatten() for x in native.ModconvWeights.apply(ext, w, mask, s, 1e-8)]),
             lambda w, t, s: modconv_ref(w, t, s, mask_ref, False)),
            (lambda w, t, s: native.ModconvDemod.apply(ext, w, s, 1e-8),
             lambda w, t, s: reference.demodulation_coefficients(w, s, 1e-8)),
            (lambda w, t, s: native.ModconvFusedWeights.apply(ext, w, mask, s, True, 1e-8),
             lambda w, t, s: modconv_ref(w, t, s, mask_ref, True)),
        ],
    }


def self_check(ext, device: torch.device, families=FAMILIES, dtype: torch.dtype = torch.float32) -> str:
    """'' if the native kernels of `families` match the reference (values and gradients, the reference in float64
    on the same inputs) on a small case in `dtype`, else what differs. The native side runs under the caller's
    autocast and matmul-precision settings, with the tolerance those settings allow (self_check_tolerance); it
    runs with gradients on and outside any dispatch mode whatever the caller's context (the first forward of a
    run often happens under no_grad or inference_mode, or while FLOPs are being counted)."""
    from torch.utils._python_dispatch import _disable_current_modes

    tol = self_check_tolerance(device.type, dtype)
    with _disable_current_modes(), torch.inference_mode(False), torch.enable_grad():
        g = torch.Generator().manual_seed(0)
        (mine, ref), cases = _check_cases(ext, device, dtype, g)
        for name in families:
            for native_fn, ref_fn in cases[name]:
                problem = _compare(name, native_fn, ref_fn, mine, ref, g, device, tol)
                if problem:
                    return problem
            if name == "threshold_masked_weight":
                problem = _check_reset(ext, mine[0].detach(), device)
                if problem:
                    return problem
    return ""


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    denom = float(b.norm())
    return float((a - b).norm()) / denom if denom > 0 else float((a - b).norm())


def _compare(name, native_fn, ref_fn, mine, ref, g, device, tol) -> str:
    try:
        a = native_fn(*mine)
        with torch.autocast(device.type, enabled=False):
            b = ref_fn(*ref)
        upstream = torch.randn(b.shape, generator=g, dtype=torch.float64).to(device)
        ga = torch.autograd.grad(a, mine, upstream.to(a.dtype), allow_unused=True)
        gb = torch.autograd.grad(b, ref, upstream, allow_unused=True)
    except Exception as exc:  # a kernel that cannot even run is a failed check, not a crash
        return f"{name}: {type(exc).__name__}: {exc}"
    if a.shape != b.shape or not torch.isfinite(a).all():
        return f"{name}: forward gives shape {tuple(a.shape)} (finite: {bool(torch.isfinite(a).all())})"
    err = _rel(a, b)
    if not err <= tol:
        return f"{name}: forward differs by {err:.3g} (relative; tolerance {tol:g})"
    for label, x, y in zip(("w", "t", "styles"), ga, gb):
        if x is None and y is None:
            continue
        x = torch.zeros_like(y) if x is None else x
        y = torch.zeros_like(x, dtype=torch.float64) if y is None else y
        err = _rel(x, y)
        if not err <= tol:
            return f"{name}: gradient for {label} differs by {err:.3g} (relative; tolerance {tol:g})"
    return ""


def _check_reset(ext, w: torch.Tensor, device) -> str:
    """The reset rule fused into the forward: a collapsing and a non-collapsing threshold, exact agreement."""
    try:
        with torch.no_grad():
            for value in (0.1, 50.0):  # keeps most of w / keeps nothing (reset to 0)
                t_native = torch.full((w.shape[0],), value, device=device)
                t_ref = t_native.clone()
                out = native.ThresholdMaskedWeight.apply(ext, w, t_native, 0, False, 0.01)
                reference.reset_collapsed_thresholds(w, t_ref, 0, 0.01)
                expected = reference.threshold_masked_weight(w, t_ref, 0, False)
                if not (torch.equal(out, expected) and torch.equal(t_native, t_ref)):
                    return f"threshold_masked_weight: the reset rule at t = {value} differs from the reference"
    except Exception as exc:
        return f"threshold_masked_weight (reset rule): {type(exc).__name__}: {exc}"
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


def threshold_masked_weight(w: torch.Tensor, t: torch.Tensor, channel_dim: int = 0, official: bool = False,
                            reset_density: float | None = None):
    """w * step(|w| - t) with one threshold per channel of `channel_dim` (RG-GAN's masked weight).

    reset_density: RG-GAN's reset rule, applied first: when the mask would keep <= reset_density of w's entries,
    every threshold of t is set to 0 (written through t.data, branch-free, no host sync) and the mask is taken
    at t = 0. The native kernel counts what the mask keeps in the same pass over w.
    """
    channel_dim = reference.check_threshold_args(w, t, channel_dim)
    if reset_density is not None:
        reference.check_reset_density(reset_density)
    ext = _native("threshold_masked_weight", w, t)
    _count("threshold_masked_weight", ext)
    if ext is None:
        if reset_density is not None:
            reference.reset_collapsed_thresholds(w, t, channel_dim, reset_density)
        return reference.threshold_masked_weight(w, t, channel_dim, official)
    return native.ThresholdMaskedWeight.apply(ext, w, t, channel_dim, bool(official),
                                              None if reset_density is None else float(reset_density))


def threshold_masked_conv2d(x, w, t, bias=None, stride=1, padding=0, dilation=1, groups=1, official=False):
    return F.conv2d(x, threshold_masked_weight(w, t, 0, official), bias, stride, padding, dilation, groups)


def threshold_masked_linear(x, w, t, bias=None, official=False):
    return F.linear(x, threshold_masked_weight(w, t, 0, official), bias)


def _styles_like_weight(w: torch.Tensor, styles: torch.Tensor) -> torch.Tensor | None:
    """styles in w's dtype when that is the dtype the reference's products promote to (under autocast styles
    arrive in bf16/fp16 next to fp32 weights: the cast is exact and differentiable), else None (the native
    kernels take one dtype; a weight narrower than its styles goes to the reference)."""
    if styles.dtype == w.dtype:
        return styles
    if w.is_floating_point() and styles.is_floating_point() and torch.promote_types(w.dtype, styles.dtype) == w.dtype:
        return styles.to(w.dtype)
    return None


def modulated_conv2d(x, w, styles, mask=None, demodulate=True, padding=0, fused=False, eps=1e-8):
    """StyleGAN2 modulated conv (no resampling). See reference.modulated_conv2d for the maths."""
    reference.check_modulated_args(x, w, styles, mask)
    styles_w = _styles_like_weight(w, styles)
    ext = None if styles_w is None else _native("modulated_conv2d", w, styles_w, mask, styles=styles_w)
    _count("modulated_conv2d", ext)
    if ext is None:
        if styles_w is None and ops_mode() == "ext":
            raise RuntimeError(f"{loader.MODE_ENV}=ext: native modulated_conv2d takes styles in (or promoting to) "
                               f"the weight dtype {w.dtype}, got {styles.dtype}")
        return reference.modulated_conv2d(x, w, styles, mask, demodulate, padding, fused, eps)
    if mask is not None:
        mask = _as_weight_dtype(mask, w)
    n, c_in, height, width = x.shape
    c_out = w.shape[0]
    if not fused:
        if demodulate and mask is not None:
            w_eff, dcoefs = native.ModconvWeights.apply(ext, w, mask, styles_w, float(eps))
        elif demodulate:
            w_eff, dcoefs = w, native.ModconvDemod.apply(ext, w, styles_w, float(eps))
        else:
            w_eff = w if mask is None else reference.masked_weight(w, mask)
        y = F.conv2d(x * styles[:, :, None, None], w_eff, padding=padding)   # x scaled as the reference does
        return y * dcoefs[:, :, None, None] if demodulate else y
    per_sample = native.ModconvFusedWeights.apply(ext, w, mask, styles_w, bool(demodulate), float(eps))
    y = F.conv2d(x.reshape(1, n * c_in, height, width), per_sample.reshape(n * c_out, c_in, *w.shape[2:]),
                 padding=padding, groups=n)
    return y.reshape(n, c_out, *y.shape[2:])


def modulation(w: torch.Tensor, styles: torch.Tensor, demodulate: bool = True, fused: bool = False, eps: float = 1e-8):
    """The weight side of a StyleGAN2 modulated conv, for a caller that runs the convolution itself (with its
    own resampling, noise and precision handling): returns (per-sample weights [N, O, I, kh, kw] or None,
    demodulation coefficients [N, O] or None).

    fused=False (the training path) needs only the coefficients rsqrt(sum_{i,k} (w[o,i,k] styles[n,i])^2 + eps),
    computed natively in one pass over the weight without building the [N, O, I, kh, kw] product (and without
    copying w); fused=True returns the (demodulated) per-sample weights for one grouped convolution and no
    separate coefficients. Styles narrower than w (from an autocast region) are cast to w's dtype first, which is
    what the reference's products promote them to.
    """
    reference.check_modulated_args(torch.empty(styles.shape[0], w.shape[1], 1, 1, device="meta"), w, styles, None)
    if not fused and not demodulate:
        return None, None
    styles_w = _styles_like_weight(w, styles)
    ext = None if styles_w is None else _native("modulated_conv2d", w, styles_w, styles=styles_w)
    _count("modulated_conv2d", ext)
    if ext is None:
        dcoefs = reference.demodulation_coefficients(w, styles, eps) if demodulate else None
        if not fused:
            return None, dcoefs
        per_sample = w.unsqueeze(0) * styles[:, None, :, None, None]
        return (per_sample * dcoefs[:, :, None, None, None] if demodulate else per_sample), None
    if not fused:
        return None, native.ModconvDemod.apply(ext, w, styles_w, float(eps))
    return native.ModconvFusedWeights.apply(ext, w, None, styles_w, bool(demodulate), float(eps)), None
