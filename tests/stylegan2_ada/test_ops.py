"""torch_utils ops of the StyleGAN2-ADA tree against independent float64 references.

References are built from numpy/scipy (explicit zero insertion, padding, scipy.signal
convolution, decimation) or from hand-derived closed forms (a [1, 1] FIR filter makes
upsample2d a nearest-neighbour upsample and downsample2d a 2x2 average pool)."""
import os
import sys

import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F

SG2_ROOT = os.path.join(os.path.dirname(__file__), '..', '..', 'vendor', 'stylegan2_ada')
if os.path.abspath(SG2_ROOT) not in sys.path:
    sys.path.insert(0, os.path.abspath(SG2_ROOT))

import dnnlib  # noqa: E402
from torch_utils import misc, training_stats  # noqa: E402
from torch_utils.ops import bias_act, conv2d_gradfix, conv2d_resample, fma, upfirdn2d  # noqa: E402

torch.set_num_threads(2)


# ----------------------------------------------------------------------------
# Independent numpy references.

def ref_upfirdn2d(x, f, up=(1, 1), down=(1, 1), pad=(0, 0, 0, 0), flip_filter=False, gain=1.0):
    """x: [N, C, H, W] float64 numpy; f: 1D (separable, applied along both axes) or 2D numpy."""
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = pad
    n, c, h, w = x.shape
    # Zero insertion.
    u = np.zeros([n, c, h * upy, w * upx])
    u[:, :, ::upy, ::upx] = x
    # Pad with zeros, then crop negative padding.
    u = np.pad(u, [(0, 0), (0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))])
    u = u[:, :, max(-py0, 0): u.shape[2] - max(-py1, 0), max(-px0, 0): u.shape[3] - max(-px1, 0)]
    # 2D filter kernel with the gain spread as upstream does (gain ** (ndim / 2) per filter).
    if f.ndim == 1:
        k = np.outer(f, f) * gain
    else:
        k = f * gain
    op = scipy.signal.correlate2d if flip_filter else scipy.signal.convolve2d
    out = np.stack([np.stack([op(u[i, j], k, mode='valid') for j in range(c)]) for i in range(n)])
    return out[:, :, ::downy, ::downx]


def ref_conv2d_resample(x, w, f, up=1, down=1, padding=(0, 0, 0, 0), groups=1, flip_weight=True):
    """Generic meaning of conv2d_resample: upsample+pad+filter, correlation with w, filter+decimate."""
    fh, fw = (f.shape[0], f.shape[0]) if f is not None and f.ndim == 1 else (f.shape if f is not None else (1, 1))
    px0, px1, py0, py1 = padding
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2
    ff = f if (up > 1 and f is not None) else np.ones([1, 1])
    y = ref_upfirdn2d(x, ff, up=(up, up), pad=(px0, px1, py0, py1), gain=up ** 2)
    o, ipg, kh, kw = w.shape
    opg = o // groups
    n = y.shape[0]
    kernel = w if flip_weight else w[:, :, ::-1, ::-1]
    out = []
    for i in range(n):
        chans = []
        for oc in range(o):
            g = oc // opg
            acc = sum(scipy.signal.correlate2d(y[i, g * ipg + ic], kernel[oc, ic], mode='valid') for ic in range(ipg))
            chans.append(acc)
        out.append(np.stack(chans))
    out = np.stack(out)
    if down > 1:
        out = ref_upfirdn2d(out, f, down=(down, down))
    return out


def t64(a):
    return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float64)


# ----------------------------------------------------------------------------
# setup_filter

def test_setup_filter_outer_product_normalised():
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    expected = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0
    assert f.dtype == torch.float32 and tuple(f.shape) == (4, 4)
    np.testing.assert_allclose(f.numpy(), expected, rtol=0, atol=1e-7)


def test_setup_filter_separable_gain_flip():
    taps = np.arange(1, 9, dtype=np.float64)  # 8 taps -> stays separable by default
    f = upfirdn2d.setup_filter(taps, gain=4)
    assert f.ndim == 1
    np.testing.assert_allclose(f.numpy(), taps / taps.sum() * 2.0, rtol=1e-6)  # gain ** (1 / 2)
    f2 = upfirdn2d.setup_filter([1, 2], flip_filter=True, normalize=False, gain=9)
    np.testing.assert_allclose(f2.numpy(), np.outer([2, 1], [2, 1]) * 9.0, rtol=1e-6)  # gain ** (2 / 2)
    assert upfirdn2d.setup_filter(None).shape == (1, 1)


def test_setup_filter_rejects_bad_input():
    with pytest.raises(ValueError, match='filter'):
        upfirdn2d.setup_filter(np.zeros([2, 2, 2]))
    with pytest.raises(ValueError, match='filter'):
        upfirdn2d.setup_filter([])


# ----------------------------------------------------------------------------
# upfirdn2d

UPFIRDN_CASES = [
    # (filter, up, down, padding, flip_filter, gain)
    ([1, 3, 3, 1], (1, 1), (1, 1), (0, 0, 0, 0), False, 1.0),
    ([1, 3, 3, 1], (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0),
    ([1, 3, 3, 1], (1, 1), (2, 2), (1, 1, 1, 1), False, 1.0),
    ([1, 2, 5, 1], (2, 3), (1, 1), (3, -1, 0, 2), True, 2.5),      # asymmetric taps: flip matters
    ([1, 2, 5, 1], (1, 1), (3, 2), (-1, 2, 2, -2), False, 1.0),    # negative padding crops
    ([1, 2, 3, 4, 5, 6, 7, 8], (2, 2), (2, 2), (4, 3, 4, 3), False, 3.0),  # separable 1D path
    ([[1, 2, 0], [0, 1, 3]], (1, 2), (2, 1), (1, 1, 2, 0), True, 1.0),       # non-square 2D filter
]


@pytest.mark.parametrize('taps,up,down,pad,flip,gain', UPFIRDN_CASES)
def test_upfirdn2d_matches_numpy_reference(taps, up, down, pad, flip, gain):
    rng = np.random.RandomState(0)
    x = rng.randn(2, 3, 7, 6)
    f = upfirdn2d.setup_filter(taps).double()
    got = upfirdn2d.upfirdn2d(t64(x), f, up=list(up), down=list(down), padding=list(pad), flip_filter=flip, gain=gain)
    want = ref_upfirdn2d(x, f.numpy(), up=up, down=down, pad=pad, flip_filter=flip, gain=gain)
    assert tuple(got.shape) == want.shape
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


def test_upsample2d_box_filter_is_nearest_neighbour():
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    f = upfirdn2d.setup_filter([1, 1]).double()
    got = upfirdn2d.upsample2d(x, f)
    want = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_downsample2d_box_filter_is_average_pool():
    x = torch.randn(2, 3, 6, 8, dtype=torch.float64)
    f = upfirdn2d.setup_filter([1, 1]).double()
    torch.testing.assert_close(upfirdn2d.downsample2d(x, f), F.avg_pool2d(x, 2), rtol=1e-12, atol=1e-12)


def test_resampling_wrappers_use_upstream_padding():
    # Hand-derived paddings for the 4-tap filter: upsample2d [2,1,2,1] with gain up^2,
    # downsample2d [1,1,1,1], filter2d [2,1,2,1].
    rng = np.random.RandomState(1)
    x = rng.randn(1, 2, 6, 5)
    f = upfirdn2d.setup_filter([1, 3, 3, 1]).double()
    fn = f.numpy()
    up = upfirdn2d.upsample2d(t64(x), f)
    np.testing.assert_allclose(up.numpy(), ref_upfirdn2d(x, fn, up=(2, 2), pad=(2, 1, 2, 1), gain=4), atol=1e-12)
    assert tuple(up.shape) == (1, 2, 12, 10)
    down = upfirdn2d.downsample2d(t64(x), f, padding=1)
    np.testing.assert_allclose(down.numpy(), ref_upfirdn2d(x, fn, down=(2, 2), pad=(2, 2, 2, 2)), atol=1e-12)
    filt = upfirdn2d.filter2d(t64(x), f, gain=2)
    np.testing.assert_allclose(filt.numpy(), ref_upfirdn2d(x, fn, pad=(2, 1, 2, 1), gain=2), atol=1e-12)
    assert filt.shape == (1, 2, 6, 5)


def test_upsample_then_filter_preserves_constant_images():
    # The default filter is normalised and upsample2d multiplies by up^2, so a constant image
    # stays constant away from the borders.
    x = torch.full([1, 1, 6, 6], 3.0, dtype=torch.float64)
    f = upfirdn2d.setup_filter([1, 3, 3, 1]).double()
    y = upfirdn2d.upsample2d(x, f)
    torch.testing.assert_close(y[:, :, 2:-2, 2:-2], torch.full_like(y[:, :, 2:-2, 2:-2], 3.0))
    z = upfirdn2d.downsample2d(x, f)
    torch.testing.assert_close(z[:, :, 1:-1, 1:-1], torch.full_like(z[:, :, 1:-1, 1:-1], 3.0))


def test_upfirdn2d_bad_arguments():
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match='padding'):
        upfirdn2d.upfirdn2d(x, None, padding=[1, 2, 3])
    with pytest.raises(ValueError, match='up/down'):
        upfirdn2d.upfirdn2d(x, None, up=0)
    with pytest.raises(ValueError, match='4D'):
        upfirdn2d.upfirdn2d(torch.zeros(4, 4), None)


def test_upfirdn2d_gradcheck_and_gradgradcheck():
    x = torch.randn(1, 1, 4, 3, dtype=torch.float64, requires_grad=True)
    f = upfirdn2d.setup_filter([1, 2, 5, 1]).double()

    def op(inp):
        return upfirdn2d.upfirdn2d(inp, f, up=2, down=[1, 2], padding=[2, 1, 0, 3], gain=1.5)

    assert torch.autograd.gradcheck(op, (x,))
    assert torch.autograd.gradgradcheck(op, (x,), fast_mode=True)


# ----------------------------------------------------------------------------
# bias_act

def ref_act(name, x, alpha):
    if name == 'linear':
        return x
    if name == 'relu':
        return np.maximum(x, 0)
    if name == 'lrelu':
        return np.where(x >= 0, x, x * alpha)
    if name == 'tanh':
        return np.tanh(x)
    if name == 'sigmoid':
        return 1 / (1 + np.exp(-x))
    if name == 'elu':
        return np.where(x > 0, x, np.expm1(x))
    if name == 'selu':
        scale, a = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717
        return scale * np.where(x > 0, x, a * np.expm1(x))
    if name == 'softplus':
        return np.log1p(np.exp(x))
    if name == 'swish':
        return x / (1 + np.exp(-x))
    raise KeyError(name)


DEFAULT_GAINS = {'linear': 1, 'relu': np.sqrt(2), 'lrelu': np.sqrt(2), 'tanh': 1, 'sigmoid': 1, 'elu': 1,
                 'selu': 1, 'softplus': 1, 'swish': np.sqrt(2)}


@pytest.mark.parametrize('act', sorted(DEFAULT_GAINS))
def test_bias_act_defaults_match_formulas(act):
    rng = np.random.RandomState(2)
    x = rng.randn(3, 4, 5) * 2
    b = rng.randn(4)
    got = bias_act.bias_act(t64(x), t64(b), act=act)
    alpha = 0.2 if act == 'lrelu' else 0
    want = ref_act(act, x + b[None, :, None], alpha) * DEFAULT_GAINS[act]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
    assert np.isclose(bias_act.activation_funcs[act].def_gain, DEFAULT_GAINS[act])


@pytest.mark.parametrize('act', ['lrelu', 'swish', 'tanh', 'linear'])
def test_bias_act_alpha_gain_clamp_dim(act):
    rng = np.random.RandomState(3)
    x = rng.randn(2, 3, 6) * 4
    b = rng.randn(6)
    got = bias_act.bias_act(t64(x), t64(b), dim=2, act=act, alpha=0.3, gain=1.7, clamp=2.5)
    want = np.clip(ref_act(act, x + b[None, None, :], 0.3) * 1.7, -2.5, 2.5)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
    # clamp=None disables clamping; no bias is allowed.
    got2 = bias_act.bias_act(t64(x), None, act=act, gain=3.0)
    np.testing.assert_allclose(got2.numpy(), ref_act(act, x, 0.2) * 3.0, rtol=1e-12, atol=1e-12)


def test_bias_act_bad_arguments():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match='act'):
        bias_act.bias_act(x, act='gelu_fancy')
    with pytest.raises(ValueError, match='b has'):
        bias_act.bias_act(x, torch.zeros(4))


@pytest.mark.parametrize('act', ['lrelu', 'tanh', 'softplus', 'swish', 'elu'])
def test_bias_act_gradcheck_and_gradgradcheck(act):
    # Keep samples away from the kinks of lrelu/elu where finite differences are not defined.
    x = torch.randn(3, 4, dtype=torch.float64)
    x = (x + 0.3 * x.sign()).requires_grad_(True)
    b = (torch.randn(4, dtype=torch.float64) * 0.05).requires_grad_(True)

    def op(inp, bias):
        return bias_act.bias_act(inp, bias, act=act, gain=1.3, clamp=10)

    assert torch.autograd.gradcheck(op, (x, b))
    assert torch.autograd.gradgradcheck(op, (x, b))


# ----------------------------------------------------------------------------
# conv2d_resample

CONV_CASES = [
    # (kernel, up, down, padding, groups, flip_weight)
    (3, 1, 1, (1, 1, 1, 1), 1, True),
    (3, 1, 1, (2, 0, 1, 1), 1, True),      # asymmetric padding -> generic path
    (3, 2, 1, (1, 1, 1, 1), 1, False),     # the SynthesisLayer up=2 configuration
    (3, 2, 1, (1, 1, 1, 1), 1, True),
    (3, 1, 2, (1, 1, 1, 1), 1, True),      # the DiscriminatorBlock conv1 configuration
    (1, 2, 1, (0, 0, 0, 0), 1, True),      # resnet G skip
    (1, 1, 2, (0, 0, 0, 0), 1, True),      # resnet D skip
    (3, 2, 2, (1, 1, 1, 1), 1, True),
    (3, 2, 1, (1, 1, 1, 1), 2, False),     # grouped transposed path (fused modconv)
    (3, 1, 1, (1, 1, 1, 1), 2, True),
]


@pytest.mark.parametrize('k,up,down,pad,groups,flip_weight', CONV_CASES)
def test_conv2d_resample_matches_numpy_reference(k, up, down, pad, groups, flip_weight):
    rng = np.random.RandomState(4)
    x = rng.randn(2, 2 * groups, 6, 6)
    w = rng.randn(3 * groups, 2, k, k)
    f = upfirdn2d.setup_filter([1, 3, 3, 1]).double()
    got = conv2d_resample.conv2d_resample(t64(x), t64(w), f=f, up=up, down=down, padding=list(pad), groups=groups,
                                          flip_weight=flip_weight)
    want = ref_conv2d_resample(x, w, f.numpy(), up=up, down=down, padding=pad, groups=groups,
                               flip_weight=flip_weight)
    assert tuple(got.shape) == want.shape
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-10)


def test_conv2d_resample_flip_weight_is_a_true_convolution():
    x = torch.randn(1, 1, 5, 5, dtype=torch.float64)
    w = torch.randn(1, 1, 3, 3, dtype=torch.float64)
    got = conv2d_resample.conv2d_resample(x, w, padding=1, flip_weight=False)
    want = scipy.signal.convolve2d(x[0, 0].numpy(), w[0, 0].numpy(), mode='same')
    np.testing.assert_allclose(got[0, 0].numpy(), want, rtol=1e-12, atol=1e-12)


def test_conv2d_resample_bad_arguments():
    x = torch.zeros(1, 3, 4, 4)
    with pytest.raises(ValueError, match='channels'):
        conv2d_resample.conv2d_resample(x, torch.zeros(2, 2, 3, 3))
    with pytest.raises(ValueError, match='up'):
        conv2d_resample.conv2d_resample(x, torch.zeros(2, 3, 3, 3), up=0)


def test_conv2d_resample_gradcheck_and_gradgradcheck():
    f = upfirdn2d.setup_filter([1, 3, 3, 1]).double()
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    for up, down, flip in [(2, 1, False), (1, 2, True)]:
        def op(inp, weight):
            return conv2d_resample.conv2d_resample(inp, weight, f=f, up=up, down=down, padding=1, flip_weight=flip)
        assert torch.autograd.gradcheck(op, (x, w), fast_mode=True)
        assert torch.autograd.gradgradcheck(op, (x, w), fast_mode=True)


# ----------------------------------------------------------------------------
# conv2d_gradfix and fma

def test_conv2d_gradfix_is_plain_conv_and_context_restores_flag():
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(conv2d_gradfix.conv2d(x, w, padding=1), F.conv2d(x, w, padding=1))
    wt = torch.randn(3, 4, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(conv2d_gradfix.conv_transpose2d(x, wt, stride=2),
                               F.conv_transpose2d(x, wt, stride=2))
    assert conv2d_gradfix.weight_gradients_disabled is False
    with conv2d_gradfix.no_weight_gradients():
        assert conv2d_gradfix.weight_gradients_disabled is True
    assert conv2d_gradfix.weight_gradients_disabled is False


def test_fma_matches_formula_and_double_backward():
    a = torch.randn(2, 3, 1, 1, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    c = torch.randn(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    np.testing.assert_allclose(fma.fma(a, b, c).detach().numpy(),
                               a.detach().numpy() * b.detach().numpy() + c.detach().numpy(), rtol=1e-12)
    assert torch.autograd.gradgradcheck(fma.fma, (a, b, c))


# ----------------------------------------------------------------------------
# misc, training_stats, dnnlib

def test_assert_shape():
    misc.assert_shape(torch.zeros(2, 3), [None, 3])
    with pytest.raises(AssertionError, match='dimension 1'):
        misc.assert_shape(torch.zeros(2, 3), [2, 4])
    with pytest.raises(AssertionError, match='number of dimensions'):
        misc.assert_shape(torch.zeros(2, 3), [2])


def test_constant_cache_returns_same_tensor():
    a = misc.constant([1.0, 2.0], shape=[3, 2], dtype=torch.float64)
    b = misc.constant([1.0, 2.0], shape=[3, 2], dtype=torch.float64)
    assert a is b
    np.testing.assert_array_equal(a.numpy(), [[1, 2]] * 3)


def test_copy_params_and_buffers():
    src = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    dst = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    src[1].running_mean.fill_(5)
    misc.copy_params_and_buffers(src, dst, require_all=True)
    for (n1, t1), (n2, t2) in zip(misc.named_params_and_buffers(src), misc.named_params_and_buffers(dst)):
        assert n1 == n2 and torch.equal(t1, t2)
    assert dst[0].weight.requires_grad
    with pytest.raises(KeyError, match='extra'):
        bigger = torch.nn.Module()
        bigger.extra = torch.nn.Linear(1, 1)
        misc.copy_params_and_buffers(src, bigger, require_all=True)
    with pytest.raises(ValueError, match='shape mismatch'):
        misc.copy_params_and_buffers(src, torch.nn.Sequential(torch.nn.Linear(4, 2)))


def test_infinite_sampler_partitions_ranks():
    data = list(range(10))
    # Without shuffling, rank r takes items r, r + R, r + 2R, ... and wraps around forever.
    streams = []
    for rank in range(2):
        it = iter(misc.InfiniteSampler(data, rank=rank, num_replicas=2, shuffle=False))
        streams.append([int(next(it)) for _ in range(7)])
    assert streams[0] == [0, 2, 4, 6, 8, 0, 2]
    assert streams[1] == [1, 3, 5, 7, 9, 1, 3]
    # With shuffling every item keeps coming back (the window shuffle only reorders).
    it = iter(misc.InfiniteSampler(data, rank=0, num_replicas=1, shuffle=True, seed=3))
    seen = [int(next(it)) for _ in range(200)]
    assert set(seen) == set(data)
    with pytest.raises(ValueError, match='rank'):
        misc.InfiniteSampler(data, rank=2, num_replicas=2)


def test_training_stats_collector_mean_std():
    name = 'test_ops/metric_a'
    collector = training_stats.Collector(regex='test_ops/.*')
    values = np.array([1.0, 2.0, 4.0, 7.0, 11.0])
    training_stats.report(name, torch.tensor(values[:3]))
    training_stats.report(name, values[3:].tolist())
    training_stats.report('unrelated/x', 1.0)
    collector.update()
    assert collector.names() == [name]
    assert collector.num(name) == 5
    assert np.isclose(collector.mean(name), values.mean())
    assert np.isclose(collector.std(name), values.std())  # population std
    # Next interval only sees new reports; keep_previous keeps the old values when none arrive.
    training_stats.report(name, 100.0)
    collector.update()
    assert collector.num(name) == 1 and collector[name] == 100.0
    collector.update()
    assert collector.num(name) == 1 and collector[name] == 100.0
    as_dict = collector.as_dict()
    assert as_dict[name].mean == 100.0 and as_dict[name].std == 0


def test_easydict_and_construct_by_name():
    d = dnnlib.EasyDict(a=1)
    d.b = 2
    assert d == {'a': 1, 'b': 2} and d.a == 1
    with pytest.raises(AttributeError):
        _ = d.missing
    obj = dnnlib.util.construct_class_by_name(3, class_name='torch.nn.Linear', out_features=2)
    assert isinstance(obj, torch.nn.Linear) and obj.in_features == 3
    with pytest.raises(ValueError, match='cannot find'):
        dnnlib.util.construct_class_by_name(class_name='torch.nn.DoesNotExist')
    assert dnnlib.util.format_time(3725) == '1h 02m 05s'


def test_open_url_local_paths(tmp_path):
    p = tmp_path / 'blob.bin'
    p.write_bytes(b'abc')
    with dnnlib.util.open_url(str(p)) as f:
        assert f.read() == b'abc'
    with dnnlib.util.open_url('file://' + str(p)) as f:
        assert f.read() == b'abc'
    with pytest.raises(FileNotFoundError, match='missing.bin'):
        dnnlib.util.open_url(str(tmp_path / 'missing.bin'))


def test_print_module_summary_counts_every_tensor_once(capsys):
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.BatchNorm1d(4))
    out = misc.print_module_summary(net, [torch.randn(5, 3)])
    assert out.shape == (5, 4)
    text = capsys.readouterr().out
    total = [line.split() for line in text.splitlines() if line.startswith('Total')][0]
    assert int(total[1]) == sum(p.numel() for p in net.parameters())
    assert int(total[2]) == sum(b.numel() for b in net.buffers())


_DDP_SCRIPT = r'''
import os, sys
import torch
sys.path.insert(0, {root!r})

def worker(rank, init_file, out_dir):
    torch.distributed.init_process_group('gloo', init_method='file://' + init_file, rank=rank, world_size=2)
    from torch_utils import training_stats
    training_stats.init_multiprocessing(rank=rank, sync_device=torch.device('cpu'))
    collector = training_stats.Collector(regex='v.*')
    # rank 0 reports [1, 2], rank 1 reports [3, 4, 5]; report0 only counts rank 0's value.
    training_stats.report('v', [1.0, 2.0] if rank == 0 else [3.0, 4.0, 5.0])
    training_stats.report0('v0', 10.0 + rank)
    collector.update()
    with open(os.path.join(out_dir, f'rank{{rank}}.txt'), 'w') as f:
        f.write(f'{{collector.num("v")}} {{collector.mean("v")}} {{collector.std("v")}} '
                f'{{collector.num("v0")}} {{collector.mean("v0")}}\n')
    torch.distributed.destroy_process_group()

if __name__ == '__main__':
    torch.multiprocessing.spawn(worker, args=(sys.argv[1], sys.argv[2]), nprocs=2)
'''


def test_training_stats_reduce_across_ranks(tmp_path):
    import subprocess
    script = tmp_path / 'ddp_stats.py'
    script.write_text(_DDP_SCRIPT.format(root=os.path.abspath(SG2_ROOT)))
    res = subprocess.run([sys.executable, str(script), str(tmp_path / 'init'), str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    for rank in range(2):
        num, mean, std, num0, mean0 = (tmp_path / f'rank{rank}.txt').read_text().split()
        assert int(num) == 5 and np.isclose(float(mean), values.mean()) and np.isclose(float(std), values.std())
        assert int(num0) == 1 and float(mean0) == 10.0
