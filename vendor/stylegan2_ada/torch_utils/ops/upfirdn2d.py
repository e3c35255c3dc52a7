"""FIR resampling of images: upsample by zero insertion, pad (negative = crop), convolve with a
2D or separable FIR filter, downsample by keeping every n-th sample (upstream's upfirdn2d).

Implemented with plain PyTorch ops (reshape, pad, depthwise conv2d, slicing), so gradients of any
order work without a custom backward. Semantics follow upstream exactly:
  - the filter is applied as a true convolution (flipped) unless flip_filter=True (correlation);
  - `gain` multiplies the filter, per dimension for separable filters (gain ** (ndim / 2));
  - padding is [x0, x1, y0, y1] (an int means all four, a pair means [x, x, y, y])."""
import numbers

import numpy as np
import torch
import torch.nn.functional as F


def _parse_scaling(scaling):
    if isinstance(scaling, numbers.Integral):
        scaling = [scaling, scaling]
    if not (isinstance(scaling, (list, tuple)) and len(scaling) == 2
            and all(isinstance(s, numbers.Integral) for s in scaling)):
        raise ValueError(f'up/down must be an int or a pair of ints, got {scaling!r}')
    sx, sy = int(scaling[0]), int(scaling[1])
    if sx < 1 or sy < 1:
        raise ValueError(f'up/down factors must be >= 1, got {scaling!r}')
    return sx, sy


def _parse_padding(padding):
    if isinstance(padding, numbers.Integral):
        padding = [padding, padding]
    if not (isinstance(padding, (list, tuple)) and all(isinstance(p, numbers.Integral) for p in padding)):
        raise ValueError(f'padding must be an int or a list of 2 or 4 ints, got {padding!r}')
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        padx, pady = padding
        padding = [padx, padx, pady, pady]
    if len(padding) != 4:
        raise ValueError(f'padding must be an int or a list of 2 or 4 ints, got {padding!r}')
    padx0, padx1, pady0, pady1 = padding
    return padx0, padx1, pady0, pady1


def _get_filter_size(f):
    """(width, height) of a filter tensor; None means the 1x1 identity filter."""
    if f is None:
        return 1, 1
    if not (isinstance(f, torch.Tensor) and f.ndim in (1, 2)):
        raise ValueError('filter must be None or a 1D/2D tensor (see setup_filter)')
    fw = f.shape[-1]
    fh = f.shape[0]
    return int(fw), int(fh)


def setup_filter(f, device=torch.device('cpu'), normalize=True, flip_filter=False, gain=1, separable=None):
    """Turn a list/array into a float32 filter tensor.

    A 1D filter stays separable only if it has >= 8 taps (unless `separable` says otherwise);
    shorter ones become their 2D outer product, so the default [1, 3, 3, 1] becomes a 4x4
    buffer. normalize makes the taps sum to 1; gain scales by gain ** (ndim / 2) so that a
    separable filter applied along both axes gets `gain` once in total."""
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim not in (0, 1, 2) or f.numel() == 0:
        raise ValueError(f'filter must be a non-empty scalar, 1D or 2D array, got shape {tuple(f.shape)}')
    if f.ndim == 0:
        f = f[np.newaxis]
    if separable is None:
        separable = (f.ndim == 1 and f.numel() >= 8)
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim != (1 if separable else 2):
        raise ValueError('a 2D filter cannot be separable')
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1, impl=None):
    """Upsample, pad, FIR-filter and downsample a batch of images x [N, C, H, W].

    `impl` is accepted for upstream call compatibility and ignored (one implementation)."""
    if not (isinstance(x, torch.Tensor) and x.ndim == 4):
        raise ValueError('upfirdn2d: x must be a 4D tensor [N, C, H, W]')
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    _get_filter_size(f)  # validates the filter
    batch_size, num_channels, in_height, in_width = x.shape
    upx, upy = _parse_scaling(up)
    downx, downy = _parse_scaling(down)
    padx0, padx1, pady0, pady1 = _parse_padding(padding)

    # Zero insertion: each sample is followed by (up - 1) zeros along each axis.
    x = x.reshape([batch_size, num_channels, in_height, 1, in_width, 1])
    x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
    x = x.reshape([batch_size, num_channels, in_height * upy, in_width * upx])

    # Positive padding adds zeros, negative padding crops.
    x = F.pad(x, [max(padx0, 0), max(padx1, 0), max(pady0, 0), max(pady1, 0)])
    x = x[:, :, max(-pady0, 0): x.shape[2] - max(-pady1, 0), max(-padx0, 0): x.shape[3] - max(-padx1, 0)]

    # conv2d computes a correlation, so flipping the taps gives a true convolution.
    f = f * (gain ** (f.ndim / 2))
    f = f.to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))

    # Depthwise filtering: the same filter for every channel.
    f = f[np.newaxis, np.newaxis].repeat([num_channels, 1] + [1] * f.ndim)
    if f.ndim == 4:
        x = F.conv2d(input=x, weight=f, groups=num_channels)
    else:
        x = F.conv2d(input=x, weight=f.unsqueeze(2), groups=num_channels)
        x = F.conv2d(input=x, weight=f.unsqueeze(3), groups=num_channels)

    x = x[:, :, ::downy, ::downx]
    return x


def filter2d(x, f, padding=0, flip_filter=False, gain=1, impl=None):
    """Filter without resampling; by default the output has the input's size (centred filter)."""
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [
        padx0 + fw // 2,
        padx1 + (fw - 1) // 2,
        pady0 + fh // 2,
        pady1 + (fh - 1) // 2,
    ]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain)


def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1, impl=None):
    """Upsample by `up`; gain is multiplied by up_x * up_y so the inserted zeros keep the mean."""
    upx, upy = _parse_scaling(up)
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [
        padx0 + (fw + upx - 1) // 2,
        padx1 + (fw - upx) // 2,
        pady0 + (fh + upy - 1) // 2,
        pady1 + (fh - upy) // 2,
    ]
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * upx * upy)


def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1, impl=None):
    """Low-pass filter then keep every `down`-th sample."""
    downx, downy = _parse_scaling(down)
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [
        padx0 + (fw - downx + 1) // 2,
        padx1 + (fw - downx) // 2,
        pady0 + (fh - downy + 1) // 2,
        pady1 + (fh - downy) // 2,
    ]
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain)
