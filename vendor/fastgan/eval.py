"""Generate images (and optionally a metric) from FastGAN checkpoints, as upstream's eval.py.

    python vendor/fastgan/eval.py --ckpt train_results/test1/models/50000.pth --n_sample 5000 --dist out
    python vendor/fastgan/eval.py --artifacts train_results/test1 --start_iter 4 --end_iter 5   # 40000, 50000
    python vendor/fastgan/eval.py --ckpt run/G_sparse.pt --metric fid --path DATA --detector INCEPTION

Reads upstream's models/{it}.pth ({g, d}, EMA weights) and models/all_{it}.pth (its `g`), with or without
DataParallel's `module.` prefix, our snapshots (their EMA weights) and G_sparse.pt / G_dense.pt of patched runs,
all through torch.load(weights_only=True). The generator's size, width and nz are read from the weights unless
given. Images go to <dist>/eval_<it>/img/<n>.png resized to --size; like upstream, G runs in train mode
(batch statistics) unless --eval_mode.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

if __package__:
    from . import operation as op
    from .models import Generator
else:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import operation as op
    from models import Generator
from vendor.common import checks, flags
from vendor.common.runlog import SnapshotError, atomic_write, images_to_uint8


def build_argparser():
    p = argparse.ArgumentParser(description="FastGAN image generation / evaluation",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", default=None, help="one checkpoint file (else --artifacts with --start/end_iter)")
    p.add_argument("--artifacts", default=".", help="run folder holding models/{it}.pth")
    p.add_argument("--cuda", type=int, default=0, help="unused (as upstream); see --device")
    p.add_argument("--start_iter", type=int, default=6)
    p.add_argument("--end_iter", type=int, default=10)
    p.add_argument("--multiplier", type=int, default=10000, help="iteration = multiplier * i")
    p.add_argument("--dist", default=".", help="output folder")
    p.add_argument("--size", type=int, default=256, help="saved image size")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--n_sample", type=int, default=2000)
    p.add_argument("--im_size", type=int, default=None, help="default: from the weights")
    p.add_argument("--ngf", type=int, default=None, help="default: from the weights")
    p.add_argument("--nz", type=int, default=None, help="default: from the weights")
    p.add_argument("--tanh_all", action="store_true")
    p.add_argument("--eval_mode", action="store_true", help="BatchNorm running statistics (upstream: batch stats)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--metric", default=None, help="also compute this metric (vendor.common.metrics) vs --path")
    p.add_argument("--path", default=None, help="reference images for --metric")
    p.add_argument("--detector", default=None)
    p.add_argument("--metric_cache", default=None)
    p.add_argument("--no_images", action="store_true", help="compute --metric only")
    return p


def generator_weights(path: str) -> tuple[dict, dict]:
    """(G state_dict with the EMA weights, extras) from any checkpoint kind this tree knows."""
    state = op.load_checkpoint(path)
    if state["kind"] == "ours":
        try:
            names, ema = checks.require(state, "param_names"), checks.require(state, "g_ema")
            if not isinstance(state["netG"], dict) or not isinstance(names, list) or not isinstance(ema, list) \
                    or len(names) != len(ema) or not all(isinstance(n, str) and n in state["netG"] for n in names):
                raise checks.CheckpointError("entries 'param_names' and 'g_ema' do not name netG's parameters")
        except checks.CheckpointError as error:
            raise SnapshotError(str(checks.in_file(path, error))) from None
        g = dict(state["netG"])
        for name, value in zip(names, ema):
            g[name] = value
        return g, {"lpips_untrained": state.get("lpips_untrained", False)}
    if state["kind"] == "upstream_all":  # its `g` is the raw G; the EMA list follows parameters() order
        return state["g"], {"ema": state["g_ema"]}
    return state["g"], {"lpips_untrained": state.get("lpips_untrained", False)}


def infer_config(g: dict) -> dict:
    if not isinstance(g, dict):
        raise SnapshotError(f"entry 'g' is a {type(g).__name__}, not a FastGAN generator state_dict")
    for key, dims in (("init.init.0.weight_orig", 1), ("to_128.weight_orig", 2)):
        if key not in g:
            raise SnapshotError(f"not a FastGAN generator state_dict (missing {key!r})")
        if not isinstance(g[key], torch.Tensor) or g[key].dim() < dims:
            raise SnapshotError(f"entry 'g.{key}' is not a FastGAN weight (a tensor of {dims}+ dimensions)")
    nz = g["init.init.0.weight_orig"].shape[0]
    ngf = g["to_128.weight_orig"].shape[1]
    im_size = 1024 if "feat_1024.1.weight_orig" in g else 512 if "feat_512.1.weight_orig" in g else 256
    return {"nz": int(nz), "ngf": int(ngf), "im_size": im_size}


def build_generator(path: str, args, device) -> tuple[Generator, dict]:
    g, extra = generator_weights(path)
    try:
        config = infer_config(g)
    except SnapshotError as error:
        raise SnapshotError(f"{path}: {error}") from None
    for key in ("nz", "ngf", "im_size"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    net = Generator(ngf=config["ngf"], nz=config["nz"], im_size=config["im_size"], tanh_all=args.tanh_all)
    try:  # shapes, dtypes and finite values before anything is loaded (a scalar would broadcast silently)
        checks.module_state(g, net, "g")
        if "ema" in extra:
            checks.tensor_list_like(extra["ema"], list(net.parameters()), "g_ema")
    except checks.CheckpointError as error:
        raise SnapshotError(f"{path}: weights do not fit Generator({config}): {error}") from None
    try:
        net.load_state_dict(g)
    except RuntimeError as error:
        raise SnapshotError(f"{path}: weights do not fit Generator({config}): {error}") from None
    if "ema" in extra:
        op.load_params(net, extra["ema"])
    net.to(device)
    net.train(not args.eval_mode)
    return net, {**config, **extra}


def save_png(image_uint8: np.ndarray, path: str) -> None:
    from PIL import Image

    Image.fromarray(image_uint8.transpose(1, 2, 0)).save(path, format="PNG")


def check_metric(args, parser):
    """--metric, its detector and the --path images are checked before any image is written; returns the
    reference dataset (at the first checkpoint's size when it can be read from --im_size, else 256)."""
    from vendor.common.datasets import DatasetError, load_dataset
    from vendor.common.metrics import INCEPTION_URL, VGG16_URL, MetricError, get_metric_spec
    from vendor.common.metrics.detectors import resolve_detector_file

    try:
        spec = get_metric_spec(args.metric)
    except MetricError as error:
        parser.error(f"--metric: {error}")
    if args.n_sample < 2:
        parser.error(f"--n_sample must be >= 2 with --metric, got {args.n_sample}")
    if spec.is_standard:
        if args.detector is None:
            args.detector = INCEPTION_URL if spec.space == "inception" else VGG16_URL
        try:
            resolve_detector_file(args.detector, args.metric_cache)
        except MetricError as error:
            parser.error(f"--detector: {error}")
    try:
        return load_dataset(args.path, resolution=args.im_size or 256, channels=3)
    except DatasetError as error:
        parser.error(f"--path: {error}")


def main(argv=None):
    parser = build_argparser()
    args = parser.parse_args(argv)
    for name in ("size", "batch", "n_sample", "multiplier"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if args.metric and not args.path:
        parser.error("--metric needs --path (the reference images)")
    flags.check(parser.error, flags.seed, args.seed, "--seed")
    device = flags.check(parser.error, flags.device, args.device, "--device")
    if not args.no_images:
        flags.check(parser.error, flags.out_dir, args.dist, "--dist")
    for name in ("im_size", "ngf", "nz"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    reference = check_metric(args, parser) if args.metric else None
    if args.ckpt is None and args.end_iter < args.start_iter:
        parser.error(f"--end_iter {args.end_iter} is below --start_iter {args.start_iter}: no checkpoint to read")
    if args.ckpt is not None:
        paths = [args.ckpt]
    else:
        paths = [os.path.join(args.artifacts, "models", f"{args.multiplier * i}.pth")
                 for i in range(args.start_iter, args.end_iter + 1)]
    for path in paths:
        if not os.path.isfile(path):
            parser.error(f"checkpoint not found: {path}")
    results = []
    for path in paths:
        try:
            net, config = build_generator(path, args, device)
        except SnapshotError as error:
            parser.error(str(error))
        label = os.path.splitext(os.path.basename(path))[0]
        torch.manual_seed(args.seed)

        @torch.no_grad()
        def G_sample(n):
            return net(torch.randn(n, config["nz"], device=device))[0].clamp(-1, 1)

        if not args.no_images:
            folder = os.path.join(args.dist, f"eval_{label}", "img")
            os.makedirs(folder, exist_ok=True)
            done = 0
            while done < args.n_sample:
                count = min(args.batch, args.n_sample - done)
                images = F.interpolate(G_sample(count), size=args.size)
                for j, image in enumerate(images_to_uint8(images)):
                    atomic_write(os.path.join(folder, f"{done + j}.png"),
                                 lambda tmp, im=image: save_png(im, tmp))
                done += count
            print(f"{path}: {done} images -> {folder}", flush=True)
        if args.metric:
            from vendor.common.datasets import DatasetError, load_dataset
            from vendor.common.metrics import compute_metric

            try:
                dataset = reference if reference.resolution == config["im_size"] else \
                    load_dataset(args.path, resolution=config["im_size"], channels=3)
            except DatasetError as error:
                parser.error(f"--path: {error}")
            value = compute_metric(args.metric, G_sample, dataset, num_gen=args.n_sample, batch=args.batch,
                                   device=str(device), detector=args.detector, cache_dir=args.metric_cache)
            first = float(next(iter(value.values())))
            note = "  [UNTRAINED LPIPS run]" if config.get("lpips_untrained") else ""
            print(f"{path}: {args.metric} {first:.4f}{note}", flush=True)
            results.append((path, first))
    return 0


if __name__ == "__main__":
    sys.exit(main())
