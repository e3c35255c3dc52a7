"""ADA augmentation pipeline (Karras et al. 2020, "Training GANs with limited data").

Every transform is applied per sample with probability `multiplier * p`, where `p` is a buffer
that the training loop adjusts (ADA) or fixes (--aug fixed). The strengths (standard deviations,
ranges) are upstream's defaults. The pipeline has four stages, in upstream's order:

1. geometric: one 2-D homogeneous matrix per sample accumulated from xflip, rotate90, xint,
   scale, rotate, aniso, rotate (a second time), xfrac, then executed once by resampling: reflect-pad,
   2x upsample with the sym6 wavelet, bilinear grid_sample, 2x downsample with the same filter;
2. color: one 4x4 matrix per sample (brightness, contrast, lumaflip, hue, saturation);
3. image-space filtering: random gains on four octave bands built from the sym2 wavelet;
4. additive Gaussian noise and cutout.

Everything is differentiable w.r.t. the images (R1 needs double backward through it; see
torch_utils/ops/grid_sample_gradfix.py).

Deviations from upstream: no `debug_percentile` (a visualisation aid that replaces the random draws
by a fixed percentile; nothing in training uses it); `imgfilter` also works on images smaller than
its 43-tap filter bank (reflection padding is repeated instead of failing).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils.ops import grid_sample_gradfix
from torch_utils.ops import upfirdn2d

# ---------------------------------------------------------------------------------------------
# Orthonormal wavelet low-pass filters (published constants). sym6 drives the geometric
# up/down-sampling, sym2 builds the octave filter bank of `imgfilter`.

WAVELETS = {
    'haar': [0.7071067811865476, 0.7071067811865476],
    'sym2': [-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025],
    'sym6': [0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
             0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
             -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148],
}

# Which transforms each named pipe enables (multiplier 1; everything else stays 0).
_BLIT = dict(xflip=1, rotate90=1, xint=1)
_GEOM = dict(scale=1, rotate=1, aniso=1, xfrac=1)
_COLOR = dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
AUGPIPE_SPECS = {
    'blit': dict(_BLIT),
    'geom': dict(_GEOM),
    'color': dict(_COLOR),
    'filter': dict(imgfilter=1),
    'noise': dict(noise=1),
    'cutout': dict(cutout=1),
    'bg': dict(_BLIT, **_GEOM),
    'bgc': dict(_BLIT, **_GEOM, **_COLOR),
    'bgcf': dict(_BLIT, **_GEOM, **_COLOR, imgfilter=1),
    'bgcfn': dict(_BLIT, **_GEOM, **_COLOR, imgfilter=1, noise=1),
    'bgcfnc': dict(_BLIT, **_GEOM, **_COLOR, imgfilter=1, noise=1, cutout=1),
}

# ---------------------------------------------------------------------------------------------
# Batched homogeneous matrices. Each entry may be a Python number or a [batch] tensor; the result
# is [batch, n, n] (or [n, n] when every entry is a number).


def _matrix(rows, device):
    entries = [e for row in rows for e in row]
    tensors = [e for e in entries if isinstance(e, torch.Tensor)]
    if not tensors:
        return torch.tensor(rows, dtype=torch.float32, device=device)
    ref = tensors[0]
    filled = [e if isinstance(e, torch.Tensor) else torch.full_like(ref, float(e)) for e in entries]
    return torch.stack(filled, dim=-1).reshape(ref.shape + (len(rows), len(rows[0])))


def translate2d(tx, ty, device=None):
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], device)


def scale2d(sx, sy, device=None):
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], device)


def rotate2d(theta, device=None):
    c, s = _cos_sin(theta)
    return _matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], device)


def translate2d_inv(tx, ty, device=None):
    return translate2d(-tx, -ty, device)


def scale2d_inv(sx, sy, device=None):
    return scale2d(1 / sx, 1 / sy, device)


def rotate2d_inv(theta, device=None):
    return rotate2d(-theta, device)


def translate3d(tx, ty, tz, device=None):
    return _matrix([[1, 0, 0, tx], [0, 1, 0, ty], [0, 0, 1, tz], [0, 0, 0, 1]], device)


def scale3d(sx, sy, sz, device=None):
    return _matrix([[sx, 0, 0, 0], [0, sy, 0, 0], [0, 0, sz, 0], [0, 0, 0, 1]], device)


def rotate3d(axis, theta, device=None):
    """Rotation by `theta` around the unit vector `axis` (Rodrigues), homogeneous 4x4."""
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    c, s = _cos_sin(theta)
    k = 1 - c
    return _matrix([[x * x * k + c, x * y * k - z * s, x * z * k + y * s, 0],
                    [y * x * k + z * s, y * y * k + c, y * z * k - x * s, 0],
                    [z * x * k - y * s, z * y * k + x * s, z * z * k + c, 0],
                    [0, 0, 0, 1]], device)


def _cos_sin(theta):
    if isinstance(theta, torch.Tensor):
        return torch.cos(theta), torch.sin(theta)
    return math.cos(theta), math.sin(theta)


# ---------------------------------------------------------------------------------------------

def octave_filter_bank(lowpass, num_bands=4):
    """[num_bands, taps] zero-phase filters that split a 1-D signal into octaves (band 0 lowest).

    With the power-complementary pair lo2 = H(z)H(1/z)/2, hi2 = H(-z)H(-1/z)/2 (lo2 + hi2 = 1), the
    bands are: highest = hi2(z); next = hi2(z^2) lo2(z); ...; lowest = lo2(z) lo2(z^2) ... . They sum
    to a unit impulse, so gains of 1 on every band leave the image unchanged.
    """
    h = np.asarray(lowpass, dtype=np.float64)
    g = h * ((-1.0) ** np.arange(h.size))
    lo2 = np.convolve(h, h[::-1]) / 2
    hi2 = np.convolve(g, g[::-1]) / 2

    def dilate(f, factor):  # f(z) -> f(z^factor)
        out = np.zeros((f.size - 1) * factor + 1)
        out[::factor] = f
        return out

    bands = []
    for level in range(num_bands - 1):  # level 0 = highest band
        f = dilate(hi2, 2 ** level)
        for lower in range(level):
            f = np.convolve(f, dilate(lo2, 2 ** lower))
        bands.append(f)
    f = np.array([1.0])
    for lower in range(num_bands - 1):
        f = np.convolve(f, dilate(lo2, 2 ** lower))
    bands.append(f)
    bands = bands[::-1]  # lowest first

    taps = max(b.size for b in bands)
    bank = np.zeros((num_bands, taps))
    for i, b in enumerate(bands):  # centre every (odd-length, symmetric) filter
        start = (taps - b.size) // 2
        bank[i, start:start + b.size] = b
    return bank


def _reflect_pad(x, pad):
    """Reflect-pad all four sides by `pad`, repeatedly when `pad` exceeds what one reflection
    allows (images smaller than the 43-tap filter bank; upstream needs >= 32 pixels here)."""
    while pad > 0:
        step = min(pad, x.shape[2] - 1, x.shape[3] - 1)
        x = F.pad(x, [step, step, step, step], mode='reflect')
        pad -= step
    return x


class AugmentPipe(torch.nn.Module):
    def __init__(self,
                 xflip=0, rotate90=0, xint=0, xint_max=0.125,
                 scale=0, rotate=0, aniso=0, xfrac=0, scale_std=0.2, rotate_max=1, aniso_std=0.2, xfrac_std=0.125,
                 brightness=0, contrast=0, lumaflip=0, hue=0, saturation=0,
                 brightness_std=0.2, contrast_std=0.5, hue_max=1, saturation_std=1,
                 imgfilter=0, imgfilter_bands=(1, 1, 1, 1), imgfilter_std=1,
                 noise=0, cutout=0, noise_std=0.1, cutout_size=0.5):
        super().__init__()
        self.register_buffer('p', torch.ones([]))  # a buffer so snapshots and broadcasts carry it

        # Stage 1a, lossless integer moves: flips, quarter turns, whole-pixel shifts.
        self.xflip, self.rotate90, self.xint, self.xint_max = float(xflip), float(rotate90), float(xint), float(xint_max)
        # Stage 1b, resampled moves; the *_std / *_max values set their spread.
        self.scale, self.rotate, self.aniso, self.xfrac = float(scale), float(rotate), float(aniso), float(xfrac)
        self.scale_std, self.rotate_max = float(scale_std), float(rotate_max)
        self.aniso_std, self.xfrac_std = float(aniso_std), float(xfrac_std)
        # Stage 2, one 4x4 colour matrix per sample.
        self.brightness, self.contrast, self.lumaflip = float(brightness), float(contrast), float(lumaflip)
        self.hue, self.saturation = float(hue), float(saturation)
        self.brightness_std, self.contrast_std = float(brightness_std), float(contrast_std)
        self.hue_max, self.saturation_std = float(hue_max), float(saturation_std)
        # Stage 3, random per-octave gains.
        self.imgfilter, self.imgfilter_bands, self.imgfilter_std = float(imgfilter), list(imgfilter_bands), float(imgfilter_std)
        # Stage 4, additive noise and cutout.
        self.noise, self.cutout = float(noise), float(cutout)
        self.noise_std, self.cutout_size = float(noise_std), float(cutout_size)

        # Non-persistent: constants rebuilt on construction; p is the only state a snapshot needs.
        self.register_buffer('Hz_geom', upfirdn2d.setup_filter(WAVELETS['sym6']), persistent=False)
        self.register_buffer('Hz_fbank', torch.as_tensor(
            octave_filter_bank(WAVELETS['sym2'], len(self.imgfilter_bands)), dtype=torch.float32), persistent=False)

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _gate(value, prob, fallback):
        """Keep each sample's random `value` with probability `prob`, else use the number `fallback`."""
        keep = torch.rand(value.shape[:1], device=value.device) < prob
        keep = keep.reshape([-1] + [1] * (value.ndim - 1))
        return torch.where(keep, value, torch.full_like(value, fallback))

    def forward(self, images):
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f'AugmentPipe: images must be [N, 1 or 3, H, W], got {tuple(images.shape)}')
        images = self._geometric(images)
        images = self._color(images)
        images = self._filter(images)
        images = self._corrupt(images)
        return images

    # -- stage 1: geometric ----------------------------------------------------------------------

    def _geometric_matrix(self, batch, width, height, device):
        """Inverse (output -> input) pixel-coordinate transform per sample, [batch, 3, 3]."""
        G = torch.eye(3, device=device).repeat(batch, 1, 1)
        rand, randn = (lambda *s: torch.rand(*s, device=device)), (lambda *s: torch.randn(*s, device=device))
        if self.xflip > 0:
            i = self._gate(torch.floor(rand(batch) * 2), self.xflip * self.p, 0)
            G = G @ scale2d_inv(1 - 2 * i, torch.ones_like(i))
        if self.rotate90 > 0:
            i = self._gate(torch.floor(rand(batch) * 4), self.rotate90 * self.p, 0)
            G = G @ rotate2d_inv(-np.pi / 2 * i)
        if self.xint > 0:
            t = self._gate((rand(batch, 2) * 2 - 1) * self.xint_max, self.xint * self.p, 0)
            G = G @ translate2d_inv(torch.round(t[:, 0] * width), torch.round(t[:, 1] * height))
        if self.scale > 0:
            s = self._gate(torch.exp2(randn(batch) * self.scale_std), self.scale * self.p, 1)
            G = G @ scale2d_inv(s, s)
        # Rotation is applied twice (before and after anisotropic scaling); each gets the
        # probability that makes "at least one of the two" happen with probability rotate*p.
        p_rot = 1 - torch.sqrt((1 - self.rotate * self.p).clamp(min=0))
        if self.rotate > 0:
            theta = self._gate((rand(batch) * 2 - 1) * np.pi * self.rotate_max, p_rot, 0)
            G = G @ rotate2d_inv(-theta)
        if self.aniso > 0:
            s = self._gate(torch.exp2(randn(batch) * self.aniso_std), self.aniso * self.p, 1)
            G = G @ scale2d_inv(s, 1 / s)
        if self.rotate > 0:
            theta = self._gate((rand(batch) * 2 - 1) * np.pi * self.rotate_max, p_rot, 0)
            G = G @ rotate2d_inv(-theta)
        if self.xfrac > 0:
            t = self._gate(randn(batch, 2) * self.xfrac_std, self.xfrac * self.p, 0)
            G = G @ translate2d_inv(t[:, 0] * width, t[:, 1] * height)
        return G

    def _geometric(self, images):
        batch, channels, height, width = images.shape
        device = images.device
        G_inv = self._geometric_matrix(batch, width, height, device)
        if torch.equal(G_inv, torch.eye(3, device=device).expand_as(G_inv)):
            return images

        # Padding: enough reflect-padding that every output pixel's source (plus the filter's
        # support) lies inside the padded image, capped at what 'reflect' allows.
        cx, cy = (width - 1) / 2, (height - 1) / 2
        corners = torch.tensor([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], device=device)
        src = (G_inv @ corners.t())[:, :2, :]                      # [batch, xy, corner]
        src = src.permute(1, 0, 2).flatten(1)                      # [xy, batch*corner]
        filter_pad = self.Hz_geom.shape[0] // 4
        margin = torch.cat([-src, src]).max(dim=1).values          # [x0, y0, x1, y1]
        margin = margin + torch.tensor([filter_pad * 2 - cx, filter_pad * 2 - cy] * 2, device=device)
        margin = margin.clamp(min=0)
        margin = torch.minimum(margin, torch.tensor([width - 1, height - 1] * 2, device=device, dtype=margin.dtype))
        mx0, my0, mx1, my1 = [int(v) for v in margin.ceil().to(torch.int64).tolist()]
        images = F.pad(images, [mx0, mx1, my0, my1], mode='reflect')
        G_inv = translate2d((mx0 - mx1) / 2, (my0 - my1) / 2, device) @ G_inv

        # 2x upsample; conjugate the transform into the upsampled pixel grid (pixel centres at +0.5).
        images = upfirdn2d.upsample2d(x=images, f=self.Hz_geom, up=2)
        G_inv = scale2d(2, 2, device) @ G_inv @ scale2d_inv(2, 2, device)
        G_inv = translate2d(-0.5, -0.5, device) @ G_inv @ translate2d_inv(-0.5, -0.5, device)

        # Resample into an output that still carries filter_pad*2 pixels of border per side, then
        # let the downsampling filter consume it. affine_grid works in [-1, 1] coordinates.
        out_shape = [batch, channels, (height + filter_pad * 2) * 2, (width + filter_pad * 2) * 2]
        G_inv = (scale2d(2 / images.shape[3], 2 / images.shape[2], device) @ G_inv
                 @ scale2d_inv(2 / out_shape[3], 2 / out_shape[2], device))
        grid = F.affine_grid(theta=G_inv[:, :2, :], size=out_shape, align_corners=False)
        images = grid_sample_gradfix.grid_sample(images, grid)
        images = upfirdn2d.downsample2d(x=images, f=self.Hz_geom, down=2, padding=-filter_pad * 2, flip_filter=True)
        return images

    # -- stage 2: color ---------------------------------------------------------------------------

    def _color_matrix(self, batch, device):
        C = torch.eye(4, device=device).repeat(batch, 1, 1)
        rand, randn = (lambda *s: torch.rand(*s, device=device)), (lambda *s: torch.randn(*s, device=device))
        luma = torch.tensor([1, 1, 1, 0], dtype=torch.float32, device=device) / np.sqrt(3)
        luma_outer = torch.outer(luma, luma)
        if self.brightness > 0:
            b = self._gate(randn(batch) * self.brightness_std, self.brightness * self.p, 0)
            C = translate3d(b, b, b) @ C
        if self.contrast > 0:
            c = self._gate(torch.exp2(randn(batch) * self.contrast_std), self.contrast * self.p, 1)
            C = scale3d(c, c, c) @ C
        if self.lumaflip > 0:  # Householder reflection across the plane orthogonal to the luma axis.
            i = self._gate(torch.floor(rand(batch, 1, 1) * 2), self.lumaflip * self.p, 0)
            C = (torch.eye(4, device=device) - 2 * luma_outer * i) @ C
        if self.hue > 0:
            theta = self._gate((rand(batch) * 2 - 1) * np.pi * self.hue_max, self.hue * self.p, 0)
            C = rotate3d(luma.expand(batch, 4), theta) @ C
        if self.saturation > 0:
            s = self._gate(torch.exp2(randn(batch, 1, 1) * self.saturation_std), self.saturation * self.p, 1)
            C = (luma_outer + (torch.eye(4, device=device) - luma_outer) * s) @ C
        return C

    def _color(self, images):
        batch, channels, height, width = images.shape
        C = self._color_matrix(batch, images.device)
        if torch.equal(C, torch.eye(4, device=images.device).expand_as(C)):
            return images
        flat = images.reshape(batch, channels, height * width)
        if channels == 3:
            flat = C[:, :3, :3] @ flat + C[:, :3, 3:]
        else:  # Greyscale: average the RGB rows, i.e. apply the transform as it acts on grey (r=g=b).
            C = C[:, :3, :].mean(dim=1, keepdim=True)
            flat = flat * C[:, :, :3].sum(dim=2, keepdim=True) + C[:, :, 3:]
        return flat.reshape(batch, channels, height, width)

    # -- stage 3: image-space filtering -------------------------------------------------------------

    def _filter(self, images):
        if self.imgfilter <= 0:
            return images
        batch, channels, height, width = images.shape
        device = images.device
        num_bands = self.Hz_fbank.shape[0]
        bands = torch.tensor(self.imgfilter_bands, dtype=torch.float32, device=device)
        expected_power = bands / bands.sum()  # a white-noise image has this much power per band
        gains = torch.ones(batch, num_bands, device=device)
        for i, band_strength in enumerate(self.imgfilter_bands):
            t_i = self._gate(torch.exp2(torch.randn(batch, device=device) * self.imgfilter_std),
                             self.imgfilter * band_strength * self.p, 1)
            t = torch.ones(batch, num_bands, device=device)
            t[:, i] = t_i
            t = t / (expected_power * t.square()).sum(dim=-1, keepdim=True).sqrt()  # keep total power
            gains = gains * t
        if torch.all(gains == 1):
            return images
        kernel = gains @ self.Hz_fbank                                      # [batch, taps]
        kernel = kernel.unsqueeze(1).repeat(1, channels, 1).reshape(batch * channels, 1, -1)
        pad = self.Hz_fbank.shape[1] // 2
        x = images.reshape(1, batch * channels, height, width)
        x = _reflect_pad(x, pad)
        x = F.conv2d(x, kernel.unsqueeze(2), groups=batch * channels)     # horizontal pass
        x = F.conv2d(x, kernel.unsqueeze(3), groups=batch * channels)     # vertical pass
        return x.reshape(batch, channels, height, width)

    # -- stage 4: corruptions ---------------------------------------------------------------------

    def _corrupt(self, images):
        batch, channels, height, width = images.shape
        device = images.device
        if self.noise > 0:
            sigma = self._gate(torch.randn(batch, 1, 1, 1, device=device).abs() * self.noise_std, self.noise * self.p, 0)
            images = images + torch.randn_like(images) * sigma
        if self.cutout > 0:
            size = self._gate(torch.full([batch, 1, 1, 1], self.cutout_size, device=device), self.cutout * self.p, 0)
            center = torch.rand(batch, 2, 1, 1, device=device)
            xs = ((torch.arange(width, device=device) + 0.5) / width).reshape(1, 1, 1, -1)
            ys = ((torch.arange(height, device=device) + 0.5) / height).reshape(1, 1, -1, 1)
            outside = ((xs - center[:, 0:1]).abs() >= size / 2) | ((ys - center[:, 1:2]).abs() >= size / 2)
            images = images * outside.to(images.dtype)
        return images
