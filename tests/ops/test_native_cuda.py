"""CUDA kernels against the reference, on a GPU.

These tests need a GPU. None was available while the kernels were written, so they have been
compiled (test_cuda_build.py) but never run: on a GPU machine `bash bench/gpu_check.sh` runs this file first,
on its own.
"""
import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from sparse_core import ops
from sparse_core.ops import loader, native
from sparse_core.ops import reference as ref


pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# 16-bit kernels accumulate in fp32 but round each stored element: compare at their resolution.
TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 1e-2}


@pytest.fixture
def cuda_ext():
    return loader.load("cuda")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_cuda_threshold_matches_reference(cuda_ext, dtype, rel_err):
    gen = torch.Generator().manual_seed(0)
    w = (torch.randn(96, 80, 3, 3, generator=gen) * 0.5).to("cuda", dtype).requires_grad_()
    t = (torch.rand(96, generator=gen) * 0.3).to("cuda").requires_grad_()  # fp32 thresholds, any weight dtype
    out_n = native.ThresholdMaskedWeight.apply(cuda_ext, w, t, 0, False)
    out_r = ref.threshold_masked_weight(w, t)
    assert torch.equal(out_n, out_r)
    g = torch.randn(w.shape, generator=gen).to("cuda", dtype)
    gn = torch.autograd.grad(out_n, (w, t), g)
    gr = torch.autograd.grad(out_r, (w, t), g)
    assert torch.equal(gn[0], gr[0])
    assert rel_err(gn[1], gr[1]) < max(TOLERANCE[dtype], 1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fused", [False, True])
def test_cuda_modulated_conv_matches_reference(cuda_ext, dtype, fused, rel_err):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 64, 16, 16, generator=gen).to("cuda", dtype)
    w = torch.randn(32, 64, 3, 3, generator=gen).to("cuda", dtype).requires_grad_()
    styles = (torch.randn(4, 64, generator=gen) * 0.2 + 1).to("cuda", dtype).requires_grad_()
    mask = (torch.rand(w.shape, generator=gen) > 0.3).to("cuda", dtype)
    y_n = ops.modulated_conv2d(x, w, styles, mask, padding=1, fused=fused)
    # reference in fp64 from the same inputs
    y_r = ref.modulated_conv2d(x.double(), w.double(), styles.double(), mask.double(), padding=1, fused=fused)
    assert rel_err(y_n, y_r) < max(TOLERANCE[dtype], 1e-5) * 10


@pytest.mark.parametrize("fused", [False, True])
def test_cuda_gradcheck_and_gradgradcheck_float64(cuda_ext, fused, safe_weights):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 4, 4, generator=gen, dtype=torch.float64).cuda().requires_grad_()
    w = torch.randn(2, 3, 3, 3, generator=gen, dtype=torch.float64).cuda().requires_grad_()
    styles = torch.randn(2, 3, generator=gen, dtype=torch.float64).cuda().requires_grad_()
    mask = (torch.rand(w.shape, generator=gen) > 0.3).double().cuda()

    def op(x, w, styles):
        return ops.modulated_conv2d(x, w, styles, mask, padding=1, fused=fused)

    assert gradcheck(op, (x, w, styles))
    assert gradgradcheck(op, (x, w, styles))
    t = torch.rand(4, generator=gen, dtype=torch.float64) * 0.5
    wt = safe_weights((4, 3, 2, 2), t, gen).cuda().requires_grad_()
    assert gradgradcheck(lambda w: native.ThresholdMaskedWeight.apply(cuda_ext, w, t.cuda(), 0, False), (wt,))


DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["channel_dim1", "linear", "non_contiguous"])
def test_cuda_threshold_layouts(cuda_ext, dtype, case, rel_err):
    """channel_dim 1 (transposed-conv weights), 2-D Linear weights, non-contiguous inputs: against the reference."""
    gen = torch.Generator().manual_seed(3)
    if case == "channel_dim1":
        w, dim = torch.randn(40, 24, 4, 4, generator=gen), 1
    elif case == "linear":
        w, dim = torch.randn(96, 130, generator=gen), 0
    else:
        w, dim = torch.randn(3, 3, 48, 40, generator=gen).permute(2, 3, 0, 1), 0   # [48, 40, 3, 3], strided
    w = (w * 0.5).to("cuda", dtype)
    if case == "non_contiguous":
        assert not w.is_contiguous()
    w.requires_grad_()
    t = (torch.rand(w.shape[dim], generator=gen) * 0.3).to("cuda").requires_grad_()
    out_n = ops.threshold_masked_weight(w, t, dim)
    out_r = ref.threshold_masked_weight(w, t, dim)
    assert type(out_n.grad_fn).__name__ == "ThresholdMaskedWeightBackward"
    assert torch.equal(out_n, out_r)
    g = torch.randn(w.shape, generator=gen).to("cuda", dtype)
    gn = torch.autograd.grad(out_n, (w, t), g)
    gr = torch.autograd.grad(out_r, (w, t), g)
    assert torch.equal(gn[0], gr[0])
    assert rel_err(gn[1], gr[1]) < max(TOLERANCE[dtype], 1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("level", [0.05, 5.0])
def test_cuda_fused_reset_matches_the_reference(cuda_ext, dtype, level):
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(64, 32, 3, 3, generator=gen).to("cuda", dtype)
    t_n = torch.full((64,), level, device="cuda")
    t_r = t_n.clone()
    out = native.ThresholdMaskedWeight.apply(cuda_ext, w, t_n, 0, False, 0.01)
    ref.reset_collapsed_thresholds(w, t_r, 0, 0.01)
    assert torch.equal(out, ref.threshold_masked_weight(w, t_r))
    assert torch.equal(t_n, t_r) and bool((t_n == 0).all()) == (level == 5.0)


def test_cuda_keep_test_is_exact_for_subnormals(cuda_ext):
    tiny = torch.finfo(torch.float32).tiny
    w = torch.tensor([[tiny / 4, -tiny / 8, 0.0], [tiny / 2, tiny / 4, 1.0]], device="cuda")
    t = torch.tensor([0.0, tiny / 4], device="cuda")
    out = native.ThresholdMaskedWeight.apply(cuda_ext, w, t, 0, False)
    assert torch.equal(out, ref.threshold_masked_weight(w, t))
    assert bool(out[0, 0] != 0)   # a flush-to-zero build would prune it


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_modulation_without_mask(cuda_ext, dtype, rel_err):
    """The patched StyleGAN2's path: ops.modulation (no mask), both the coefficients and the fused weights."""
    gen = torch.Generator().manual_seed(5)
    w = torch.randn(64, 48, 3, 3, generator=gen).to("cuda", dtype).requires_grad_()
    styles = (torch.randn(8, 48, generator=gen) * 0.2 + 1).to("cuda", dtype).requires_grad_()
    _, d_n = ops.modulation(w, styles)
    assert type(d_n.grad_fn).__name__ == "ModconvDemodBackward"
    d_r = ref.demodulation_coefficients(w.double(), styles.double(), 1e-8)
    assert rel_err(d_n, d_r) < max(TOLERANCE[dtype], 1e-5) * 10
    g = torch.randn(d_n.shape, generator=gen).to("cuda")
    gn = torch.autograd.grad(d_n, (w, styles), g.to(dtype))
    gr = torch.autograd.grad(d_r, (w, styles), g.double())
    for a, b in zip(gn, gr):
        assert a.dtype == dtype and rel_err(a, b) < max(TOLERANCE[dtype], 1e-5) * 20
    per_sample, _ = ops.modulation(w, styles, fused=True)
    expected = (w.double()[None] * styles.double()[:, None, :, None, None] * d_r[:, :, None, None, None])
    assert rel_err(per_sample, expected) < max(TOLERANCE[dtype], 1e-5) * 10


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fused", [False, True])
def test_cuda_modulated_conv_16bit_gradients(cuda_ext, dtype, fused, rel_err):
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(4, 32, 8, 8, generator=gen).to("cuda", dtype)
    w = torch.randn(16, 32, 3, 3, generator=gen).to("cuda", dtype).requires_grad_()
    styles = (torch.randn(4, 32, generator=gen) * 0.2 + 1).to("cuda", dtype).requires_grad_()
    mask = (torch.rand(w.shape, generator=gen) > 0.3).to("cuda", dtype)
    y = ops.modulated_conv2d(x, w, styles, mask, padding=1, fused=fused)
    w64, s64 = w.detach().double().requires_grad_(), styles.detach().double().requires_grad_()
    y64 = ref.modulated_conv2d(x.double(), w64, s64, mask.double(), padding=1, fused=fused)
    g = torch.randn(y.shape, generator=gen).to("cuda")
    for a, b in zip(torch.autograd.grad(y, (w, styles), g.to(dtype)), torch.autograd.grad(y64, (w64, s64), g.double())):
        assert a.dtype == dtype and torch.isfinite(a).all()
        assert rel_err(a, b) < {torch.float16: 2e-2, torch.bfloat16: 6e-2}[dtype]


def test_cuda_modulated_conv_native_under_autocast(cuda_ext, rel_err):
    gen = torch.Generator().manual_seed(7)
    affine = torch.nn.Linear(16, 64).cuda()
    w = torch.randn(32, 64, 3, 3, generator=gen).cuda().requires_grad_()
    z, x = torch.randn(4, 16, generator=gen).cuda(), torch.randn(4, 64, 8, 8, generator=gen).cuda()
    before = ops.backend_counts()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        styles = affine(z) + 1
        _, dcoefs = ops.modulation(w, styles)
        y = ops.modulated_conv2d(x, w, styles, padding=1)
    assert ops.native_shares(before) == {"modulated_conv2d": 1.0}
    assert rel_err(dcoefs, ref.demodulation_coefficients(w.double(), styles.double(), 1e-8)) < 1e-5
    assert torch.isfinite(y).all()


def test_cuda_large_shapes_fall_back_instead_of_failing(cuda_ext):
    w = torch.randn(4, 12288, 1, 1, device="cuda")
    styles = torch.rand(8, 12288, device="cuda") + 0.5
    before = ops.backend_counts()
    _, dcoefs = ops.modulation(w, styles)
    assert ops.native_shares(before) == {"modulated_conv2d": 0.0}
    assert torch.allclose(dcoefs, ref.demodulation_coefficients(w, styles, 1e-8))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_self_check_passes_per_dtype_and_precision(cuda_ext, dtype):
    cuda = torch.device("cuda")
    assert ops.self_check(cuda_ext, cuda, dtype=dtype) == ""
    if dtype == torch.float32:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            assert ops.self_check(cuda_ext, cuda) == ""
        old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            assert ops.self_check(cuda_ext, cuda) == ""
        finally:
            torch.backends.cuda.matmul.allow_tf32 = old
