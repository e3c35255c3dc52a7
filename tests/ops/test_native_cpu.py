"""The compiled CPU extension against the reference: values, gradients, second order."""
import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from sparse_core import ops
from sparse_core.ops import native
from sparse_core.ops import reference as ref



def test_auto_mode_really_uses_the_extension(cpu_ext):
    w = torch.randn(4, 3, requires_grad=True)
    assert ops.backend_for(w) == "native"
    out = ops.threshold_masked_weight(w, torch.zeros(4, requires_grad=True))
    assert type(out.grad_fn).__name__.startswith("ThresholdMaskedWeight")


def test_masked_weight_is_the_reference_multiply(rng):
    """No training path uses a masked forward (Re-GAN masks in place): masked_weight has no native kernel."""
    w = torch.randn(8, 4, 3, 3, generator=rng, requires_grad=True)
    mask = (torch.rand(w.shape, generator=rng) > 0.3).float()
    assert torch.equal(ops.masked_weight(w, mask.bool()), w * mask)
    assert not hasattr(native, "MaskedWeight")
    x = torch.randn(2, 4, 5, 5, generator=rng, dtype=torch.float64, requires_grad=True)
    wc = torch.randn(3, 4, 3, 3, generator=rng, dtype=torch.float64, requires_grad=True)
    mc = (torch.rand(wc.shape, generator=rng) > 0.5).double()
    assert gradgradcheck(lambda x, w: ops.masked_conv2d(x, w, mc, padding=1), (x, wc))  # R1-style double backward


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channel_dim", [0, 1])
@pytest.mark.parametrize("official", [False, True])
def test_threshold_matches_reference_first_and_second_order(cpu_ext, rng, dtype, channel_dim, official, rel_err,
                                                           safe_weights):
    shape = (48, 40, 3, 3)
    t_ref = (torch.rand(shape[channel_dim], generator=rng, dtype=torch.float64) * 0.6)
    w_ref = safe_weights(shape, t_ref, rng, channel_dim, margin=1e-3)
    w_n, t_n = w_ref.to(dtype).requires_grad_(), t_ref.to(dtype).requires_grad_()
    w_r, t_r = w_ref.to(dtype).requires_grad_(), t_ref.to(dtype).requires_grad_()
    out_n = native.ThresholdMaskedWeight.apply(cpu_ext, w_n, t_n, channel_dim, official)
    out_r = ref.threshold_masked_weight(w_r, t_r, channel_dim, official)
    assert torch.equal(out_n, out_r)
    g = torch.randn(shape, generator=rng, dtype=dtype)
    gn = torch.autograd.grad(out_n, (w_n, t_n), g, create_graph=True, allow_unused=True)
    gr = torch.autograd.grad(out_r, (w_r, t_r), g, create_graph=True, allow_unused=True)
    assert torch.equal(gn[0], gr[0])
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    if official:
        assert gn[1] is None or torch.count_nonzero(gn[1]) == 0
        assert gr[1] is None or torch.count_nonzero(gr[1]) == 0
        return
    assert rel_err(gn[1], gr[1]) < tol
    # second order: a scalar of both first-order gradients, differentiated again
    v = torch.randn(shape[channel_dim], generator=rng, dtype=dtype)
    u = torch.randn(shape, generator=rng, dtype=dtype)
    hn = torch.autograd.grad((gn[1] * v).sum() + (gn[0] * u).sum(), (w_n, t_n))
    hr = torch.autograd.grad((gr[1] * v).sum() + (gr[0] * u).sum(), (w_r, t_r))
    assert rel_err(hn[0], hr[0]) < tol
    assert rel_err(hn[1], hr[1]) < tol


def test_threshold_gradcheck_in_w_through_extension(cpu_ext, rng, safe_weights):
    t = torch.rand(4, generator=rng, dtype=torch.float64) * 0.5
    w = safe_weights((4, 3, 2, 2), t, rng).requires_grad_()

    def op(w):
        return native.ThresholdMaskedWeight.apply(cpu_ext, w, t, 0, False)

    assert gradcheck(op, (w,))
    assert gradgradcheck(op, (w,))


def test_threshold_grads_function_gradcheck_in_t(cpu_ext, rng, safe_weights):
    # The fused backward (g*M, -sum g w s'(x)) is smooth in t away from kinks: check its own t-derivative numerically.
    t = (torch.rand(3, generator=rng, dtype=torch.float64) * 0.3).requires_grad_()
    w = safe_weights((3, 5), t.detach(), rng, margin=0.01)
    g = torch.randn(3, 5, generator=rng, dtype=torch.float64, requires_grad=True)

    def grad_t_only(g, t):
        return native.ThresholdGrads.apply(cpu_ext, g, w, t, 0, False)[1]

    assert gradcheck(grad_t_only, (g, t))


def test_threshold_frontend_conv_linear(cpu_ext, rng, rel_err):
    x = torch.randn(2, 3, 5, 5, generator=rng)
    w = torch.randn(6, 3, 3, 3, generator=rng)
    t = torch.rand(6, generator=rng) * 0.5
    expected = ref.threshold_masked_conv2d(x, w, t, padding=1)
    assert rel_err(ops.threshold_masked_conv2d(x, w, t, padding=1), expected) < 1e-6
    xl, wl, tl = torch.randn(4, 8, generator=rng), torch.randn(5, 8, generator=rng), torch.rand(5, generator=rng)
    assert rel_err(ops.threshold_masked_linear(xl, wl, tl), ref.threshold_masked_linear(xl, wl, tl)) < 1e-6


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("with_mask", [True, False])
def test_modulated_conv_fp32_matches_reference(cpu_ext, rng, fused, demodulate, with_mask, rel_err):
    x = torch.randn(4, 32, 8, 8, generator=rng)
    w = torch.randn(24, 32, 3, 3, generator=rng, requires_grad=True)
    styles = (torch.randn(4, 32, generator=rng) + 1).requires_grad_()
    mask = (torch.rand(w.shape, generator=rng) > 0.3).float() if with_mask else None
    y_n = ops.modulated_conv2d(x, w, styles, mask, demodulate, padding=1, fused=fused)
    y_r = ref.modulated_conv2d(x, w, styles, mask, demodulate, padding=1, fused=fused)
    assert rel_err(y_n, y_r) <= 1e-6
    g = torch.randn(y_r.shape, generator=rng)
    for a, b in zip(torch.autograd.grad(y_n, (w, styles), g), torch.autograd.grad(y_r, (w, styles), g)):
        assert rel_err(a, b) <= 1e-5


def test_modulated_weight_prep_float64_exact(cpu_ext, rng, rel_err):
    w = torch.randn(16, 8, 3, 3, generator=rng, dtype=torch.float64)
    mask = (torch.rand(w.shape, generator=rng) > 0.5).double()
    styles = torch.randn(5, 8, generator=rng, dtype=torch.float64)
    w_eff, dcoefs = cpu_ext.ops.modconv_weights(w, mask, styles, True, False, 1e-8)
    assert torch.equal(w_eff, w * mask)
    assert rel_err(dcoefs, ref.demodulation_coefficients(w * mask, styles, 1e-8)) < 1e-14
    per_sample, _ = cpu_ext.ops.modconv_weights(w, mask, styles, True, True, 1e-8)
    expected = (w * mask)[None] * styles[:, None, :, None, None] * dcoefs[:, :, None, None, None]
    assert rel_err(per_sample, expected) < 1e-14


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_gradcheck_and_gradgradcheck_through_extension(cpu_ext, rng, fused, demodulate):
    x = torch.randn(2, 3, 4, 4, generator=rng, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 3, 3, generator=rng, dtype=torch.float64, requires_grad=True)
    styles = torch.randn(2, 3, generator=rng, dtype=torch.float64, requires_grad=True)
    mask = (torch.rand(w.shape, generator=rng) > 0.3).double().requires_grad_()

    def op(x, w, styles, mask):
        y = ops.modulated_conv2d(x, w, styles, mask, demodulate, padding=1, fused=fused)
        assert "Backward" in type(y.grad_fn).__name__
        return y

    assert gradcheck(op, (x, w, styles, mask))
    assert gradgradcheck(op, (x, w, styles, mask))


def test_path_length_style_double_backward_matches_reference(cpu_ext, rng, rel_err):
    # grad of the output w.r.t. the styles with create_graph, then backprop of its norm into w.
    x = torch.randn(3, 8, 6, 6, generator=rng, dtype=torch.float64)
    w0 = torch.randn(8, 8, 3, 3, generator=rng, dtype=torch.float64)
    s0 = torch.randn(3, 8, generator=rng, dtype=torch.float64)
    noise = torch.randn(3, 8, 6, 6, generator=rng, dtype=torch.float64)
    results = []
    for fn in (ops.modulated_conv2d, ref.modulated_conv2d):
        w, s = w0.clone().requires_grad_(), s0.clone().requires_grad_()
        y = fn(x, w, s, None, True, 1, False)
        (gs,) = torch.autograd.grad((y * noise).sum(), s, create_graph=True)
        (gw,) = torch.autograd.grad(gs.square().sum(), w)
        results.append(gw)
    assert rel_err(results[0], results[1]) < 1e-12


def test_native_kernels_reject_bad_arguments(cpu_ext):
    with pytest.raises(RuntimeError, match="same shape"):
        cpu_ext.ops.threshold_backward(torch.zeros(3, 4), torch.zeros(4, 3), torch.zeros(4), 0, True)
    with pytest.raises(RuntimeError, match="t must have shape"):
        cpu_ext.ops.threshold_forward(torch.zeros(3, 4), torch.zeros(4), 0)
    with pytest.raises(RuntimeError, match="styles must be"):
        cpu_ext.ops.modconv_weights(torch.zeros(2, 3, 1, 1), None, torch.zeros(2, 4), True, False, 1e-8)
