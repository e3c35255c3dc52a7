"""Render one PNG per seed from the G_ema of a network file (flags as in the reference tool).

  python vendor/stylegan2_ada/generate.py --network=runs/00000-.../network-snapshot-000100.pt \
      --seeds=0-7 --trunc=1 --outdir=out
  python vendor/stylegan2_ada/generate.py --network=ffhq.pkl --seeds=0 --outdir=out   # an NVlabs pickle or URL

The file is read by legacy.load_network: nothing in it is executed (see legacy.py).
"""
import os
import re

import click
import numpy as np
import PIL.Image
import torch

import legacy
from vendor.common import flags
from vendor.common.runlog import images_to_uint8


def num_range(text):
    """'1,2,5-10' -> [1, 2, 5, 6, 7, 8, 9, 10]; every seed in [0, 2^32), a range not empty."""
    match = re.fullmatch(r'^(\d+)-(\d+)$', text)
    if match:
        seeds = list(range(int(match.group(1)), int(match.group(2)) + 1))
        if not seeds:
            raise click.BadParameter(f'{text!r} is an empty range (the first seed is above the last)')
    else:
        try:
            seeds = [int(x) for x in text.split(',')]
        except ValueError:
            raise click.BadParameter(f'{text!r} is not a list of seeds like 0,1,4-6') from None
    for seed in (seeds[0], seeds[-1]) if match else seeds:
        try:
            flags.seed(seed, 'seed')
        except flags.FlagError as err:
            raise click.BadParameter(str(err)) from None
    return seeds


def class_label(G, class_idx, device='cpu'):
    """The one-hot label for --class (zeros for an unconditional network); UsageError if it cannot work."""
    label = torch.zeros([1, G.c_dim], device=device)
    if G.c_dim != 0:
        if class_idx is None:
            raise click.UsageError('--class: this network is conditional, so a class index is needed')
        if not 0 <= class_idx < G.c_dim:
            raise click.UsageError(f'--class: must be in [0, {G.c_dim - 1}] for this network')
        label[:, class_idx] = 1
    elif class_idx is not None:
        print('note: the network is unconditional; --class has no effect')
    return label


def generate_images(G, seeds, truncation_psi=1.0, noise_mode='const', class_idx=None, device='cpu', label=None):
    """Yield (seed, uint8 HWC image) for each seed; z is drawn from RandomState(seed) like upstream."""
    if label is None:
        label = class_label(G, class_idx, device)
    for seed in seeds:
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).to(device, torch.float32)
        with torch.no_grad():
            img = G(z, label, truncation_psi=truncation_psi, noise_mode=noise_mode)
        yield seed, images_to_uint8(img)[0].transpose(1, 2, 0)


@click.command()
@click.option('--network', 'network_path', help='Network: our .pt snapshot/export, an NVlabs .pkl or its URL', required=True)
@click.option('--seeds', type=num_range, help='Seeds to render, e.g. 0,3,10-19', required=True)
@click.option('--trunc', 'truncation_psi', type=float, help='Truncation strength psi (1 = none)', default=1, show_default=True)
@click.option('--class', 'class_idx', type=int, help='Class index for conditional networks')
@click.option('--noise-mode', help='Per-pixel noise: fixed buffers, fresh samples or none', type=click.Choice(['const', 'random', 'none']), default='const', show_default=True)
@click.option('--outdir', help='Folder that receives seedNNNN.png files', type=str, required=True, metavar='DIR')
@click.option('--device', help='cuda or cpu [default: cuda if available]', type=click.Choice(['cpu', 'cuda']))
def generate_cli(network_path, seeds, truncation_psi, class_idx, noise_mode, outdir, device):
    """Render images with a trained generator."""
    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    for check, value, flag in ((flags.finite, truncation_psi, '--trunc'), (flags.device, device, '--device'),
                               (flags.out_dir, outdir, '--outdir')):
        try:  # every flag before the network is read or anything is written
            check(value, flag)
        except flags.FlagError as err:
            raise click.UsageError(str(err))
    print(f'Loading networks from "{network_path}"...')
    try:
        G = legacy.generator(legacy.load_network(network_path, device=device))
    except legacy.NetworkFileError as err:
        raise click.BadParameter(str(err), param_hint='--network')
    label = class_label(G, class_idx, device)
    os.makedirs(outdir, exist_ok=True)
    for seed, img in generate_images(G, seeds, truncation_psi, noise_mode, class_idx, device, label=label):
        print(f'seed {seed}')
        mode = 'L' if img.shape[2] == 1 else 'RGB'
        PIL.Image.fromarray(img[:, :, 0] if mode == 'L' else img, mode).save(f'{outdir}/seed{seed:04d}.png')


if __name__ == '__main__':
    generate_cli()  # pylint: disable=no-value-for-parameter
