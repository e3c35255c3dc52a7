"""Bilinear grid_sample with a second-order gradient w.r.t. the *input*.

Why: R1 regularisation differentiates D's output w.r.t. the real images *through* the augmentation
pipe, and then differentiates that gradient again. ADA's geometric transforms are built on
grid_sample, so the whole chain needs a double backward. We route the first backward through our
own autograd Function whose backward is again grid_sample (grid_sample is linear in its input, so
d(grad_input)/d(grad_output) is the forward op itself). The sampling grid is treated as a constant
in the double backward, as in upstream StyleGAN2-ADA: the augmentation grid never needs a gradient.

Mode is fixed to bilinear / zeros padding / align_corners=False, which is all the augment pipe uses.
"""
import torch
import torch.nn.functional as F

enabled = True  # Set False to fall back to torch.nn.functional.grid_sample (e.g. for comparisons).

_MODE_BILINEAR = 0   # ATen's integer code for interpolation='bilinear'
_PADDING_ZEROS = 0   # ATen's integer code for padding_mode='zeros'


def grid_sample(input, grid):
    """Same result as F.grid_sample(input, grid, 'bilinear', 'zeros', align_corners=False)."""
    if enabled:
        return _GridSample2dForward.apply(input, grid)
    return F.grid_sample(input, grid, mode='bilinear', padding_mode='zeros', align_corners=False)


class _GridSample2dForward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, grid):
        if input.ndim != 4 or grid.ndim != 4:
            raise ValueError(f'grid_sample: expected 4-D input and grid, got input {tuple(input.shape)}, '
                             f'grid {tuple(grid.shape)}')
        output = F.grid_sample(input, grid, mode='bilinear', padding_mode='zeros', align_corners=False)
        ctx.save_for_backward(input, grid)
        return output

    @staticmethod
    def backward(ctx, grad_output):
        input, grid = ctx.saved_tensors
        grad_input, grad_grid = _GridSample2dBackward.apply(grad_output, input, grid)
        return grad_input, grad_grid


class _GridSample2dBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grad_output, input, grid):
        output_mask = [bool(ctx.needs_input_grad[1]), bool(ctx.needs_input_grad[2])]
        grad_input, grad_grid = torch.ops.aten.grid_sampler_2d_backward(
            grad_output, input, grid, _MODE_BILINEAR, _PADDING_ZEROS, False, output_mask)
        ctx.save_for_backward(grid)
        return grad_input, grad_grid

    @staticmethod
    def backward(ctx, grad2_grad_input, grad2_grad_grid):
        # Only the path through grad_input is differentiated again; the grid is a constant here.
        (grid,) = ctx.saved_tensors
        grad2_grad_output = None
        if ctx.needs_input_grad[0] and grad2_grad_input is not None:
            grad2_grad_output = _GridSample2dForward.apply(grad2_grad_input, grid)
        return grad2_grad_output, None, None
