"""Autograd Functions around the native kernels (cuda/ in the checkout), with second-order support.

Each backward is written with operations that are themselves differentiable (the same native
Functions, or plain torch ops), so `create_graph=True` gives correct double backward: R1 through
D and path-length regularisation through G's modulated convolutions need it.

Every Function takes the loaded extension (`loader.NativeOps`) as its first argument, so one code
path serves the CPU and the CUDA builds.
"""
from __future__ import annotations

import torch
from torch.autograd import Function

from . import reference


def _channel_sum(x: torch.Tensor, channel_dim: int) -> torch.Tensor:
    dims = [d for d in range(x.dim()) if d != channel_dim]
    return x.sum(dim=dims) if dims else x


def _broadcast(t: torch.Tensor, ndim: int, channel_dim: int) -> torch.Tensor:
    shape = [1] * ndim
    shape[channel_dim] = -1
    return t.reshape(shape)


class ThresholdMaskedWeight(Function):
    """w * step(|w| - t); the backward is one fused native pass (ThresholdGrads).

    With reset_density (RG-GAN's reset rule) the same native pass counts what the mask keeps; when that is
    <= reset_density of the entries, t becomes 0 (written through .data, as the reference does, so graphs that
    saved t earlier stay valid) and the output is the mask at t = 0."""

    @staticmethod
    def forward(ctx, ext, w, t, channel_dim, official, reset_density=None):
        ctx.ext, ctx.channel_dim, ctx.official = ext, channel_dim, official
        if reset_density is None:
            out = ext.ops.threshold_forward(w, t, channel_dim)
        else:
            out, t_new = ext.ops.threshold_forward_reset(w, t, channel_dim, float(reset_density))
            t.data.copy_(t_new)
        ctx.save_for_backward(w, t)
        return out

    @staticmethod
    def backward(ctx, grad):
        w, t = ctx.saved_tensors
        grad_w, grad_t = ThresholdGrads.apply(ctx.ext, grad, w, t, ctx.channel_dim, ctx.official)
        return (None, grad_w if ctx.needs_input_grad[1] else None,
                None if ctx.official or not ctx.needs_input_grad[2] else grad_t, None, None, None)


class ThresholdGrads(Function):
    """(g * M, -sum_j g w s'(x)) with x = |w| - t, computed natively in one pass.

    Its own backward (the second order of the threshold op) follows the reference semantics:
    x treats |w| as a constant, M's derivative in t is -s'(x), and s'' = -4 sign(x) on |x| <= 0.4.
    It is written in torch ops (via reference.long_tailed_grad / threshold_mask), so higher orders work too.
    """

    @staticmethod
    def forward(ctx, ext, grad, w, t, channel_dim, official):
        ctx.channel_dim, ctx.official = channel_dim, official
        ctx.save_for_backward(grad, w, t)
        grad_w, grad_t = ext.ops.threshold_backward(grad, w, t, channel_dim, not official)
        return grad_w, grad_t

    @staticmethod
    def backward(ctx, gg_w, gg_t):
        grad, w, t = ctx.saved_tensors
        cd, official = ctx.channel_dim, ctx.official
        x = w.detach().abs() - _broadcast(t, w.dim(), cd)
        mask = reference.threshold_mask(w, t, cd, official)  # step(x) with the STE derivative in t
        slope = reference.long_tailed_grad(x)  # s'(x), differentiable in t (gives s'')
        d_grad = d_w = d_t = None
        if gg_w is not None:
            d_grad = gg_w * mask.to(gg_w.dtype)
            if not official:
                # d(g*M)/dt = -g s'(x)  (summed over each channel)
                d_t = _channel_sum(-(gg_w * grad * slope), cd)
        if gg_t is not None and not official:
            gg_t_b = _broadcast(gg_t, w.dim(), cd)
            term_grad = -(gg_t_b * w * slope)
            d_grad = term_grad if d_grad is None else d_grad + term_grad
            d_w = -(gg_t_b * grad * slope)
            # d(-sum g w s'(x))/dt = sum g w s''(x), with s'' = -4 sign(x) on |x| <= 0.4.
            second = torch.where(x.abs() <= 0.4, -4.0 * torch.sign(x), torch.zeros_like(x))
            term_t = _channel_sum(gg_t_b * grad * w * second, cd)
            d_t = term_t if d_t is None else d_t + term_t
        if d_t is not None:
            d_t = d_t.to(t.dtype)
        return None, d_grad, d_w, d_t, None, None


def _demod_chain(grad_d, dcoefs, w_eff, styles):
    """Gradients of dcoefs = (S2 @ W2^T + eps)^-1/2 for w_eff and styles, given grad_d [N, O]."""
    q = -0.5 * grad_d * dcoefs.pow(3)  # d dcoefs / d(sum) = -1/2 dcoefs^3
    w2 = w_eff.square().sum(dim=[2, 3])  # [O, I]
    s2 = styles.square()  # [N, I]
    grad_w_eff = 2.0 * w_eff * (q.t() @ s2)[:, :, None, None]
    grad_styles = 2.0 * styles * (q @ w2)
    return grad_w_eff, grad_styles


class ModconvWeights(Function):
    """Non-fused modulated conv weight prep: (w_eff = w * mask, dcoefs [N, O]) in one native pass."""

    @staticmethod
    def forward(ctx, ext, w, mask, styles, eps):
        w_eff, dcoefs = ext.ops.modconv_weights(w, mask, styles, True, False, eps)
        ctx.has_mask = mask is not None
        ctx.save_for_backward(w, mask, styles, w_eff, dcoefs)
        return w_eff, dcoefs

    @staticmethod
    def backward(ctx, grad_w_eff, grad_d):
        w, mask, styles, w_eff, dcoefs = ctx.saved_tensors
        total = grad_w_eff if grad_w_eff is not None else torch.zeros_like(w_eff)
        grad_styles = None
        if grad_d is not None:
            # w_eff and dcoefs are saved outputs: in double backward autograd routes their
            # derivatives through this Function again.
            chain_w, grad_styles = _demod_chain(grad_d, dcoefs, w_eff, styles)
            total = total + chain_w
        grad_w = total * mask if ctx.has_mask else total
        grad_mask = total * w if ctx.has_mask and ctx.needs_input_grad[2] else None
        return None, grad_w, grad_mask, grad_styles, None


class ModconvDemod(Function):
    """Non-fused modulated conv without a mask: only dcoefs [N, O], natively in one pass (no copy of w)."""

    @staticmethod
    def forward(ctx, ext, w, styles, eps):
        _, dcoefs = ext.ops.modconv_weights(w, None, styles, True, False, eps)
        ctx.save_for_backward(w, styles, dcoefs)
        return dcoefs

    @staticmethod
    def backward(ctx, grad_d):
        w, styles, dcoefs = ctx.saved_tensors
        grad_w, grad_styles = _demod_chain(grad_d, dcoefs, w, styles)
        return None, grad_w, grad_styles, None


class ModconvFusedWeights(Function):
    """Fused-path per-sample weights ws[n,o,i,k] = w_eff[o,i,k] * styles[n,i] * dcoefs[n,o] natively."""

    @staticmethod
    def forward(ctx, ext, w, mask, styles, demodulate, eps):
        per_sample, _ = ext.ops.modconv_weights(w, mask, styles, demodulate, True, eps)
        ctx.has_mask, ctx.demodulate, ctx.eps = mask is not None, demodulate, eps
        ctx.save_for_backward(w, mask, styles)
        return per_sample

    @staticmethod
    def backward(ctx, grad):
        w, mask, styles = ctx.saved_tensors
        w_eff = w * mask if ctx.has_mask else w
        if ctx.demodulate:
            # Recomputed with torch ops so that the double backward sees its dependence on w and styles.
            dcoefs = (styles.square() @ w_eff.square().sum(dim=[2, 3]).t() + ctx.eps).rsqrt()
        else:
            dcoefs = torch.ones(styles.shape[0], w.shape[0], dtype=w.dtype, device=w.device)
        grad_w_eff = torch.einsum("noikl,ni,no->oikl", grad, styles, dcoefs)
        grad_styles = torch.einsum("noikl,oikl,no->ni", grad, w_eff, dcoefs)
        if ctx.demodulate:
            grad_d = torch.einsum("noikl,oikl,ni->no", grad, w_eff, styles)
            chain_w, chain_s = _demod_chain(grad_d, dcoefs, w_eff, styles)
            grad_w_eff = grad_w_eff + chain_w
            grad_styles = grad_styles + chain_s
        grad_w = grad_w_eff * mask if ctx.has_mask else grad_w_eff
        grad_mask = grad_w_eff * w if ctx.has_mask and ctx.needs_input_grad[2] else None
        return None, grad_w, grad_mask, grad_styles, None, None
