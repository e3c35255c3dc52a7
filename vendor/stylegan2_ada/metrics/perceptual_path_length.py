"""Perceptual path length (Karras et al. 2019), upstream's ppl_* metrics.

Pairs of latents are interpolated in Z (spherical) or W (linear), at a random point t ('full') or at
t = 0 ('end'), and the two images at t and t + epsilon are compared with the LPIPS distance of the
VGG16 detector (upstream's TorchScript `vgg16.pt`, called with return_lpips=True). The distances are
scaled by 1/epsilon^2 and averaged after dropping values outside the 1st..99th percentiles.
'crop' keeps the central face region (upstream's FFHQ crop); images above 256 px are box-downsampled
to 256 first, greyscale is repeated to 3 channels.
"""
import copy

import numpy as np
import torch

# name -> (space, sampling, crop); upstream: 50,000 samples, epsilon 1e-4, batches of 2
PPL_SPECS = {
    'ppl_zfull': ('z', 'full', True),
    'ppl_wfull': ('w', 'full', True),
    'ppl_zend': ('z', 'end', True),
    'ppl_wend': ('w', 'end', True),
    'ppl2_wend': ('w', 'end', False),
}
NUM_SAMPLES = 50000
EPSILON = 1e-4
BATCH = 2


def slerp(a, b, t):
    """Spherical interpolation between the directions of a and b (rows), t broadcast over rows."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    cos = (a * b).sum(dim=-1, keepdim=True)
    angle = t * torch.acos(cos)
    ortho = b - cos * a
    ortho = ortho / ortho.norm(dim=-1, keepdim=True)
    out = a * torch.cos(angle) + ortho * torch.sin(angle)
    return out / out.norm(dim=-1, keepdim=True)


@torch.no_grad()
def pair_distances(G, vgg16, c, space, sampling, crop, epsilon=EPSILON, generator=None):
    """Scaled LPIPS distances [N] for N = len(c) latent pairs (G is used as is: pass a copy)."""
    device = c.device
    t = torch.rand([c.shape[0]], generator=generator).to(device) * (1 if sampling == 'full' else 0)
    z0, z1 = torch.randn([c.shape[0] * 2, G.z_dim], generator=generator).to(device).chunk(2)
    if space == 'w':
        w0, w1 = G.mapping(z=torch.cat([z0, z1]), c=torch.cat([c, c])).chunk(2)
        wt0 = w0.lerp(w1, t[:, None, None])
        wt1 = w0.lerp(w1, t[:, None, None] + epsilon)
    else:
        zt0 = slerp(z0, z1, t[:, None])
        zt1 = slerp(z0, z1, t[:, None] + epsilon)
        wt0, wt1 = G.mapping(z=torch.cat([zt0, zt1]), c=torch.cat([c, c])).chunk(2)
    for name, buf in G.named_buffers():  # fresh constant noise per pair batch, the same for both images
        if name.endswith('.noise_const'):
            buf.copy_(torch.randn(buf.shape, generator=generator).to(buf.device, buf.dtype))
    img = G.synthesis(ws=torch.cat([wt0, wt1]), noise_mode='const', force_fp32=True)
    if crop:
        if img.shape[2] != img.shape[3]:
            raise ValueError('ppl with crop needs square images')
        e = img.shape[2] // 8
        img = img[:, :, e * 3: e * 7, e * 2: e * 6]
    factor = G.img_resolution // 256
    if factor > 1:
        img = img.reshape([-1, img.shape[1], img.shape[2] // factor, factor, img.shape[3] // factor, factor]).mean([3, 5])
    img = (img + 1) * (255 / 2)
    if G.img_channels == 1:
        img = img.repeat([1, 3, 1, 1])
    lpips0, lpips1 = vgg16(img, resize_images=False, return_lpips=True).chunk(2)
    return (lpips0 - lpips1).square().sum(1) / epsilon ** 2


def trimmed_mean(dist):
    """Mean of the distances between the 1st (lower) and 99th (higher) percentiles, as upstream."""
    dist = np.asarray(dist, dtype=np.float64)
    lo = np.percentile(dist, 1, method='lower')
    hi = np.percentile(dist, 99, method='higher')
    return float(dist[(dist >= lo) & (dist <= hi)].mean())


def compute_ppl(name, G, vgg16, label_fn, num_samples=None, device='cpu', seed=0):
    """PPL `name` (a key of PPL_SPECS) of generator G; label_fn(n) -> float labels [n, c_dim]."""
    space, sampling, crop = PPL_SPECS[name]
    num_samples = NUM_SAMPLES if num_samples is None else int(num_samples)
    G = copy.deepcopy(G).eval().requires_grad_(False).to(device)
    generator = torch.Generator().manual_seed(seed)
    dist = []
    for start in range(0, num_samples, BATCH):
        c = torch.as_tensor(label_fn(min(BATCH, num_samples - start)), dtype=torch.float32, device=device)
        dist.append(pair_distances(G, vgg16, c, space, sampling, crop, generator=generator).cpu())
        if (start // BATCH + 1) % 1000 == 0:
            print(f'{name}: {start + BATCH}/{num_samples} pairs', flush=True)
    return trimmed_mean(torch.cat(dist)[:num_samples].numpy())
