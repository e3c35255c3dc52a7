"""ADA augmentation pipe: every transform keeps the shape, is exactly the identity at p=0, changes
images at p=1, and does what it is named for (checked against independent references: torch.flip /
rot90 / reflect-padded shifts, colour-space invariants, the octave bank summing to an impulse,
probabilities measured on large batches), presets as in upstream, R1 through the full pipe."""
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

SG2_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', 'vendor', 'stylegan2_ada'))
if SG2_ROOT not in sys.path:
    sys.path.insert(0, SG2_ROOT)

from training import augment  # noqa: E402
from training.augment import AUGPIPE_SPECS, AugmentPipe  # noqa: E402

torch.set_num_threads(2)

TRANSFORMS = ['xflip', 'rotate90', 'xint', 'scale', 'rotate', 'aniso', 'xfrac', 'brightness', 'contrast',
              'lumaflip', 'hue', 'saturation', 'imgfilter', 'noise', 'cutout']


def smooth_images(batch=8, channels=3, res=32):
    """Low-frequency test images (resampling filters are near-exact on them)."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, res), torch.linspace(-1, 1, res), indexing='ij')
    planes = [torch.sin(2 * xx + 0.7 * k) * torch.cos(1.5 * yy - 0.3 * k) + 0.1 * k / batch
              for k in range(batch * channels)]
    return torch.stack(planes).reshape(batch, channels, res, res)


def run_pipe(p, images, seed=0, **kwargs):
    pipe = AugmentPipe(**kwargs)
    pipe.p.fill_(p)
    torch.manual_seed(seed)
    return pipe(images)


@pytest.mark.parametrize('name', TRANSFORMS)
@pytest.mark.parametrize('channels', [3, 1])
def test_shape_identity_at_p0_and_change_at_p1(name, channels):
    x = torch.randn(8, channels, 16, 16, generator=torch.Generator().manual_seed(1))
    y0 = run_pipe(0.0, x, **{name: 1})
    assert y0.shape == x.shape
    assert torch.equal(y0, x), f'{name} is not the identity at p=0'
    y1 = run_pipe(1.0, x, **{name: 1})
    assert y1.shape == x.shape
    assert torch.isfinite(y1).all()
    changed = (y1 - x).abs().amax(dim=(1, 2, 3)) > 1e-3
    if channels == 1 and name in ('hue', 'saturation'):
        # Both act around the luma axis, so grey images (r = g = b) are fixed points (as upstream).
        assert torch.allclose(y1, x, atol=1e-5)
    else:
        assert changed.any(), f'{name} changed nothing at p=1'


def test_multiplier_zero_disables_transform_even_at_p1():
    x = torch.randn(4, 3, 16, 16)
    assert torch.equal(run_pipe(1.0, x, xflip=0, brightness=0), x)


def _nearest(y, candidates):
    errs = torch.stack([(y - c).abs().amax(dim=(1, 2, 3)) for c in candidates])  # [cand, batch]
    return errs.min(dim=0)


def test_xflip_and_rotate90_match_torch_reference():
    x = smooth_images()
    # The sym6 resampling filter is not exactly symmetric, so a mirrored image picks up a small
    # sub-pixel shift (inherent to upstream's design); identity samples are exact.
    best = _nearest(run_pipe(1.0, x, xflip=1), [x, x.flip(3)])
    assert best.values.max() < 0.05
    assert set(best.indices.tolist()) == {0, 1}
    best = _nearest(run_pipe(1.0, x, seed=3, rotate90=1), [torch.rot90(x, k, (2, 3)) for k in range(4)])
    assert best.values.max() < 0.05
    assert len(set(best.indices.tolist())) >= 3


def test_xint_is_an_integer_shift_of_the_reflect_padded_image():
    x = smooth_images()
    shift_max = round(0.125 * 32)  # upstream xint_max = 0.125 of the image size
    padded = F.pad(x, [shift_max] * 4, mode='reflect')
    candidates, shifts = [], []
    for dy in range(-shift_max, shift_max + 1):
        for dx in range(-shift_max, shift_max + 1):
            candidates.append(padded[:, :, shift_max + dy:shift_max + dy + 32, shift_max + dx:shift_max + dx + 32])
            shifts.append((dx, dy))
    best = _nearest(run_pipe(1.0, x, xint=1), candidates)
    assert best.values.max() < 1e-4  # pure translations by whole pixels are exact
    assert any(shifts[i] != (0, 0) for i in best.indices.tolist())


def test_scale_rotate_aniso_xfrac_are_not_blits():
    x = smooth_images()
    y = run_pipe(1.0, x, scale=1, rotate=1, aniso=1, xfrac=1)
    best = _nearest(y, [x, x.flip(3)] + [torch.rot90(x, k, (2, 3)) for k in range(1, 4)])
    assert best.values.max() > 1e-2


def test_color_transforms_keep_their_invariants():
    x = smooth_images()
    mean = lambda t: t.mean(dim=1, keepdim=True)  # noqa: E731  (component along the luma axis)
    # brightness: one additive constant per sample.
    d = run_pipe(1.0, x, brightness=1) - x
    assert (d - d.mean(dim=(1, 2, 3), keepdim=True)).abs().max() < 1e-5
    assert d.abs().amax(dim=(1, 2, 3)).max() > 1e-3
    # contrast: one positive factor per sample.
    y = run_pipe(1.0, x, contrast=1)
    ratio = (y * x).sum(dim=(1, 2, 3)) / x.square().sum(dim=(1, 2, 3))
    assert torch.allclose(y, x * ratio.reshape(-1, 1, 1, 1), atol=1e-5) and (ratio > 0).all()
    # hue: rotation about the luma axis keeps luma and the chroma norm.
    y = run_pipe(1.0, x, hue=1)
    assert torch.allclose(mean(y), mean(x), atol=1e-5)
    assert torch.allclose((y - mean(y)).norm(dim=1), (x - mean(x)).norm(dim=1), atol=1e-4)
    # saturation: luma kept, chroma scaled by one factor per sample.
    y = run_pipe(1.0, x, saturation=1)
    assert torch.allclose(mean(y), mean(x), atol=1e-5)
    # lumaflip: luma negated (or kept), chroma kept.
    y = run_pipe(1.0, x, lumaflip=1)
    assert torch.allclose(y - mean(y), x - mean(x), atol=1e-5)
    flipped = (mean(y) + mean(x)).abs().amax(dim=(1, 2, 3)) < 1e-5
    kept = (mean(y) - mean(x)).abs().amax(dim=(1, 2, 3)) < 1e-5
    assert (flipped | kept).all() and flipped.any() and kept.any()


def test_greyscale_brightness_adds_a_constant():
    x = smooth_images(channels=1)
    d = run_pipe(1.0, x, brightness=1) - x
    assert (d - d.mean(dim=(1, 2, 3), keepdim=True)).abs().max() < 1e-5


def test_octave_filter_bank_sums_to_an_impulse_and_splits_frequencies():
    bank = augment.octave_filter_bank(augment.WAVELETS['sym2'], 4)
    impulse = np.zeros(bank.shape[1])
    impulse[bank.shape[1] // 2] = 1
    assert np.allclose(bank.sum(axis=0), impulse, atol=1e-9)
    # Frequency responses: band 0 passes DC, the last band passes Nyquist.
    taps = np.arange(bank.shape[1]) - bank.shape[1] // 2
    dc = bank.sum(axis=1)
    nyquist = (bank * np.cos(np.pi * taps)).sum(axis=1)
    assert np.allclose(dc, [1, 0, 0, 0], atol=1e-9)
    assert np.allclose(nyquist, [0, 0, 0, 1], atol=1e-9)


def test_noise_and_cutout():
    x = smooth_images() + 2.0  # keep every pixel away from zero to see the cutout
    d = run_pipe(1.0, x, noise=1) - x
    assert (d.std(dim=(1, 2, 3)) > 0).all() and d.std() < 0.5   # noise_std 0.1 * |N(0,1)|
    y = run_pipe(1.0, x, cutout=1)
    zero = (y == 0)
    assert torch.equal(y[~zero], x[~zero])
    fraction = zero.float().mean(dim=(1, 2, 3))
    assert (fraction > 0).all() and (fraction <= 0.25 + 1e-6).all()  # a square of half the size at most


def test_probabilities_scale_with_p():
    pipe = AugmentPipe(rotate=1, xflip=1)
    pipe.p.fill_(0.5)
    torch.manual_seed(0)
    n = 20000
    # xflip alone: P(flip) = 0.5 (coin) * p.
    pipe_flip = AugmentPipe(xflip=1)
    pipe_flip.p.fill_(0.5)
    G = pipe_flip._geometric_matrix(n, 32, 32, 'cpu')
    assert abs((G[:, 0, 0] < 0).float().mean().item() - 0.25) < 0.02
    # rotate: two draws, each with 1 - sqrt(1 - p); at least one rotation with probability p.
    pipe_rot = AugmentPipe(rotate=1)
    pipe_rot.p.fill_(0.5)
    G = pipe_rot._geometric_matrix(n, 32, 32, 'cpu')
    rotated = (G[:, 0, 1].abs() > 0)
    assert abs(rotated.float().mean().item() - 0.5) < 0.02


def test_presets_match_upstream():
    blit = {'xflip', 'rotate90', 'xint'}
    geom = {'scale', 'rotate', 'aniso', 'xfrac'}
    color = {'brightness', 'contrast', 'lumaflip', 'hue', 'saturation'}
    expected = {
        'blit': blit, 'geom': geom, 'color': color, 'filter': {'imgfilter'}, 'noise': {'noise'},
        'cutout': {'cutout'}, 'bg': blit | geom, 'bgc': blit | geom | color,
        'bgcf': blit | geom | color | {'imgfilter'}, 'bgcfn': blit | geom | color | {'imgfilter', 'noise'},
        'bgcfnc': blit | geom | color | {'imgfilter', 'noise', 'cutout'},
    }
    assert set(AUGPIPE_SPECS) == set(expected)
    for name, enabled in expected.items():
        assert {k for k, v in AUGPIPE_SPECS[name].items() if v == 1} == enabled, name
        assert all(v == 1 for v in AUGPIPE_SPECS[name].values())


def test_default_strengths_match_upstream():
    pipe = AugmentPipe()
    assert (pipe.xint_max, pipe.scale_std, pipe.rotate_max, pipe.aniso_std, pipe.xfrac_std) == (0.125, 0.2, 1, 0.2, 0.125)
    assert (pipe.brightness_std, pipe.contrast_std, pipe.hue_max, pipe.saturation_std) == (0.2, 0.5, 1, 1)
    assert (pipe.imgfilter_bands, pipe.imgfilter_std, pipe.noise_std, pipe.cutout_size) == ([1, 1, 1, 1], 1, 0.1, 0.5)
    assert list(pipe.state_dict()) == ['p']  # p is the only state (a buffer)


class _TinyD(torch.nn.Module):
    def __init__(self, channels=3):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8 * 16 * 16, 1)

    def forward(self, x):
        return self.fc(F.softplus(self.conv(x)).flatten(1))  # smooth: R1 reaches every weight


def _r1(D, images, pipe):
    x = images.detach().requires_grad_(True)
    logits = D(pipe(x) if pipe is not None else x)
    (g,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    return g.square().sum(dim=(1, 2, 3)).mean()


def test_r1_double_backward_through_full_pipe():
    torch.manual_seed(0)
    D = _TinyD()
    x = torch.randn(4, 3, 16, 16)
    pipe = AugmentPipe(**AUGPIPE_SPECS['bgcfnc'])
    pipe.p.fill_(1.0)
    penalty = _r1(D, x, pipe)
    penalty.backward()
    # R1 does not depend on the last bias; every weight must receive a finite, non-zero gradient.
    grads = [D.conv.weight.grad, D.conv.bias.grad, D.fc.weight.grad]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
    # At p=0 the pipe is the identity, so R1 and its gradients equal those without any pipe.
    pipe.p.fill_(0.0)
    D.zero_grad()
    a = _r1(D, x, pipe)
    a.backward()
    ga = [None if p.grad is None else p.grad.clone() for p in D.parameters()]
    D.zero_grad()
    b = _r1(D, x, None)
    b.backward()
    assert torch.allclose(a, b)
    for before, param in zip(ga, D.parameters()):
        assert (before is None) == (param.grad is None)
        assert before is None or torch.allclose(before, param.grad)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match='images'):
        AugmentPipe(xflip=1)(torch.zeros(2, 4, 8, 8))
