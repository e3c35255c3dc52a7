"""An independent judge of digit samples: does a sample sit as close to a real digit as real digits sit to
each other? Nearest neighbours in pixel space; no classifier, nothing trained.

    python bench/judge.py runs/main/baseline/samples-1400.png [more grids ...] [--tile 32]

The space: every image (a sample, or a real digit as the training data holds it: scikit-learn's 8x8 digits
brought to the tile size by the project's data loader, `vendor.common.datasets.load_dataset("digits")`) is made
grey (mean of its channels), brought back to the digits' native 8x8 by averaging each (tile/8)x(tile/8) block,
and scaled to [0, 1]; distance is Euclidean over those 64 values. Real digits and samples go through the same
steps, so a sample that reproduces a training image exactly has distance 0 to it.

The bar: for every real digit, the distance to its nearest OTHER real digit (leave-one-out over all 1,797);
the threshold is the 90th percentile of those distances (90 % of real digits have another real digit at
least that close). A sample "sits as close to a real digit as real digits sit to each other" when its
distance to the nearest real digit (all 1,797) is at most that threshold. The share of such samples is the
judge's verdict. Measured (bench/judge.py's Judge, tests/bench/test_judge.py): real digits held out of an 80 %
reference 0.91 (about 0.9 by construction), uniform noise 0, 50/50 pixel blends of two different digits 0.31
(a blend often lies as close to some digit as digits lie to each other: the judge reads closeness in pixels,
not which digit it is; the digits classifier's recognisable share is the check for that).

It reads closeness, not novelty: a generator that copies its training digits scores 1.0. Sample grids are
cut into tile x tile cells (SNGAN / ProGAN / AutoGAN grids have no padding); empty cells of a grid that is not
full are black and count as samples far from every digit.
"""
from __future__ import annotations

import argparse
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NATIVE = 8            # the digits' own resolution: the judge's space
QUANTILE = 0.9        # the share of real digits whose nearest other real digit is within the threshold


def to_space(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 [N, C, H, W] (H == W, a multiple of 8) -> float64 [N, 64]: grey, 8x8 block means, in [0, 1]."""
    x = np.asarray(images_uint8)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[2] != x.shape[3] \
            or x.shape[2] % NATIVE:
        raise ValueError(f"judge: images must be uint8 [N, 1|3, H, H] with H a multiple of {NATIVE}, "
                         f"got {x.dtype} {x.shape}")
    n, _, h, _ = x.shape
    f = h // NATIVE
    grey = x.astype(np.float64).mean(axis=1) / 255.0
    return grey.reshape(n, NATIVE, f, NATIVE, f).mean(axis=(2, 4)).reshape(n, NATIVE * NATIVE)


def nearest_distances(points: np.ndarray, reference: np.ndarray, exclude_self: bool = False) -> np.ndarray:
    """Euclidean distance of each row of `points` to its nearest row of `reference` (float64); with
    exclude_self (points is reference), each row's own entry is left out."""
    p, r = np.asarray(points, np.float64), np.asarray(reference, np.float64)
    d2 = (p * p).sum(1)[:, None] + (r * r).sum(1)[None, :] - 2.0 * p @ r.T
    if exclude_self:
        np.fill_diagonal(d2, np.inf)
    return np.sqrt(np.maximum(d2.min(axis=1), 0.0))


class Judge:
    """Reference digits (uint8 [N, C, tile, tile]) -> the threshold; share() of any images of the same tile."""

    def __init__(self, real_uint8: np.ndarray, quantile: float = QUANTILE):
        if not 0.0 < quantile <= 1.0:
            raise ValueError(f"judge: quantile must be in (0, 1], got {quantile}")
        self.tile = int(real_uint8.shape[-1])
        self.reference = to_space(real_uint8)
        if len(self.reference) < 2:
            raise ValueError("judge: need at least two reference digits")
        self.real_nn = nearest_distances(self.reference, self.reference, exclude_self=True)
        self.threshold = float(np.quantile(self.real_nn, quantile))

    def distances(self, images_uint8: np.ndarray) -> np.ndarray:
        x = np.asarray(images_uint8)
        if x.shape[-1] != self.tile:
            raise ValueError(f"judge: images are {x.shape[-1]} px, the reference digits {self.tile} px")
        return nearest_distances(to_space(x), self.reference)

    def share(self, images_uint8: np.ndarray) -> float:
        return float(np.mean(self.distances(images_uint8) <= self.threshold))


@lru_cache(maxsize=4)
def digits_judge(tile: int = 32) -> Judge:
    """The judge over all 1,797 built-in digits, as the data loader gives them at `tile` px."""
    sys.path.insert(0, str(ROOT))
    from vendor.common.datasets import load_dataset
    return Judge(load_dataset("digits", resolution=tile).images_uint8())


def grid_tiles(path, tile: int) -> np.ndarray:
    """A sample grid PNG cut into its tile x tile cells, row by row: uint8 [N, C, tile, tile]."""
    sys.path.insert(0, str(ROOT))
    from vendor.common.images import open_image
    with open(path, "rb") as f, open_image(f, str(path)) as im:
        im = im.convert("RGB") if im.mode not in ("L", "RGB") else im
        a = np.asarray(im)
    a = a[:, :, None] if a.ndim == 2 else a
    h, w, c = a.shape
    if h % tile or w % tile:
        raise ValueError(f"judge: {path}: {w}x{h} px is not a grid of {tile} px cells")
    cells = a.reshape(h // tile, tile, w // tile, tile, c).transpose(0, 2, 4, 1, 3)
    return np.ascontiguousarray(cells.reshape(-1, c, tile, tile))


def judge_grid(path, tile: int = 32) -> float:
    """Share of the grid's samples that sit as close to a real digit as real digits sit to each other."""
    return digits_judge(tile).share(grid_tiles(path, tile))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("grids", nargs="+", help="sample grid PNGs (cells of --tile px, no padding)")
    ap.add_argument("--tile", type=int, default=32, help="cell size in px, a multiple of 8 (default 32)")
    args = ap.parse_args(argv)
    if args.tile < NATIVE or args.tile % NATIVE:
        ap.error(f"--tile must be a positive multiple of {NATIVE}, got {args.tile}")
    grids = []
    for g in args.grids:  # every grid is read before the reference is built: a bad file fails fast
        try:
            grids.append((g, grid_tiles(g, args.tile)))
        except (OSError, ValueError) as e:
            print(f"judge: {g}: {e}", file=sys.stderr)
            return 2
    judge = digits_judge(args.tile)
    print(f"threshold {judge.threshold:.4f} (90th percentile of real digits' nearest-other-digit distance, "
          f"median {np.median(judge.real_nn):.4f})")
    for g, cells in grids:
        print(f"{g}: {judge.share(cells):.1%} of {len(cells)} samples near a real digit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
