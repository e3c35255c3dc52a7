"""The pure-PyTorch reference ops against hand-computed values and independent float64 formulas."""
import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

from sparse_core.ops import reference as ref


def slope_by_hand(x: float) -> float:
    """The RG-GAN long-tailed estimator written independently, on python floats."""
    if abs(x) <= 0.4:
        return 2.0 - 4.0 * abs(x)
    if abs(x) <= 1.0:
        return 0.4
    return 0.0


def second_slope_by_hand(x: float) -> float:
    if abs(x) <= 0.4:
        return -4.0 * (1.0 if x > 0 else (-1.0 if x < 0 else 0.0))
    return 0.0


@pytest.mark.parametrize("x, expected", [(0.0, 2.0), (0.1, 1.6), (-0.25, 1.0), (0.4, 0.4), (0.5, 0.4),
                                         (-1.0, 0.4), (1.01, 0.0), (-3.0, 0.0)])
def test_long_tailed_grad_hand_values(x, expected):
    got = ref.long_tailed_grad(torch.tensor([x], dtype=torch.float64)).item()
    assert got == pytest.approx(expected, abs=1e-12)


def test_antiderivative_is_continuous_and_has_the_estimator_as_derivative():
    x = torch.linspace(-1.5, 1.5, 3001, dtype=torch.float64, requires_grad=True)
    s = ref.long_tailed_antiderivative(x)
    (ds,) = torch.autograd.grad(s.sum(), x)
    expected = torch.tensor([slope_by_hand(v) for v in x.tolist()], dtype=torch.float64)
    assert torch.allclose(ds, expected, atol=1e-12)
    # continuity: neighbouring samples differ by at most slope_max * spacing
    assert (s[1:] - s[:-1]).abs().max().item() <= 2.0 * 0.001 + 1e-12
    assert s[-1].item() == pytest.approx(0.72) and s[0].item() == pytest.approx(-0.72)


def test_masked_ops_match_explicit_masking(rng):
    w = torch.randn(6, 4, 3, 3, generator=rng, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(w.shape, generator=rng, dtype=torch.float64) > 0.4
    x = torch.randn(2, 4, 5, 5, generator=rng, dtype=torch.float64)
    y = ref.masked_conv2d(x, w, mask, padding=1)
    w_masked = w.detach().clone()
    w_masked[~mask] = 0.0
    assert torch.allclose(y, F.conv2d(x, w_masked, padding=1), atol=1e-12)
    (grad_w,) = torch.autograd.grad(y.square().sum(), w)
    assert torch.all(grad_w[~mask] == 0)
    lin_w = torch.randn(5, 7, generator=rng, dtype=torch.float64)
    lin_m = (torch.rand(5, 7, generator=rng) > 0.5).double()
    xl = torch.randn(3, 7, generator=rng, dtype=torch.float64)
    assert torch.allclose(ref.masked_linear(xl, lin_w, lin_m), xl @ (lin_w * lin_m).t(), atol=1e-12)


def test_masked_ops_gradcheck_and_gradgradcheck(rng):
    w = torch.randn(3, 2, 3, 3, generator=rng, dtype=torch.float64, requires_grad=True)
    mask = (torch.rand(w.shape, generator=rng) > 0.3).double().requires_grad_()
    x = torch.randn(2, 2, 4, 4, generator=rng, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=rng, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda w, m: ref.masked_weight(w, m), (w, mask))
    assert gradgradcheck(lambda x, w, b: ref.masked_conv2d(x, w, mask.detach(), b, padding=1), (x, w, b))
    xl = torch.randn(4, 6, generator=rng, dtype=torch.float64, requires_grad=True)
    wl = torch.randn(3, 6, generator=rng, dtype=torch.float64, requires_grad=True)
    ml = (torch.rand(3, 6, generator=rng) > 0.5).double()
    assert gradgradcheck(lambda x, w: ref.masked_linear(x, w, ml), (xl, wl))


def test_threshold_forward_is_a_hard_step_per_output_channel():
    w = torch.tensor([[0.5, -0.2, 0.3], [1.0, -1.5, 0.05]], dtype=torch.float64)
    t = torch.tensor([0.25, 1.0], dtype=torch.float64)
    out = ref.threshold_masked_weight(w, t)
    # |w| - t > 0 strictly: 0.5 and 0.3 survive in row 0; only -1.5 in row 1 (|1.0| - 1.0 = 0 is pruned)
    assert torch.equal(out, torch.tensor([[0.5, 0.0, 0.3], [0.0, -1.5, 0.0]], dtype=torch.float64))


@pytest.mark.parametrize("channel_dim", [0, 1])
def test_threshold_first_order_gradients_match_explicit_formula(rng, channel_dim, safe_weights):
    shape = (4, 3, 3, 3)
    channels = shape[channel_dim]
    t = (torch.rand(channels, generator=rng, dtype=torch.float64) * 0.6).requires_grad_()
    w = safe_weights(shape, t.detach(), rng, channel_dim).requires_grad_()
    g = torch.randn(shape, generator=rng, dtype=torch.float64)
    out = ref.threshold_masked_weight(w, t, channel_dim)
    grad_w, grad_t = torch.autograd.grad(out, (w, t), g)
    view = [1] * 4
    view[channel_dim] = -1
    x = w.detach().abs() - t.detach().reshape(view)
    mask = (x > 0).double()
    assert torch.equal(grad_w, g * mask)  # pruned weights get exactly no update
    slopes = torch.tensor([slope_by_hand(v) for v in x.flatten().tolist()], dtype=torch.float64).reshape(shape)
    dims = [d for d in range(4) if d != channel_dim]
    expected_t = -(g * w.detach() * slopes).sum(dim=dims)
    assert torch.allclose(grad_t, expected_t, atol=1e-12)


def test_threshold_weight_gradient_numerically_and_double_backward(rng, safe_weights):
    t = torch.rand(3, generator=rng, dtype=torch.float64) * 0.5
    w = safe_weights((3, 5), t, rng).requires_grad_()
    # w only: t constant. Away from the threshold the op is locally linear in w.
    assert gradcheck(lambda w: ref.threshold_masked_weight(w, t), (w,))
    assert gradgradcheck(lambda w: ref.threshold_masked_weight(w, t), (w,))


def test_threshold_second_order_in_t_matches_explicit_formula(rng, safe_weights):
    shape = (3, 4, 2)
    t = (torch.rand(3, generator=rng, dtype=torch.float64) * 0.3).requires_grad_()
    w = safe_weights(shape, t.detach(), rng).requires_grad_()
    g = torch.randn(shape, generator=rng, dtype=torch.float64)
    v = torch.randn(3, generator=rng, dtype=torch.float64)
    (grad_t,) = torch.autograd.grad(ref.threshold_masked_weight(w, t), t, g, create_graph=True)
    hess_t, hess_w = torch.autograd.grad((grad_t * v).sum(), (t, w))
    x = (w.detach().abs() - t.detach()[:, None, None]).flatten().tolist()
    second = torch.tensor([second_slope_by_hand(e) for e in x], dtype=torch.float64).reshape(shape)
    slope = torch.tensor([slope_by_hand(e) for e in x], dtype=torch.float64).reshape(shape)
    # d/dt_c (-sum g w s'(|w| - t_c)) = sum g w s''(x); d/dw = -g s'(x) (|w| is constant inside the mask)
    assert torch.allclose(hess_t, v * (g * w.detach() * second).sum(dim=[1, 2]), atol=1e-12)
    assert torch.allclose(hess_w, -v[:, None, None] * g * slope, atol=1e-12)


def test_threshold_official_mode_gives_t_no_gradient(rng):
    w = torch.randn(4, 6, generator=rng, dtype=torch.float64, requires_grad=True)
    t = torch.full((4,), 0.3, dtype=torch.float64, requires_grad=True)
    out = ref.threshold_masked_weight(w, t, official=True)
    assert torch.equal(out, ref.threshold_masked_weight(w, t, official=False))
    grad_w, grad_t = torch.autograd.grad(out.sum(), (w, t), allow_unused=True)
    assert grad_t is None or torch.count_nonzero(grad_t) == 0
    assert torch.equal(grad_w, (w.detach().abs() > 0.3).double())


def test_threshold_conv_and_linear_use_output_channels(rng):
    w = torch.randn(5, 3, 3, 3, generator=rng, dtype=torch.float64)
    t = torch.rand(5, generator=rng, dtype=torch.float64)
    x = torch.randn(2, 3, 6, 6, generator=rng, dtype=torch.float64)
    keep = w.abs() > t[:, None, None, None]
    assert torch.allclose(ref.threshold_masked_conv2d(x, w, t, padding=1), F.conv2d(x, w * keep, padding=1), atol=1e-12)
    wl = torch.randn(4, 7, generator=rng, dtype=torch.float64)
    tl = torch.rand(4, generator=rng, dtype=torch.float64)
    xl = torch.randn(3, 7, generator=rng, dtype=torch.float64)
    assert torch.allclose(ref.threshold_masked_linear(xl, wl, tl), xl @ (wl * (wl.abs() > tl[:, None])).t(), atol=1e-12)


@pytest.mark.parametrize("bad_t, bad_dim, message", [
    (torch.zeros(3), 0, "t must have shape"),
    (torch.zeros(4, 1), 0, "t must have shape"),
    (torch.zeros(4), 4, "channel_dim=4 is out of range"),
])
def test_threshold_bad_arguments_are_named(bad_t, bad_dim, message):
    with pytest.raises(ValueError, match=message):
        ref.threshold_masked_weight(torch.zeros(4, 2, 3, 3), bad_t, bad_dim)


def naive_modulated_conv(x, w, styles, mask, demodulate, padding, eps):
    """Per-sample loop in float64: modulate, demodulate, convolve one sample at a time."""
    w_eff = w if mask is None else w * mask
    outputs = []
    for n in range(x.shape[0]):
        wn = w_eff * styles[n].reshape(1, -1, 1, 1)
        if demodulate:
            wn = wn / torch.sqrt(wn.square().sum(dim=[1, 2, 3], keepdim=True) + eps)
        outputs.append(F.conv2d(x[n:n + 1], wn, padding=padding))
    return torch.cat(outputs)


def test_modulated_conv_hand_computed_case():
    # O=1, I=2, 1x1 kernel w = (3, 4): demodulation divides by sqrt(9 + 16) = 5.
    w = torch.tensor([3.0, 4.0], dtype=torch.float64).reshape(1, 2, 1, 1)
    x = torch.tensor([1.0, 2.0], dtype=torch.float64).reshape(1, 2, 1, 1)
    styles = torch.ones(1, 2, dtype=torch.float64)
    for fused in (False, True):
        y = ref.modulated_conv2d(x, w, styles, demodulate=True, fused=fused, eps=0.0)
        assert y.item() == pytest.approx((3 * 1 + 4 * 2) / 5)
    styles = torch.tensor([[2.0, 0.5]], dtype=torch.float64)  # modulated weights (6, 2): norm sqrt(40)
    y = ref.modulated_conv2d(x, w, styles, demodulate=True, eps=0.0)
    assert y.item() == pytest.approx((6 * 1 + 2 * 2) / 40 ** 0.5)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("with_mask", [True, False])
def test_modulated_conv_matches_per_sample_loop(rng, fused, demodulate, with_mask):
    x = torch.randn(3, 4, 6, 6, generator=rng, dtype=torch.float64)
    w = torch.randn(5, 4, 3, 3, generator=rng, dtype=torch.float64)
    styles = torch.randn(3, 4, generator=rng, dtype=torch.float64)
    mask = (torch.rand(w.shape, generator=rng) > 0.3).double() if with_mask else None
    got = ref.modulated_conv2d(x, w, styles, mask, demodulate, padding=1, fused=fused)
    expected = naive_modulated_conv(x, w, styles, mask, demodulate, 1, 1e-8)
    assert torch.allclose(got, expected, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("fused", [False, True])
def test_modulated_conv_gradcheck_and_gradgradcheck(rng, fused):
    x = torch.randn(2, 3, 4, 4, generator=rng, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 3, 3, generator=rng, dtype=torch.float64, requires_grad=True)
    styles = torch.randn(2, 3, generator=rng, dtype=torch.float64, requires_grad=True)
    mask = (torch.rand(w.shape, generator=rng) > 0.3).double().requires_grad_()

    def op(x, w, styles, mask):
        return ref.modulated_conv2d(x, w, styles, mask, padding=1, fused=fused)

    assert gradcheck(op, (x, w, styles, mask))
    assert gradgradcheck(op, (x, w, styles, mask))


def test_modulated_conv_bad_shapes_are_named():
    x, w = torch.zeros(2, 3, 4, 4), torch.zeros(5, 3, 3, 3)
    with pytest.raises(ValueError, match="styles must be"):
        ref.modulated_conv2d(x, w, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="x must be"):
        ref.modulated_conv2d(torch.zeros(2, 4, 4, 4), w, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="mask shape"):
        ref.modulated_conv2d(x, w, torch.zeros(2, 3), mask=torch.ones(5, 3, 1, 1))
