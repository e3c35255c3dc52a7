"""Render one PNG per seed from an AutoGAN generator file (seeds -> PNGs, flags as StyleGAN2-ADA's generate.py).

    python vendor/autogan/generate.py --network logs/autogan_cifar10_a/Model/checkpoint.pth --seeds 0-7 --outdir out
    python vendor/autogan/generate.py --network RUN/G_sparse.pt --seeds 0,3,10-19 --outdir out_sparse

--network: a checkpoint (Model/checkpoint*.pth; its averaged generator, as upstream evaluates) or a sparse run's
G_dense.pt / G_sparse.pt. The architecture is the file's `gen_model` (else --gen_model); latent_dim, gf_dim,
bottom_width and the image channels are read from the weights' shapes. One shared implementation:
vendor/common/sampling.py.
"""
from __future__ import annotations

import math
import os
import sys

if __package__:
    from .models import GEN_MODELS, Generator
else:  # run as a script (upstream style): the sibling modules live next to this file
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from models import GEN_MODELS, Generator
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

KEYS = ("avg_gen_state_dict", "gen_state_dict")  # the averaged G first (checkpoints and the sparse exports)


def add_flags(parser):
    parser.add_argument("--gen_model", default=None, choices=GEN_MODELS,
                        help="generator architecture when the file does not name one (its `gen_model` wins)")


def build(obj, key, state, args):
    arch = obj.get("gen_model", args.gen_model)
    if arch not in GEN_MODELS:
        raise GenerateError(f"--network {args.network}: names no known gen_model ({arch!r}); pass --gen_model "
                            f"one of {', '.join(GEN_MODELS)}")
    try:
        area_times_width, latent_dim = state["l1.weight"].shape
        gf_dim, img_channels = state["to_rgb.0.weight"].shape[0], state["to_rgb.2.weight"].shape[0]
    except (KeyError, ValueError):
        raise GenerateError(f"--network {args.network}: {key!r} is not an AutoGAN generator "
                            f"(no l1 / to_rgb weights of the expected shapes)") from None
    bottom_width = math.isqrt(area_times_width // gf_dim)
    net = Generator(arch, int(latent_dim), int(gf_dim), bottom_width, int(img_channels))
    net.load_state_dict(state)
    return net, int(latent_dim), net


def main(argv=None):
    return generate_main("Render AutoGAN samples, one PNG per seed", KEYS, build, add_flags=add_flags, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
