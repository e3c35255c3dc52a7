"""Seeds -> PNGs for the vendor trees that have no sampling tool upstream (SNGAN, ProGAN, AutoGAN), in the manner
of StyleGAN2-ADA's generate.py: `generate.py --network FILE --seeds 0-7 --outdir DIR` writes DIR/seed0000.png, ...
with z drawn from numpy's RandomState(seed) (the same seed gives the same image on any machine and batch).

FILE is any file a run of the tree writes that holds a generator: a training snapshot, the final generator, or a
sparse run's export (G_dense.pt / G_sparse.pt: {key: state_dict, "kind", "method", ...}, the key being the one
the vendor uses). Read with weights_only=True (vendor.common.safeload); nothing in it is executed. Of the
generators a file holds, the averaged (EMA) one is used when there is one, as the trees' sample grids and metrics
do. Each tree's generate.py is a thin script: its network class and where the file keeps its settings.

Errors (a bad flag, a file that holds no generator of this tree, weights that do not fit) are one line, exit 2,
before any PNG is written.
"""
from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from typing import Callable, Sequence

import numpy as np
import torch

from vendor.common import flags
from vendor.common.runlog import SnapshotError, load_snapshot, save_image_grid

__all__ = ["GenerateError", "parse_seeds", "find_generator_state", "latents", "render", "generate_main"]

MAX_SEEDS = 100000  # one PNG per seed: more is a typo, not a request


class GenerateError(ValueError):
    """A file or flag value generate.py cannot work with; the message names it."""


def parse_seeds(text: str) -> list[int]:
    """'0-7' / '1,2,5-10' -> seeds in that order (ranges inclusive); every seed in [0, 2^32)."""
    seeds = []
    for part in str(text).split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)-(\d+)", part)
        if match:
            first, last = int(match.group(1)), int(match.group(2))
            if first > last:
                raise GenerateError(f"--seeds: {part!r} is an empty range (the first seed is above the last)")
            if last - first >= MAX_SEEDS:
                raise GenerateError(f"--seeds: {part!r} asks for more than {MAX_SEEDS} images")
            seeds.extend(range(first, last + 1))
        elif re.fullmatch(r"\d+", part):
            seeds.append(int(part))
        else:
            raise GenerateError(f"--seeds: {text!r} is not a list of seeds like 0,3,10-19")
    if len(seeds) > MAX_SEEDS:
        raise GenerateError(f"--seeds: {len(seeds)} seeds, at most {MAX_SEEDS}")
    for seed in seeds:
        try:
            flags.seed(seed, "--seeds")
        except flags.FlagError as error:
            raise GenerateError(str(error)) from None
    return seeds


def _is_state_dict(value) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def find_generator_state(obj, keys: Sequence[str], path: str) -> tuple[str, dict]:
    """(key, state_dict) of the first of `keys` under which the loaded file `obj` holds a state_dict; a
    GenerateError naming the file and the keys looked for otherwise."""
    if not isinstance(obj, Mapping):
        raise GenerateError(f"--network {path}: holds a {type(obj).__name__}, not a dict with a generator")
    for key in keys:
        if _is_state_dict(obj.get(key)):
            return key, dict(obj[key])
    raise GenerateError(f"--network {path}: no generator in it (looked for {', '.join(keys)}; "
                        f"the file has {', '.join(map(str, list(obj)[:8])) or 'nothing'})")


def latents(seeds: Sequence[int], z_dim: int) -> torch.Tensor:
    """[len(seeds), z_dim] float32: row i is RandomState(seeds[i]).randn(z_dim), as StyleGAN2-ADA's generate.py."""
    return torch.from_numpy(np.stack([np.random.RandomState(s).randn(z_dim) for s in seeds])).to(torch.float32)


@torch.no_grad()
def render(G_fn: Callable[[torch.Tensor], torch.Tensor], z_dim: int, seeds: Sequence[int], outdir: str,
           device="cpu", batch: int = 16) -> list[str]:
    """Write outdir/seed<NNNN>.png for each seed (G_fn(z) -> [n, C, H, W] in [-1, 1]); returns the paths."""
    os.makedirs(outdir, exist_ok=True)
    paths = []
    for start in range(0, len(seeds), batch):
        part = list(seeds[start:start + batch])
        images = G_fn(latents(part, z_dim).to(device)).float().cpu()
        for seed, image in zip(part, images):
            path = os.path.join(outdir, f"seed{seed:04d}.png")
            save_image_grid(image[None], path, grid=(1, 1))
            paths.append(path)
    return paths


def generate_main(description: str, keys: Sequence[str],
                  build: Callable[[dict, str, dict, argparse.Namespace], tuple[torch.nn.Module, int, Callable]],
                  add_flags: Callable[[argparse.ArgumentParser], None] | None = None, argv=None) -> int:
    """The whole generate.py of a tree. `keys`: where its files keep a generator, in order of preference (EMA
    first). `build(file_dict, key, state_dict, args)` -> (network with the weights loaded, z_dim, z -> images);
    it raises GenerateError (or the network's load_state_dict RuntimeError) when the weights do not fit.
    `add_flags` adds the tree's own flags (e.g. network settings a file may lack)."""
    parser = flags.ArgumentParser(description=description,
                                  formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--network", required=True, metavar="FILE",
                        help="a training snapshot, the final generator file or a sparse run's G_dense.pt / "
                             "G_sparse.pt (read with weights_only=True)")
    parser.add_argument("--seeds", required=True, help="seeds to render, e.g. 0,3,10-19 (one PNG each)")
    parser.add_argument("--outdir", required=True, metavar="DIR", help="folder that receives seedNNNN.png files")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device to run the generator on")
    parser.add_argument("--batch", type=int, default=16, help="images per generator call")
    if add_flags is not None:
        add_flags(parser)
    args = parser.parse_args(argv)
    try:  # every flag before the file is read or anything is written
        seeds = parse_seeds(args.seeds)
        device = flags.device(args.device, "--device")
        flags.out_dir(args.outdir, "--outdir")
        if args.batch < 1:
            raise GenerateError(f"--batch must be >= 1, got {args.batch}")
    except (GenerateError, flags.FlagError) as error:
        parser.error(str(error))
    try:
        obj = load_snapshot(args.network)
    except SnapshotError as error:
        parser.error(f"--network: {error}")
    try:
        key, state = find_generator_state(obj, keys, args.network)
        net, z_dim, G_fn = build(obj, key, state, args)
    except GenerateError as error:
        parser.error(str(error))
    except (RuntimeError, ValueError, KeyError) as error:  # load_state_dict: missing / unexpected / shape
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        parser.error(f"--network {args.network}: its {key!r} does not fit this tree's generator: {first}")
    net.to(device).eval()
    print(f"{args.network}: {key}, z_dim {z_dim}; {len(seeds)} image(s) to {args.outdir}", flush=True)
    render(G_fn, z_dim, seeds, args.outdir, device, args.batch)
    return 0
