"""grid_sample_gradfix: same values and gradients as torch's grid_sample, and a working double
backward (what R1 through the ADA pipe needs), checked against autograd's own numerics in float64."""
import os
import sys

import torch
import torch.nn.functional as F

SG2_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', 'vendor', 'stylegan2_ada'))
if SG2_ROOT not in sys.path:
    sys.path.insert(0, SG2_ROOT)

from torch_utils.ops import grid_sample_gradfix  # noqa: E402


def _inputs(dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 7, 9, generator=gen, dtype=dtype)
    grid = torch.rand(2, 5, 6, 2, generator=gen, dtype=dtype) * 2.4 - 1.2  # some samples fall outside
    return x, grid


def _reference(x, grid):
    return F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros', align_corners=False)


def test_forward_matches_torch():
    x, grid = _inputs()
    assert torch.allclose(grid_sample_gradfix.grid_sample(x, grid), _reference(x, grid), atol=1e-6)


def test_first_order_gradient_matches_torch():
    x, grid = _inputs()
    weight = torch.randn(2, 3, 5, 6)
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    (grid_sample_gradfix.grid_sample(x1, grid) * weight).sum().backward()
    (_reference(x2, grid) * weight).sum().backward()
    assert torch.allclose(x1.grad, x2.grad, atol=1e-5)


def test_double_backward_runs_and_matches_finite_differences():
    # R1-style: g = d<w, gs(x)>/dx with create_graph, then differentiate |g|^2 w.r.t. a weight
    # that enters before the sampler (as D's weights do through the augmented image).
    x, grid = _inputs(torch.float64)
    scale = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 3, 5, 6, dtype=torch.float64)

    def penalty(s):
        xin = x.clone().requires_grad_(True)
        out = grid_sample_gradfix.grid_sample(xin * s, grid)
        (g,) = torch.autograd.grad((out.square() * weight).sum(), xin, create_graph=True)
        return g.square().sum()

    value = penalty(scale)
    value.backward()
    assert scale.grad is not None
    eps = 1e-6
    numeric = (penalty(torch.tensor(1.3 + eps, dtype=torch.float64)).detach()
               - penalty(torch.tensor(1.3 - eps, dtype=torch.float64)).detach()) / (2 * eps)
    assert torch.allclose(scale.grad, numeric, rtol=1e-5, atol=1e-8)


def test_gradcheck_and_gradgradcheck_wrt_input():
    x, grid = _inputs(torch.float64, seed=1)
    x = x[:1, :2, :4, :5].clone().requires_grad_(True)
    grid = grid[:1, :3, :3]
    fn = lambda inp: grid_sample_gradfix.grid_sample(inp, grid)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-6)
    assert torch.autograd.gradgradcheck(fn, (x,), eps=1e-6, atol=1e-6)


def test_disabled_falls_back_to_torch():
    x, grid = _inputs()
    grid_sample_gradfix.enabled = False
    try:
        assert torch.equal(grid_sample_gradfix.grid_sample(x, grid), _reference(x, grid))
    finally:
        grid_sample_gradfix.enabled = True
