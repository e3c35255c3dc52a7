"""CUDA kernels against the reference, on a GPU.

These tests need a GPU. None was available while the kernels were written, so they have been
compiled (test_cuda_build.py) but never run: on a GPU machine, run `pytest tests/ops` first.
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
