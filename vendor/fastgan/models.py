"""FastGAN networks (Liu et al., ICLR 2021) with upstream's module names, order and shapes.

`Generator(ngf=64, nz=100, nc=3, im_size=1024)` and `Discriminator(ndf=64, nc=3, im_size=512)` take upstream's
constructor arguments, and their state_dicts equal upstream's (keys, order, shapes; spectral norm through
torch.nn.utils.spectral_norm, so `weight_orig` / `weight_u` / `weight_v`): see
shared/upstream/fastgan_state_dict.json, checked by tests/fastgan/test_fastgan_models.py. Supported sizes:
256, 512, 1024 (as upstream).

Upstream applies tanh to the outputs only at 1024 (at 256 and 512 the generator returns unbounded images); that
is kept by default. `tanh_all=True` (train.py --tanh_all) applies it at every size.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

SIZES = (256, 512, 1024)


def _widths(base: int, multipliers: dict) -> dict:
    return {res: int(mult * base) for res, mult in multipliers.items()}


# channel multipliers per resolution (upstream's nfc_multi tables)
G_MULT = {4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 0.5, 512: 0.25, 1024: 0.125}
D_MULT = {4: 16, 8: 16, 16: 8, 32: 4, 64: 2, 128: 1, 256: 0.5, 512: 0.25, 1024: 0.125}


def conv2d(*args, **kwargs) -> nn.Module:
    return spectral_norm(nn.Conv2d(*args, **kwargs))


def conv_transpose2d(*args, **kwargs) -> nn.Module:
    return spectral_norm(nn.ConvTranspose2d(*args, **kwargs))


def weights_init(m: nn.Module) -> None:
    """Upstream's initialisation, applied with `net.apply(weights_init)`: conv weights N(0, 0.02) (into
    `weight_orig`, which the spectral-norm `weight` attribute aliases before the first forward), BatchNorm
    weight N(1, 0.02) and bias 0."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        target = m.weight_orig if hasattr(m, "weight_orig") else m.weight
        target.data.normal_(0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        m.weight.data.normal_(1.0, 0.02)
        m.bias.data.fill_(0)


class GLU(nn.Module):
    """Gated linear unit over channels: first half times sigmoid of the second half."""

    def forward(self, x):
        half = x.size(1) // 2
        return x[:, :half] * torch.sigmoid(x[:, half:])


class Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class NoiseInjection(nn.Module):
    """Adds per-pixel Gaussian noise scaled by a learned scalar (initialised to 0)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, feat, noise=None):
        if noise is None:
            b, _, h, w = feat.shape
            noise = torch.randn(b, 1, h, w, device=feat.device, dtype=feat.dtype)
        return feat + self.weight * noise


class SEBlock(nn.Module):
    """Skip-layer excitation: a low-resolution feature gates the channels of a high-resolution one."""

    def __init__(self, ch_in: int, ch_out: int):
        super().__init__()
        self.main = nn.Sequential(nn.AdaptiveAvgPool2d(4), conv2d(ch_in, ch_out, 4, 1, 0, bias=False), Swish(),
                                  conv2d(ch_out, ch_out, 1, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, feat_small, feat_big):
        return feat_big * self.main(feat_small)


class InitLayer(nn.Module):
    def __init__(self, nz: int, channel: int):
        super().__init__()
        self.init = nn.Sequential(conv_transpose2d(nz, channel * 2, 4, 1, 0, bias=False),
                                  nn.BatchNorm2d(channel * 2), GLU())

    def forward(self, noise):
        return self.init(noise.view(noise.shape[0], -1, 1, 1))


def UpBlock(in_planes: int, out_planes: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                         conv2d(in_planes, out_planes * 2, 3, 1, 1, bias=False),
                         nn.BatchNorm2d(out_planes * 2), GLU())


def UpBlockComp(in_planes: int, out_planes: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                         conv2d(in_planes, out_planes * 2, 3, 1, 1, bias=False), NoiseInjection(),
                         nn.BatchNorm2d(out_planes * 2), GLU(),
                         conv2d(out_planes, out_planes * 2, 3, 1, 1, bias=False), NoiseInjection(),
                         nn.BatchNorm2d(out_planes * 2), GLU())


def _check_size(im_size: int) -> None:
    if im_size not in SIZES:
        raise ValueError(f"FastGAN supports im_size {SIZES}, got {im_size}")


class Generator(nn.Module):
    """Returns [image at im_size, image at 128]."""

    def __init__(self, ngf: int = 64, nz: int = 100, nc: int = 3, im_size: int = 1024, tanh_all: bool = False):
        super().__init__()
        _check_size(im_size)
        nfc = _widths(ngf, G_MULT)
        self.im_size, self.tanh_all = im_size, tanh_all
        self.init = InitLayer(nz, channel=nfc[4])
        self.feat_8 = UpBlockComp(nfc[4], nfc[8])
        self.feat_16 = UpBlock(nfc[8], nfc[16])
        self.feat_32 = UpBlockComp(nfc[16], nfc[32])
        self.feat_64 = UpBlock(nfc[32], nfc[64])
        self.feat_128 = UpBlockComp(nfc[64], nfc[128])
        self.feat_256 = UpBlock(nfc[128], nfc[256])
        self.se_64 = SEBlock(nfc[4], nfc[64])
        self.se_128 = SEBlock(nfc[8], nfc[128])
        self.se_256 = SEBlock(nfc[16], nfc[256])
        self.to_128 = conv2d(nfc[128], nc, 1, 1, 0, bias=False)
        self.to_big = conv2d(nfc[im_size], nc, 3, 1, 1, bias=False)
        if im_size > 256:
            self.feat_512 = UpBlockComp(nfc[256], nfc[512])
            self.se_512 = SEBlock(nfc[32], nfc[512])
        if im_size > 512:
            self.feat_1024 = UpBlock(nfc[512], nfc[1024])

    def forward(self, input):
        feat_4 = self.init(input)
        feat_8 = self.feat_8(feat_4)
        feat_16 = self.feat_16(feat_8)
        feat_32 = self.feat_32(feat_16)
        feat_64 = self.se_64(feat_4, self.feat_64(feat_32))
        feat_128 = self.se_128(feat_8, self.feat_128(feat_64))
        feat = self.se_256(feat_16, self.feat_256(feat_128))
        if self.im_size > 256:
            feat = self.se_512(feat_32, self.feat_512(feat))
        if self.im_size > 512:
            feat = self.feat_1024(feat)
        big, small = self.to_big(feat), self.to_128(feat_128)
        if self.im_size == 1024 or self.tanh_all:  # upstream: tanh only at 1024
            big, small = torch.tanh(big), torch.tanh(small)
        return [big, small]


class DownBlock(nn.Module):
    def __init__(self, in_planes: int, out_planes: int):
        super().__init__()
        self.main = nn.Sequential(conv2d(in_planes, out_planes, 4, 2, 1, bias=False),
                                  nn.BatchNorm2d(out_planes), nn.LeakyReLU(0.2, inplace=True))

    def forward(self, feat):
        return self.main(feat)


class DownBlockComp(nn.Module):
    def __init__(self, in_planes: int, out_planes: int):
        super().__init__()
        self.main = nn.Sequential(conv2d(in_planes, out_planes, 4, 2, 1, bias=False),
                                  nn.BatchNorm2d(out_planes), nn.LeakyReLU(0.2, inplace=True),
                                  conv2d(out_planes, out_planes, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(out_planes), nn.LeakyReLU(0.2))
        self.direct = nn.Sequential(nn.AvgPool2d(2, 2), conv2d(in_planes, out_planes, 1, 1, 0, bias=False),
                                    nn.BatchNorm2d(out_planes), nn.LeakyReLU(0.2))

    def forward(self, feat):
        return (self.main(feat) + self.direct(feat)) / 2


class SimpleDecoder(nn.Module):
    """D's self-supervised decoder: an 8x8 feature map back to a 128x128 image."""

    def __init__(self, nfc_in: int = 64, nc: int = 3):
        super().__init__()
        nfc = _widths(32, G_MULT)

        def up(in_planes, out_planes):
            return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                 conv2d(in_planes, out_planes * 2, 3, 1, 1, bias=False),
                                 nn.BatchNorm2d(out_planes * 2), GLU())

        self.main = nn.Sequential(nn.AdaptiveAvgPool2d(8), up(nfc_in, nfc[16]), up(nfc[16], nfc[32]),
                                  up(nfc[32], nfc[64]), up(nfc[64], nfc[128]),
                                  conv2d(nfc[128], nc, 3, 1, 1, bias=False), nn.Tanh())

    def forward(self, input):
        return self.main(input)


def crop_image_by_part(image: torch.Tensor, part: int) -> torch.Tensor:
    """Quarter `part` (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) of an NCHW batch."""
    hw = image.shape[2] // 2
    rows = slice(None, hw) if part in (0, 1) else slice(hw, None)
    cols = slice(None, hw) if part in (0, 2) else slice(hw, None)
    return image[:, :, rows, cols]


class Discriminator(nn.Module):
    """`D(imgs, label, part=None)`: imgs is [image, image at 128] or one batch (resized here to both sizes).
    Returns the concatenated logits of the two heads (5x5 each per image, flattened); for label 'real' also
    the three reconstructions [whole image, 128-px branch, quarter `part` of the whole image], each 128x128."""

    def __init__(self, ndf: int = 64, nc: int = 3, im_size: int = 512):
        super().__init__()
        _check_size(im_size)
        self.ndf, self.im_size = ndf, im_size
        nfc = _widths(ndf, D_MULT)
        if im_size == 1024:
            self.down_from_big = nn.Sequential(conv2d(nc, nfc[1024], 4, 2, 1, bias=False),
                                               nn.LeakyReLU(0.2, inplace=True),
                                               conv2d(nfc[1024], nfc[512], 4, 2, 1, bias=False),
                                               nn.BatchNorm2d(nfc[512]), nn.LeakyReLU(0.2, inplace=True))
        elif im_size == 512:
            self.down_from_big = nn.Sequential(conv2d(nc, nfc[512], 4, 2, 1, bias=False),
                                               nn.LeakyReLU(0.2, inplace=True))
        else:
            self.down_from_big = nn.Sequential(conv2d(nc, nfc[512], 3, 1, 1, bias=False),
                                               nn.LeakyReLU(0.2, inplace=True))
        self.down_4 = DownBlockComp(nfc[512], nfc[256])
        self.down_8 = DownBlockComp(nfc[256], nfc[128])
        self.down_16 = DownBlockComp(nfc[128], nfc[64])
        self.down_32 = DownBlockComp(nfc[64], nfc[32])
        self.down_64 = DownBlockComp(nfc[32], nfc[16])
        self.rf_big = nn.Sequential(conv2d(nfc[16], nfc[8], 1, 1, 0, bias=False), nn.BatchNorm2d(nfc[8]),
                                    nn.LeakyReLU(0.2, inplace=True), conv2d(nfc[8], 1, 4, 1, 0, bias=False))
        self.se_2_16 = SEBlock(nfc[512], nfc[64])
        self.se_4_32 = SEBlock(nfc[256], nfc[32])
        self.se_8_64 = SEBlock(nfc[128], nfc[16])
        self.down_from_small = nn.Sequential(conv2d(nc, nfc[256], 4, 2, 1, bias=False),
                                             nn.LeakyReLU(0.2, inplace=True), DownBlock(nfc[256], nfc[128]),
                                             DownBlock(nfc[128], nfc[64]), DownBlock(nfc[64], nfc[32]))
        self.rf_small = conv2d(nfc[32], 1, 4, 1, 0, bias=False)
        self.decoder_big = SimpleDecoder(nfc[16], nc)
        self.decoder_part = SimpleDecoder(nfc[32], nc)
        self.decoder_small = SimpleDecoder(nfc[32], nc)

    def forward(self, imgs, label, part=None):
        if not isinstance(imgs, (list, tuple)):
            imgs = [F.interpolate(imgs, size=self.im_size), F.interpolate(imgs, size=128)]
        feat_2 = self.down_from_big(imgs[0])
        feat_4 = self.down_4(feat_2)
        feat_8 = self.down_8(feat_4)
        feat_16 = self.se_2_16(feat_2, self.down_16(feat_8))
        feat_32 = self.se_4_32(feat_4, self.down_32(feat_16))
        feat_last = self.se_8_64(feat_8, self.down_64(feat_32))
        rf_0 = self.rf_big(feat_last).view(-1)
        feat_small = self.down_from_small(imgs[1])
        rf_1 = self.rf_small(feat_small).view(-1)
        logits = torch.cat([rf_0, rf_1])
        if label != "real":
            return logits
        if part not in (0, 1, 2, 3):
            raise ValueError(f"Discriminator: label 'real' needs part in 0..3, got {part!r}")
        rec_big = self.decoder_big(feat_last)
        rec_small = self.decoder_small(feat_small)
        rec_part = self.decoder_part(crop_image_by_part(feat_32, part))
        return logits, [rec_big, rec_small, rec_part]
