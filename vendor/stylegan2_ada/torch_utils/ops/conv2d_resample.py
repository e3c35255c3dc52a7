"""2D convolution with optional FIR up/downsampling (upstream's conv2d_resample).

Meaning (the generic path, `_conv2d_resample_reference`):
    y = upfirdn2d(x, f, up=up, padding=padding (+ filter padding), gain=up**2)
    y = conv2d(y, w, groups)              # correlation; flip_weight=False flips w (convolution)
    y = upfirdn2d(y, f, down=down)        # low-pass + decimate
The fast paths below compute the same thing with fewer operations (FIR and convolution are
both linear shift-invariant, so they commute): 1x1 kernels resample first/last, downsampling
uses a strided convolution, upsampling a transposed strided convolution. Tests check every fast
path against the reference path in float64."""
import torch

from . import conv2d_gradfix
from . import upfirdn2d
from .upfirdn2d import _get_filter_size, _parse_padding


def _get_weight_shape(w):
    if not (isinstance(w, torch.Tensor) and w.ndim == 4):
        raise ValueError('conv2d_resample: w must be a 4D tensor [out_channels, in_channels/groups, kh, kw]')
    return [int(sz) for sz in w.shape]


def _conv2d_wrapper(x, w, stride=1, padding=0, groups=1, transpose=False, flip_weight=True):
    """conv2d (correlation) or conv_transpose2d; flip_weight=False turns it into a convolution."""
    if not flip_weight:
        w = w.flip([2, 3])
    op = conv2d_gradfix.conv_transpose2d if transpose else conv2d_gradfix.conv2d
    return op(x, w, stride=stride, padding=padding, groups=groups)


def _adjusted_padding(padding, f, up, down):
    """Add the padding the FIR filter needs around the up/downsampling to the user padding."""
    fw, fh = _get_filter_size(f)
    px0, px1, py0, py1 = _parse_padding(padding)
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
    return px0, px1, py0, py1


def _validate(x, w, f, up, down, groups):
    if not (isinstance(x, torch.Tensor) and x.ndim == 4):
        raise ValueError('conv2d_resample: x must be a 4D tensor [N, C, H, W]')
    if not (isinstance(up, int) and up >= 1):
        raise ValueError(f'conv2d_resample: up must be an int >= 1, got {up!r}')
    if not (isinstance(down, int) and down >= 1):
        raise ValueError(f'conv2d_resample: down must be an int >= 1, got {down!r}')
    if not (isinstance(groups, int) and groups >= 1):
        raise ValueError(f'conv2d_resample: groups must be an int >= 1, got {groups!r}')
    if f is not None and not (isinstance(f, torch.Tensor) and f.ndim in (1, 2) and f.is_floating_point()):
        raise ValueError('conv2d_resample: f must be None or a 1D/2D float filter from setup_filter()')
    out_channels, in_channels_per_group, kh, kw = _get_weight_shape(w)
    if x.shape[1] != in_channels_per_group * groups:
        raise ValueError(f'conv2d_resample: x has {x.shape[1]} channels, w expects '
                         f'{in_channels_per_group} x {groups} groups')
    if out_channels % groups != 0:
        raise ValueError('conv2d_resample: out_channels must be divisible by groups')


def _conv2d_resample_reference(x, w, f=None, up=1, down=1, padding=0, groups=1, flip_weight=True, flip_filter=False):
    """The generic path: explicit upsample+filter, convolution, filter+downsample."""
    px0, px1, py0, py1 = _adjusted_padding(padding, f, up, down)
    x = upfirdn2d.upfirdn2d(x=x, f=(f if up > 1 else None), up=up, padding=[px0, px1, py0, py1],
                            gain=up ** 2, flip_filter=flip_filter)
    x = _conv2d_wrapper(x=x, w=w, groups=groups, flip_weight=flip_weight)
    if down > 1:
        x = upfirdn2d.upfirdn2d(x=x, f=f, down=down, flip_filter=flip_filter)
    return x


def conv2d_resample(x, w, f=None, up=1, down=1, padding=0, groups=1, flip_weight=True, flip_filter=False):
    """Convolve x [N, C*groups, H, W] with w [O, C, kh, kw], upsampling by `up` before and
    downsampling by `down` after, using the FIR filter f (from setup_filter) for both."""
    _validate(x, w, f, up, down, groups)
    out_channels, in_channels_per_group, kh, kw = _get_weight_shape(w)
    px0, px1, py0, py1 = _adjusted_padding(padding, f, up, down)

    # 1x1 kernel with downsampling only: filter+decimate first, then the cheap 1x1 conv.
    if kw == 1 and kh == 1 and (down > 1 and up == 1):
        x = upfirdn2d.upfirdn2d(x=x, f=f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv2d_wrapper(x=x, w=w, groups=groups, flip_weight=flip_weight)

    # 1x1 kernel with upsampling only: 1x1 conv at low resolution, then upsample.
    if kw == 1 and kh == 1 and (up > 1 and down == 1):
        x = _conv2d_wrapper(x=x, w=w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d.upfirdn2d(x=x, f=f, up=up, padding=[px0, px1, py0, py1], gain=up ** 2,
                                   flip_filter=flip_filter)

    # Downsampling only: low-pass filter, then a strided convolution does the decimation.
    if down > 1 and up == 1:
        x = upfirdn2d.upfirdn2d(x=x, f=f, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv2d_wrapper(x=x, w=w, stride=down, groups=groups, flip_weight=flip_weight)

    # Upsampling (optionally followed by downsampling): a transposed strided convolution inserts
    # the zeros and convolves in one op; the FIR filter runs afterwards.
    if up > 1:
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, out_channels // groups, in_channels_per_group, kh, kw)
            w = w.transpose(1, 2)
            w = w.reshape(groups * in_channels_per_group, out_channels // groups, kh, kw)
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        # conv_transpose2d's own padding crops symmetrically; the rest is left to upfirdn2d.
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        # A transposed convolution flips the kernel relative to conv2d, hence the inverted flag.
        x = _conv2d_wrapper(x=x, w=w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True,
                            flip_weight=(not flip_weight))
        x = upfirdn2d.upfirdn2d(x=x, f=f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt],
                                gain=up ** 2, flip_filter=flip_filter)
        if down > 1:
            x = upfirdn2d.upfirdn2d(x=x, f=f, down=down, flip_filter=flip_filter)
        return x

    # No resampling and symmetric non-negative padding: plain conv2d handles it.
    if up == 1 and down == 1 and px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv2d_wrapper(x=x, w=w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)

    return _conv2d_resample_reference(x, w, f=f, up=up, down=down, padding=padding, groups=groups,
                                      flip_weight=flip_weight, flip_filter=flip_filter)
