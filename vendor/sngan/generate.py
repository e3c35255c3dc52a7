"""Render one PNG per seed from an SNGAN generator file (seeds -> PNGs, flags as StyleGAN2-ADA's generate.py).

    python vendor/sngan/generate.py --network runs/sngan_digits/G_final.pt --seeds 0-7 --outdir out
    python vendor/sngan/generate.py --network RUN/G_sparse.pt --seeds 0,3,10-19 --outdir out_sparse

--network: G_final.pt, a snapshot (snapshot-<step>.pt, last.pt) or a sparse run's G_dense.pt / G_sparse.pt; the
EMA generator when the file has one. The network's sizes (z_dim, ch, image channels) are read from the weights'
shapes. One shared implementation: vendor/common/sampling.py.
"""
from __future__ import annotations

import os
import sys

if __package__:
    from .models import BOTTOM_WIDTH, ResGenerator32
else:  # run as a script (upstream style): the sibling modules live next to this file
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from models import BOTTOM_WIDTH, ResGenerator32
try:
    import vendor.common  # noqa: F401  (installed with `pip install -e .`)
except ImportError:  # running from a source checkout without installing: use the repository root
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
    try:
        import vendor.common  # noqa: F401
    except ImportError:  # e.g. a patched copy run outside the clone after a plain `pip install .`
        print("error: cannot import vendor.common (the project's shared data, metrics and logging code): run "
              "`pip install -e .` in the sparse-gan clone, or run this script from inside the clone", file=sys.stderr)
        sys.exit(2)
from vendor.common.sampling import GenerateError, generate_main

KEYS = ("net_G_ema", "net_G", "G")  # G_final.pt / snapshots (EMA first), then the sparse exports


def build(obj, key, state, args):
    try:
        width, z_dim = state["linear.weight"].shape
        img_channels = state["output.2.weight"].shape[0]
    except (KeyError, ValueError):
        raise GenerateError(f"--network {args.network}: {key!r} is not an SNGAN ResNet generator "
                            f"(no linear / output weights of the expected shapes)") from None
    net = ResGenerator32(z_dim, ch=width // BOTTOM_WIDTH ** 2, img_channels=img_channels)
    net.load_state_dict(state)
    return net, z_dim, net


def main(argv=None):
    return generate_main("Render SNGAN samples, one PNG per seed", KEYS, build, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
