"""Render one PNG per seed from a ProGAN generator file, at the final resolution (seeds -> PNGs, flags as
StyleGAN2-ADA's generate.py).

    python vendor/progan/generate.py --network runs/progan/G_final.pt --seeds 0-7 --outdir out
    python vendor/progan/generate.py --network RUN/G_sparse.pt --seeds 0,3,10-19 --outdir out_sparse

--network: G_final.pt, a snapshot (snapshot-<step>.pt, last.pt; its EMA generator when there is one) or a sparse
run's G_dense.pt / G_sparse.pt. The network's sizes (z_dim, ch, max_res, image channels) are read from the
weights' shapes; images come from the last resolution without fade-in (a snapshot taken during growth renders
what its final layers hold so far). One shared implementation: vendor/common/sampling.py.
"""
from __future__ import annotations

import os
import re
import sys

if __package__:
    from .models import Generator
else:  # run as a script (upstream style): the sibling modules live next to this file
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from models import Generator
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

KEYS = ("G_ema", "net_G", "G")  # snapshots' EMA, G_final.pt / snapshots, the sparse exports


def build(obj, key, state, args):
    try:
        z_dim, ch = state["input_layer.0.conv.weight_orig"].shape[:2]
        img_channels = state["to_rgb_4.conv.weight_orig"].shape[0]
        max_res = max(int(m.group(1)) for k in state if (m := re.fullmatch(r"to_rgb_(\d+)\.conv\.weight_orig", k)))
    except (KeyError, ValueError):
        raise GenerateError(f"--network {args.network}: {key!r} is not a ProGAN generator "
                            f"(no input / to_rgb weights of the expected shapes)") from None
    net = Generator(int(z_dim), int(ch), max_res, img_channels=int(img_channels))
    net.load_state_dict(state)
    return net, int(z_dim), lambda z: net(z, -1, net.max_step)


def main(argv=None):
    return generate_main("Render ProGAN samples at the final resolution, one PNG per seed", KEYS, build, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
