"""Train FastGAN (Liu et al., ICLR 2021): the unmodified baseline, upstream's flags and defaults.

    python vendor/fastgan/train.py --path DIR --im_size 256 --name obama --lpips_vgg VGG --lpips_lin LIN
    python vendor/fastgan/train.py --path digits --im_size 256 --iter 20 --batch_size 2 --ngf 8 --ndf 8 \
        --lpips_untrained --lpips_width_div 16 --device cpu          # CPU smoke run (random LPIPS: labelled)

Upstream flags: --path, --output_path ./, --name test1, --iter 50000, --start_iter 0, --batch_size 8,
--im_size 1024, --ckpt (upstream's models/all_{it}.pth to continue from), --workers, --save_interval 100
(images every 10x, checkpoints every 50x and at the end, as upstream), --cuda (unused, as upstream). Fixed in
upstream's code and flags here with the same defaults: --nz 256, --ngf 64, --ndf 64, --lr 2e-4, --beta1 0.5,
--policy color,translation. Additions: --device, --data-ratio, --resume (our snapshot), --metrics,
--snapshot_interval,
--eval_interval, --tanh_all, the LPIPS weight flags, --seed, --tensorboard.

Upstream quirks kept: tanh only at 1024 (--tanh_all applies it at every size); the generator samples in train
mode (batch statistics) for grids and metrics; the EMA is a plain parameter list (no G_ema module).
Not kept: DataParallel and CUDA are not hard-coded; the perceptual loss runs on --device.

Run folder <output_path>/train_results/<name>/: stats.jsonl (one JSON object per tick), metric-<name>.jsonl,
images/{it}.png and rec_{it}.png grids, models/{it}.pth and models/all_{it}.pth (upstream's layout),
snapshot-{it}.pt and last.pt (ours, exact resume). The loop is kept flat: patches/fastgan.patch adds one line
next to each named place.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F

if __package__:
    from . import operation as op
    from .models import SIZES, Discriminator, Generator, crop_image_by_part, weights_init
else:  # run as a script (upstream style): the sibling modules live next to this file
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import operation as op
    from models import SIZES, Discriminator, Generator, crop_image_by_part, weights_init
from vendor.common import checks, flags, runlog
from vendor.common.datasets import DatasetError, load_dataset
from vendor.common.diffaug import DiffAugment, parse_policy
from vendor.common.lpips import LPIPSWeightsError, load_lpips
from vendor.common.metric_flags import check_metric_flags, detector_for
from vendor.common.runguard import FiniteGuard, run_cli
from vendor.common.runlock import releases_run_dirs
from vendor.common.runlog import (ProgressLine, RunDirError, SnapshotError, StatsWriter, append_jsonl,
                                  prepare_run_dir, save_image_grid, save_snapshot)

UNTRAINED_NOTE = "UNTRAINED LPIPS (random VGG16): smoke run, not FastGAN's loss"


def build_argparser() -> argparse.ArgumentParser:
    p = flags.ArgumentParser(description="FastGAN training", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--path", default="../lmdbs/art_landscape_1k",
                   help="image folder, StyleGAN2-ADA .zip, or 'digits' (CPU runs)")
    p.add_argument("--output_path", default="./", help="run folders go to <output_path>/train_results/<name>")
    p.add_argument("--cuda", type=int, default=0, help="unused (as upstream); see --device")
    p.add_argument("--name", default="test1", help="experiment name")
    p.add_argument("--iter", type=int, default=50000, help="last iteration (iterations start_iter..iter)")
    p.add_argument("--start_iter", type=int, default=0,
                   help="first iteration (upstream's flag; with --ckpt the checkpoint's iteration wins)")
    p.add_argument("--batch_size", type=int, default=8, help="real (and fake) images per iteration")
    p.add_argument("--im_size", type=int, default=1024, choices=SIZES, help="image size of G's output and D's input")
    p.add_argument("--ckpt", default="None", help="upstream models/all_{it}.pth to continue from")
    p.add_argument("--workers", type=int, default=2, help="accepted for upstream compatibility (data is in memory)")
    p.add_argument("--save_interval", type=int, default=100,
                   help="images every 10x this many iterations, checkpoints every 50x and at the end")
    # fixed in upstream's code
    p.add_argument("--nz", type=int, default=256, help="latent size of G's input (fixed in upstream's code)")
    p.add_argument("--ngf", type=int, default=64, help="G's width multiplier (fixed in upstream's code)")
    p.add_argument("--ndf", type=int, default=64, help="D's width multiplier (fixed in upstream's code)")
    p.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate of G and D (fixed in upstream's code)")
    p.add_argument("--beta1", type=float, default=0.5,
                   help="Adam beta1 of G and D; beta2 is 0.999 (fixed in upstream's code)")
    p.add_argument("--policy", default="color,translation", help="DiffAugment policy")
    p.add_argument("--tanh_all", action="store_true", help="tanh on G's outputs at every size (upstream: 1024 only)")
    # additions
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device: cpu, cuda or cuda:N")
    p.add_argument("--data-ratio", "--data_ratio", dest="data_ratio", type=float, default=1.0,
                   help="train on this deterministic fraction (0, 1] of the dataset")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the weights, the data order and the fixed sample latents")
    p.add_argument("--resume", default=None, help="our snapshot (.pt) to continue from exactly")
    p.add_argument("--snapshot_interval", type=int, default=None,
                   help="iterations between checkpoints (ours and upstream's); default 50 x --save_interval")
    p.add_argument("--tick", type=int, default=100, help="iterations per stats tick / progress line")
    p.add_argument("--metrics", default="", type=lambda v: [m for m in v.split(",") if m],
                   help="comma-separated metrics of the EMA G vs the training set, e.g. fid,kid (fid_digits on "
                        "digits); the first one is the run's quality signal")
    p.add_argument("--eval_interval", type=int, default=1000, help="iterations between metric evaluations")
    p.add_argument("--num_images", type=int, default=None, help="generated images per metric (default: its own)")
    p.add_argument("--detector", default=None, help="Inception detector path or URL for standard metrics")
    p.add_argument("--metric_cache", default=None, help="cache folder for detectors, statistics and weights")
    p.add_argument("--lpips_vgg", default=None, help="ImageNet VGG16 state_dict for LPIPS (path or URL; "
                   "default: torchvision's cached vgg16-397923af.pth)")
    p.add_argument("--lpips_lin", default=None, help="LPIPS v0.1 vgg.pth heads (path or URL; default: the copy "
                   "in the installed `lpips` package)")
    p.add_argument("--lpips_untrained", action="store_true",
                   help="smoke runs only: random LPIPS backbone and heads (every output is labelled)")
    p.add_argument("--lpips_width_div", type=int, default=1, help="with --lpips_untrained: VGG widths / N")
    p.add_argument("--tensorboard", action="store_true",
                   help="require TensorBoard events (written to the run folder whenever the tensorboard package "
                        "is installed; with this flag a missing package is an error)")
    return p


def check_args(args, parser) -> None:
    """Reject bad flag values before anything is written."""
    if args.snapshot_interval is None:
        args.snapshot_interval = 50 * args.save_interval
    if args.iter < 0:
        parser.error(f"--iter must be >= 0, got {args.iter}")
    for name in ("batch_size", "save_interval", "snapshot_interval", "nz", "ngf", "ndf", "tick", "eval_interval",
                 "lpips_width_div"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if not 0 <= args.start_iter <= args.iter:
        parser.error(f"--start_iter must be in [0, --iter], got {args.start_iter}")
    if not 0.0 < args.data_ratio <= 1.0:
        parser.error(f"--data-ratio must be in (0, 1], got {args.data_ratio}")
    if args.lpips_width_div != 1 and not args.lpips_untrained:
        parser.error("--lpips_width_div needs --lpips_untrained (no pretrained VGG16 of another width exists)")
    try:
        parse_policy(args.policy)
    except ValueError as error:
        parser.error(f"--policy: {error}")
    args.ckpt = None if args.ckpt in (None, "None", "") else args.ckpt
    if args.ckpt is not None and args.resume is not None:
        parser.error("--ckpt and --resume are exclusive")
    for flag in ("ckpt", "resume"):
        if getattr(args, flag) is not None and not os.path.isfile(getattr(args, flag)):
            parser.error(f"--{flag}: file not found: {getattr(args, flag)}")
    flags.check(parser.error, flags.seed, args.seed, "--seed")
    flags.check(parser.error, flags.finite_positive, args.lr, "--lr")
    flags.check(parser.error, flags.unit_interval, args.beta1, "--beta1")
    flags.check(parser.error, flags.device, args.device, "--device")
    flags.check(parser.error, flags.out_dir, op.get_dir(args)[0], "--output_path/--name")
    if args.tensorboard:
        import importlib.util
        if importlib.util.find_spec("tensorboard") is None:
            parser.error("--tensorboard needs the tensorboard package (pip install tensorboard)")


def train_d(net, percept, data, label="real", part=None):
    """D's loss on one batch (upstream's train_d, without the backward): hinge with random margins, and for
    reals the LPIPS reconstruction losses of the three decoders (targets: the augmented reals at 128)."""
    if label == "real":
        pred, [rec_all, rec_small, rec_part] = net(data, label, part=part)
        err = F.relu(torch.rand_like(pred) * 0.2 + 0.8 - pred).mean()
        rec = (percept(rec_all, F.interpolate(data, rec_all.shape[2])).sum()
               + percept(rec_small, F.interpolate(data, rec_small.shape[2])).sum()
               + percept(rec_part, F.interpolate(crop_image_by_part(data, part), rec_part.shape[2])).sum())
        return err, rec, [rec_all, rec_small, rec_part]
    pred = net(data, label)
    return F.relu(torch.rand_like(pred) * 0.2 + 0.8 + pred).mean()


def build_snapshot(netG, netD, avg_param_G, optG, optD, batches, iteration, nimg, tick, total_sec, args) -> dict:
    """Everything a resumed run needs; tensors and plain containers only (weights_only loading)."""
    return {"netG": netG.state_dict(), "netD": netD.state_dict(), "g_ema": [p.clone() for p in avg_param_G],
            "param_names": [n for n, _ in netG.named_parameters()],
            "opt_g": optG.state_dict(), "opt_d": optD.state_dict(), "iteration": iteration, "nimg": nimg,
            "tick": tick, "total_sec": total_sec, "rng": op.rng_state(), "batches": batches.state_dict(),
            "config": config_of(args), "lpips_untrained": args.lpips_untrained}


def config_of(args) -> dict:
    return {k: getattr(args, k) for k in ("im_size", "nz", "ngf", "ndf", "tanh_all")}


def restore(state: dict, netG, netD, avg_param_G, optG, optD, batches, args) -> tuple:
    """Load ours (exact) or upstream's all_{it}.pth into the live objects; returns (next iteration, nimg, tick,
    total_sec). The EMA tensors are filled in place: whoever holds the list keeps valid references."""
    source = args.resume or args.ckpt
    if state["kind"] == "ours":
        config = state.get("config", {})
        if not isinstance(config, dict):
            raise SnapshotError(f"{source}: entry 'config' is a {type(config).__name__}, expected a dict")
        for key, value in config.items():
            if value != getattr(args, key, None):
                raise SnapshotError(f"{source}: snapshot has {key}={value} but --{key} {getattr(args, key, None)}")
        names = ("netG", "netD", "g_ema", "opt_g", "opt_d")
    elif state["kind"] == "upstream_all":
        names = ("g", "d", "g_ema", "opt_g", "opt_d")
    else:
        raise SnapshotError(f"{source}: a {state['kind']} file holds no optimizer state; resume from "
                            f"models/all_{{it}}.pth or one of our snapshots")
    try:  # every entry checked against the live objects before any is used
        check_state(state, names, netG, netD, avg_param_G, optG, optD, batches)
    except checks.CheckpointError as error:
        raise SnapshotError(str(checks.in_file(source, error))) from None
    g, d, ema, opt_g, opt_d = (state[name] for name in names)
    netG.load_state_dict(g)
    netD.load_state_dict(d)
    if len(ema) != len(avg_param_G):
        raise SnapshotError(f"{source}: EMA list has {len(ema)} tensors, G has {len(avg_param_G)} parameters")
    for avg_p, value in zip(avg_param_G, ema):
        avg_p.copy_(value)
    optG.load_state_dict(opt_g)
    optD.load_state_dict(opt_d)
    if state["kind"] == "upstream_all":  # upstream re-runs iteration it; we continue after it
        return op.upstream_iteration(source) + 1, 0, 0, 0.0
    batches.load_state_dict(state["batches"])
    op.set_rng_state(state["rng"])
    return int(state["iteration"]) + 1, int(state["nimg"]), int(state["tick"]), float(state["total_sec"])


def check_state(state, names, netG, netD, avg_param_G, optG, optD, batches) -> None:
    """Shapes, dtypes and finite values of the networks, EMA list and optimizers; for our snapshots also the
    counters, RNG and sampler state (vendor.common.checks; raises CheckpointError naming the entry)."""
    g, d, ema, opt_g, opt_d = names
    checks.module_state(checks.require(state, g), netG, g)
    checks.module_state(checks.require(state, d), netD, d)
    checks.tensor_list_like(checks.require(state, ema), avg_param_G, ema)
    checks.optimizer_state(checks.require(state, opt_g), optG, opt_g)
    checks.optimizer_state(checks.require(state, opt_d), optD, opt_d)
    if state["kind"] != "ours":
        return
    for key in ("iteration", "nimg", "tick"):
        checks.counter(checks.require(state, key), key)
    checks.seconds(checks.require(state, "total_sec"), "total_sec")
    checks.rng_state(checks.require(state, "rng"), "rng")
    checks.permutation_sampler(checks.require(state, "batches"), len(batches.images), "batches")


def make_sampler(netG, avg_param_G, args, device):
    """G_sample(n) for the metrics: the EMA generator's full-size images, clamped to [-1, 1]."""
    @torch.no_grad()
    def G_sample(n):
        return netG(torch.randn(n, args.nz, device=device))[0].clamp(-1, 1)
    return G_sample


_full_datasets = {}


def metric_reference_dataset(dataset, args):
    """Metrics compare against the whole training set, also when training on a --data-ratio subset."""
    if args.data_ratio == 1.0:
        return dataset
    if args.path not in _full_datasets:
        _full_datasets[args.path] = load_dataset(args.path, resolution=args.im_size, channels=3)
    return _full_datasets[args.path]


def compute_metrics(netG, avg_param_G, dataset, args, device) -> dict:
    """{name: value} of the EMA generator; training RNG and G's own weights are left as they were."""
    from vendor.common.metrics import compute_metric

    saved_rng, backup = op.rng_state(), op.copy_G_params(netG)
    op.load_params(netG, avg_param_G)
    try:
        sampler = make_sampler(netG, avg_param_G, args, device)
        return {name: float(next(iter(compute_metric(
            name, sampler, metric_reference_dataset(dataset, args), num_gen=args.num_images, batch=args.batch_size,
            device=str(device), detector=detector_for(name, args.detector), cache_dir=args.metric_cache).values())))
            for name in args.metrics}
    finally:
        op.load_params(netG, backup)
        op.set_rng_state(saved_rng)


@torch.no_grad()
def save_grids(netG, avg_param_G, fixed_noise, real, recs, images_dir, iteration, suffix) -> None:
    """images/{it}.png (EMA G on fixed latents) and rec_{it}.png (reals at 128 and D's three reconstructions)."""
    saved_rng, backup = op.rng_state(), op.copy_G_params(netG)
    op.load_params(netG, avg_param_G)
    fake = netG(fixed_noise)[0].clamp(-1, 1)
    op.load_params(netG, backup)
    op.set_rng_state(saved_rng)
    save_image_grid(fake, os.path.join(images_dir, f"{iteration}{suffix}.png"), grid=(4, (len(fake) + 3) // 4))
    rows = torch.cat([F.interpolate(real, 128)] + [r.clamp(-1, 1) for r in recs])
    save_image_grid(rows, os.path.join(images_dir, f"rec_{iteration}{suffix}.png"), grid=(len(real), 4))


@releases_run_dirs
def main(argv=None):
    parser = build_argparser()
    args = parser.parse_args(argv)
    check_args(args, parser)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    try:
        dataset = load_dataset(args.path, resolution=args.im_size, channels=3, ratio=args.data_ratio, seed=args.seed)
    except DatasetError as error:
        parser.error(f"--path: {error}")
    if args.metrics:  # after the data: a bad --path is the more basic error
        args.detector = check_metric_flags(
            [("--metrics", name) for name in args.metrics], dataset, parser.error, detector=args.detector,
            cache_dir=args.metric_cache, num_images=args.num_images, data_flag="--path",
            hint="or drop --metrics, or use fid_digits with --path digits")
    try:
        percept = load_lpips(args.lpips_vgg, args.lpips_lin, cache_dir=args.metric_cache,
                             untrained=args.lpips_untrained, width_div=args.lpips_width_div, device=device)
    except LPIPSWeightsError as error:
        parser.error(str(error))
    state = None
    if args.resume or args.ckpt:
        try:
            state = op.load_checkpoint(args.resume or args.ckpt)
        except SnapshotError as error:
            parser.error(f"--{'resume' if args.resume else 'ckpt'}: {error}")
    note = f"  [{UNTRAINED_NOTE}]" if args.lpips_untrained else ""
    print(f"dataset {dataset.name}: {len(dataset)} images, 3x{args.im_size}x{args.im_size}{note}", flush=True)

    batches = op.InfiniteBatches(torch.from_numpy(dataset.images_uint8()), args.batch_size, args.seed)
    fixed_noise = torch.randn(8, args.nz, generator=torch.Generator().manual_seed(args.seed + 1)).to(device)
    netG = Generator(ngf=args.ngf, nz=args.nz, im_size=args.im_size, tanh_all=args.tanh_all)
    netG.apply(weights_init)
    netD = Discriminator(ndf=args.ndf, im_size=args.im_size)
    netD.apply(weights_init)
    netG.to(device)
    netD.to(device)
    # (a) networks constructed and initialised; the EMA copy and the optimizers come next

    avg_param_G = op.copy_G_params(netG)
    optimizerG = torch.optim.Adam(netG.parameters(), lr=args.lr, betas=(args.beta1, 0.999))
    optimizerD = torch.optim.Adam(netD.parameters(), lr=args.lr, betas=(args.beta1, 0.999))

    start, nimg, tick, total_sec = args.start_iter, 0, 0, 0.0
    if state is not None:
        # (h) resume: everything a checkpoint holds is restored here
        try:
            start, nimg, tick, total_sec = restore(state, netG, netD, avg_param_G, optimizerG, optimizerD,
                                                   batches, args)
        except (SnapshotError, KeyError, RuntimeError, ValueError) as error:
            parser.error(f"--{'resume' if args.resume else 'ckpt'}: cannot restore: {error}")
        print(f"resumed from {args.resume or args.ckpt}: continuing at iteration {start}", flush=True)

    run_dir, models_dir, images_dir = op.get_dir(args)
    try:  # only now: bad flags or data leave nothing behind. Locked; a resumed run drops later rows
        prepare_run_dir(run_dir, resume_step=start - 1 if state is not None else None,
                        step_keys=("progress/iteration", "iteration"),
                        resume_hint=f"--resume {os.path.join(run_dir, 'last.pt')}")
        for folder in (models_dir, images_dir):
            os.makedirs(folder, exist_ok=True)
    except (RunDirError, OSError) as error:
        parser.error(f"--name: {error}")
    stats_writer = StatsWriter(run_dir, tensorboard=True)  # + TensorBoard events when tensorboard is installed
    runlog.record_flags(run_dir, args)  # flags.jsonl: the resolved flags of this start
    guard = FiniteGuard()  # a nan/inf loss or weight stops the run before anything is written from it
    progress = ProgressLine(elapsed_before=total_sec, total=args.iter)  # the ETA in iterations
    progress.start_from(nimg / 1000, done=start)
    labels = {"lpips": UNTRAINED_NOTE} if args.lpips_untrained else {}
    suffix = "-untrained-lpips" if args.lpips_untrained else ""
    sums = {"Loss/G": 0.0, "Loss/D": 0.0, "Loss/D_real": 0.0, "Loss/D_fake": 0.0, "Loss/D_rec": 0.0}
    steps_in_tick = 0

    for iteration in range(start, args.iter + 1):
        real_image = batches.next(device)
        noise = torch.randn(real_image.size(0), args.nz, device=device)
        fake_images = netG(noise)
        real_image = DiffAugment(real_image, policy=args.policy)
        fake_images = [DiffAugment(fake, policy=args.policy) for fake in fake_images]

        # discriminator: reals (hinge + reconstructions of a random quarter), then detached fakes
        part = int(torch.randint(0, 4, ()))
        err_dr, err_rec, recs = train_d(netD, percept, real_image, "real", part)
        err_df = train_d(netD, percept, [fi.detach() for fi in fake_images], "fake")
        loss_D = err_dr + err_rec + err_df
        netD.zero_grad(set_to_none=True)
        loss_D.backward()
        optimizerD.step()

        # generator
        pred_g = netD(fake_images, "fake")
        err_g = -pred_g.mean()
        netG.zero_grad(set_to_none=True)
        err_g.backward()
        optimizerG.step()
        op.update_ema(netG, avg_param_G)  # (c) EMA of G's parameters after every G step
        nimg += real_image.size(0)  # (e) real images shown to D

        for key, value in (("Loss/G", err_g), ("Loss/D", loss_D), ("Loss/D_real", err_dr), ("Loss/D_fake", err_df),
                           ("Loss/D_rec", err_rec)):
            sums[key] += value.detach()
        steps_in_tick += 1
        guard.loss(iteration, loss_G=err_g, loss_D=loss_D)

        if iteration % args.tick == 0 or iteration == args.iter:
            guard.check()
            tick += 1
            means = {k: float(v) / steps_in_tick for k, v in sums.items()}
            line = progress.tick(tick, nimg / 1000, done=iteration, it=iteration, loss_G=means["Loss/G"],
                                 loss_D=means["Loss/D"])
            stats = {"progress/tick": tick, "progress/iteration": iteration, "progress/kimg": nimg / 1000,
                     "timing/total_sec": progress.total_sec, "timing/sec_per_kimg": progress.sec_per_kimg,
                     **means, "resources/max_rss_gb": progress.max_rss_gb, **labels}
            if device.type == "cuda":
                stats["resources/gpu_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
                line += f"  gpumem {stats['resources/gpu_mem_gb']:.1f} GiB"
            # (f) per-tick stats
            stats_writer.write(stats)
            print(line + note, flush=True)
            sums = {k: 0.0 for k in sums}
            steps_in_tick = 0

        if args.metrics and (iteration % args.eval_interval == 0 or iteration == args.iter) and iteration > 0:
            guard.check_weights(iteration, G=netG, G_ema=avg_param_G)
            # (g) metrics of the EMA generator, computed into a variable, then logged
            values = compute_metrics(netG, avg_param_G, dataset, args, device)
            for name, value in values.items():
                append_jsonl(os.path.join(run_dir, f"metric-{name}.jsonl"),
                             {"metric": name, "value": value, "iteration": iteration, "kimg": nimg / 1000, **labels})
            print(f"iteration {iteration}  " + "  ".join(f"{k} {v:.4f}" for k, v in values.items()) + note,
                  flush=True)

        if iteration % (args.save_interval * 10) == 0 or iteration == args.iter:
            save_grids(netG, avg_param_G, fixed_noise, real_image, recs, images_dir, iteration, suffix)

        is_checkpoint = iteration % args.snapshot_interval == 0
        if is_checkpoint or iteration == args.iter:
            guard.check_weights(iteration, G=netG, D=netD, G_ema=avg_param_G)
            # (h) the snapshot dict is built here, in one place
            snapshot = build_snapshot(netG, netD, avg_param_G, optimizerG, optimizerD, batches, iteration, nimg,
                                      tick, progress.total_sec, args)
            save_snapshot(snapshot, os.path.join(run_dir, f"snapshot-{iteration}.pt"))
            save_snapshot(snapshot, os.path.join(run_dir, "last.pt"))
            op.save_upstream(models_dir, iteration, netG, netD, avg_param_G, optimizerG, optimizerD,
                             {"lpips_untrained": True} if args.lpips_untrained else None)

    guard.check_weights(args.iter, G=netG, G_ema=avg_param_G)
    # (i) the trained (EMA) generator is models/{it}.pth of the last iteration
    print(f"done: iteration {args.iter}, {nimg / 1000:.2f} kimg, {run_dir}{note}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
