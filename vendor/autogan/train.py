"""Train AutoGAN (a searched CIFAR-10 generator A, B or C; SNGAN-style D; hinge loss): the unmodified baseline.

    python vendor/autogan/train.py --dataset cifar10 --data_path ./data --gen_model autogan_cifar10_a --logdir runs/a
    python vendor/autogan/train.py --data digits --gf_dim 32 --df_dim 16 --max_iter 200 -gen_bs 32 -dis_bs 16 \
        --val_freq 5 --logdir /tmp/autogan_digits

Defaults are upstream's `exps/autogan_cifar10_a.sh` (see cfg.py). As upstream (VITA-Group/AutoGAN train.py and
functions.py): one D step per loader batch, D(real) and D(G(z)) scored in separate calls; a G step on
--gen_batch_size fresh latents whenever the global D-step count is a multiple of --n_critic; after every G step
the averaged generator (a list of parameter tensors, buffers not averaged) moves p̄ = 0.999 p̄ + 0.001 p; the
averaged G is what is evaluated and saved as `avg_gen_state_dict`. Upstream's NameError after the last epoch is
not reproduced: the final checkpoint is written.

Run folder (--logdir): stats.jsonl (one line per --print_freq D steps), metric-<name>.jsonl, samples-<epoch>.png
(averaged G, fixed latents), Model/checkpoint.pth after every epoch (upstream keys plus what an exact resume
needs; atomic, torch.load(weights_only=True)), Model/checkpoint_<epoch>.pth at evaluation epochs and
Model/checkpoint_best.pth at the best metric value.

The loop is flat on purpose: patches/autogan.patch adds one line next to each place marked (a)..(i).
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys

import torch

if __package__:
    from .cfg import build_argparser
    from .datasets import EpochBatches
    from .models import Discriminator, Generator, weights_init
else:  # run as a script (upstream style): the sibling modules live next to this file
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from cfg import build_argparser
    from datasets import EpochBatches
    from models import Discriminator, Generator, weights_init
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
from vendor.common import checks, flags, runlog
from vendor.common.datasets import DatasetError, load_dataset
from vendor.common.diffaug import DiffAugment, parse_policy
from vendor.common.metric_flags import check_metric_flags
from vendor.common.runguard import FiniteGuard, run_cli
from vendor.common.runlock import releases_run_dirs
from vendor.common.runlog import (ProgressLine, RunDirError, SnapshotError, StatsWriter, append_jsonl, load_snapshot,
                                  prepare_run_dir, save_snapshot)
# The loss and the generic run helpers are SNGAN's (same loss, same data/metric/RNG conventions): reused in place.
from vendor.sngan.losses import hinge_loss_D, hinge_loss_G
from vendor.sngan.train import (compute_metric_for, resolve_dataset_spec, rng_state,
                                save_samples, set_rng_state)

EMA_DECAY = 0.999  # upstream hard-codes it in functions.train
NUM_SAMPLES = 64   # fixed latents for the sample grids


def check_args(args, parser) -> None:
    """Reject bad flag values before anything is written."""
    for name in ("gen_batch_size", "dis_batch_size", "n_critic", "latent_dim", "gf_dim", "df_dim", "print_freq",
                 "eval_batch_size", "bottom_width", "channels"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.max_iter is not None and args.max_iter < 1:
        parser.error(f"--max_iter must be >= 1, got {args.max_iter}")
    if args.max_iter is None and args.max_epoch < 1:
        parser.error(f"--max_epoch must be >= 1, got {args.max_epoch}")
    if args.lr_decay and args.max_iter is None:
        parser.error("--lr_decay needs --max_iter (the decay runs over max_iter G steps)")
    if args.val_freq < 0:
        parser.error(f"--val_freq must be >= 0, got {args.val_freq}")
    if args.img_size != 8 * args.bottom_width:
        parser.error(f"--img_size {args.img_size} must be 8 x --bottom_width ({8 * args.bottom_width}): "
                     f"three cells up-sample x2 each")
    if not 0.0 < args.data_ratio <= 1.0:
        parser.error(f"--data-ratio must be in (0, 1], got {args.data_ratio}")
    try:
        parse_policy(args.diffaug)
    except ValueError as error:
        parser.error(f"--diffaug: {error}")
    if args.metric is None:
        args.metric = "fid_digits" if args.dataset == "digits" else "fid"
    if args.logdir is None:
        args.logdir = os.path.join("logs", args.exp_name or args.gen_model)
    if args.load_path is not None:
        if os.path.isdir(args.load_path):
            args.load_path = os.path.join(args.load_path, "Model", "checkpoint.pth")
        if not os.path.isfile(args.load_path):
            parser.error(f"--load_path: checkpoint file not found: {args.load_path}")
    flags.check(parser.error, flags.seed, args.random_seed, "--random_seed")
    for name in ("g_lr", "d_lr"):
        flags.check(parser.error, flags.finite_positive, getattr(args, name), f"--{name}")
    for name in ("beta1", "beta2"):
        flags.check(parser.error, flags.unit_interval, getattr(args, name), f"--{name}")
    flags.check(parser.error, flags.device, args.device, "--device")
    flags.check(parser.error, flags.out_dir, args.logdir, "--logdir")


def num_epochs(args, batches_per_epoch: int) -> int:
    """Upstream: max_epoch = ceil(max_iter * n_critic / len(loader)) with --max_iter, else max_epoch * n_critic."""
    if args.max_iter:
        return math.ceil(args.max_iter * args.n_critic / batches_per_epoch)
    return args.max_epoch * args.n_critic


def lr_factor(args):
    """Upstream's LinearLrDecay(start, 0, 0, max_iter * n_critic), stepped with the global D step at every G step,
    as a LambdaLR factor stepped once per G step: after the k-th G step (0-based) the LR is start * (1 - k /
    max_iter), frozen at the last value once k reaches max_iter. A LambdaLR (not an LR overwrite) so that other
    LR scaling composes with it."""
    if not args.lr_decay:
        return lambda done: 1.0
    return lambda done: 1.0 - min(max(done - 1, 0), args.max_iter - 1) / args.max_iter


def copy_params(net) -> list:
    return [p.detach().clone() for p in net.parameters()]


@torch.no_grad()
def load_params(net, params) -> None:
    for p, new in zip(net.parameters(), params):
        p.copy_(new)


@contextlib.contextmanager
def averaged(gen_net, gen_avg_param):
    """gen_net temporarily holding the averaged parameters (upstream: copy_params, load_params, load back)."""
    backup = copy_params(gen_net)
    load_params(gen_net, gen_avg_param)
    try:
        yield gen_net
    finally:
        load_params(gen_net, backup)


def avg_gen_state_dict(gen_net, gen_avg_param) -> dict:
    """G's state_dict with the averaged parameters (buffers are the training G's), as upstream saves it."""
    with averaged(gen_net, gen_avg_param):
        return {k: v.clone() for k, v in gen_net.state_dict().items()}


def build_checkpoint(gen_net, dis_net, gen_avg_param, gen_optimizer, dis_optimizer, gen_scheduler, dis_scheduler,
                     batches, counters, args) -> dict:
    """Upstream's checkpoint keys (path_helper: the run folder) plus what an exact resume needs; tensors and
    plain containers only (weights_only loading)."""
    return {
        "epoch": counters["epoch"], "gen_model": args.gen_model, "dis_model": args.dis_model,
        "gen_state_dict": gen_net.state_dict(), "dis_state_dict": dis_net.state_dict(),
        "avg_gen_state_dict": avg_gen_state_dict(gen_net, gen_avg_param),
        "gen_optimizer": gen_optimizer.state_dict(), "dis_optimizer": dis_optimizer.state_dict(),
        "best_fid": counters["best_fid"], "path_helper": {"prefix": args.logdir},
        "gen_scheduler": gen_scheduler.state_dict(), "dis_scheduler": dis_scheduler.state_dict(),
        "counters": {k: float(v) if torch.is_tensor(v) else v for k, v in counters.items()},
        "rng": rng_state(), "batches": batches.state_dict(),
        "config": {k: getattr(args, k) for k in ("latent_dim", "gf_dim", "df_dim", "bottom_width", "channels")},
    }


COUNTS = ("epoch", "global_steps", "gen_step", "nimg", "tick", "tick_steps_D", "tick_steps_G")
LOSS_SUMS = ("total_sec", "best_fid", "tick_loss_D", "tick_loss_G", "last_loss_G")


def check_checkpoint(state, gen_net, dis_net, gen_optimizer, dis_optimizer, gen_scheduler, dis_scheduler) -> None:
    """Networks, optimizers, schedulers, counters, RNG and sampler state of a checkpoint (vendor.common.checks);
    raises CheckpointError naming the entry."""
    for key, net in (("gen_state_dict", gen_net), ("avg_gen_state_dict", gen_net), ("dis_state_dict", dis_net)):
        checks.module_state(checks.require(state, key), net, key)
    for key, opt in (("gen_optimizer", gen_optimizer), ("dis_optimizer", dis_optimizer)):
        checks.optimizer_state(checks.require(state, key), opt, key)
    for key, sched in (("gen_scheduler", gen_scheduler), ("dis_scheduler", dis_scheduler)):
        checks.scheduler_state(checks.require(state, key), sched, key)
    counters = checks.require(state, "counters")
    for key in COUNTS:
        checks.counter(checks.require(counters, key, "counters"), f"counters.{key}")
    for key in LOSS_SUMS:
        checks.number(checks.require(counters, key, "counters"), f"counters.{key}")
    checks.seconds(counters["total_sec"], "counters.total_sec")
    checks.rng_state(checks.require(state, "rng"), "rng")
    checks.permutation_sampler(checks.require(state, "batches"), 0, "batches", order_key=None)


def restore_checkpoint(state, gen_net, dis_net, gen_avg_param, gen_optimizer, dis_optimizer, gen_scheduler,
                       dis_scheduler, batches, args) -> dict:
    """Inverse of build_checkpoint; returns the counters."""
    if "counters" not in state:
        raise SnapshotError("not a checkpoint of this train.py (no 'counters'; upstream checkpoints resume only "
                            "weights: load avg_gen_state_dict / gen_state_dict yourself)")
    if state.get("gen_model") != args.gen_model or state.get("dis_model") != args.dis_model:
        raise SnapshotError(f"checkpoint is {state.get('gen_model')}/{state.get('dis_model')} but --gen_model "
                            f"{args.gen_model} --dis_model {args.dis_model}")
    config = state.get("config", {})
    for key, value in (config.items() if isinstance(config, dict) else [("config", config)]):
        if value != getattr(args, key, None):
            raise SnapshotError(f"checkpoint has {key}={value} but --{key} {getattr(args, key, None)}")
    try:  # every entry checked against the live objects before any is used
        check_checkpoint(state, gen_net, dis_net, gen_optimizer, dis_optimizer, gen_scheduler, dis_scheduler)
    except checks.CheckpointError as error:
        raise SnapshotError(str(checks.in_file(args.load_path, error))) from None
    gen_net.load_state_dict(state["avg_gen_state_dict"])
    for p_avg, p in zip(gen_avg_param, gen_net.parameters()):
        p_avg.copy_(p.detach())
    gen_net.load_state_dict(state["gen_state_dict"])
    dis_net.load_state_dict(state["dis_state_dict"])
    gen_optimizer.load_state_dict(state["gen_optimizer"])
    dis_optimizer.load_state_dict(state["dis_optimizer"])
    gen_scheduler.load_state_dict(state["gen_scheduler"])
    dis_scheduler.load_state_dict(state["dis_scheduler"])
    batches.load_state_dict(state["batches"])
    set_rng_state(state["rng"])
    return dict(state["counters"])


@releases_run_dirs
def main(argv=None):
    parser = build_argparser()
    args = parser.parse_args(argv)
    check_args(args, parser)
    device = torch.device(args.device)
    torch.manual_seed(args.random_seed)
    try:
        dataset = load_dataset(resolve_dataset_spec(args), resolution=args.img_size, channels=args.channels,
                               ratio=args.data_ratio, seed=args.random_seed)
    except DatasetError as error:
        parser.error(f"--dataset: {error}")
    if args.val_freq:  # after the data: a bad --dataset is the more basic error
        args.detector = check_metric_flags(
            [("--metric", args.metric)] + [("--extra_metrics", name) for name in args.extra_metrics], dataset,
            parser.error, detector=args.detector, cache_dir=args.metric_cache, num_images=args.num_images,
            num_images_flag="--num_eval_imgs", data_flag="--dataset",
            hint="or use --val_freq 0, or --metric fid_digits with --dataset digits")
    # SNGAN's metric helper reads z_dim / batch_size; the same values under AutoGAN's flag names
    metric_args = argparse.Namespace(**vars(args), z_dim=args.latent_dim, batch_size=args.eval_batch_size)
    state = None
    if args.load_path is not None:
        try:
            state = load_snapshot(args.load_path)
        except SnapshotError as error:
            parser.error(f"--load_path: {error}")
    print(f"dataset {dataset.name}: {len(dataset)} images, {dataset.num_channels}x{dataset.resolution}x"
          f"{dataset.resolution}", flush=True)

    batches = EpochBatches(torch.from_numpy(dataset.images_uint8()), args.dis_batch_size, args.random_seed)
    max_epoch = num_epochs(args, len(batches))
    fixed_z = torch.randn(NUM_SAMPLES, args.latent_dim,
                          generator=torch.Generator().manual_seed(args.random_seed + 1)).to(device)
    gen_net = Generator(args.gen_model, args.latent_dim, args.gf_dim, args.bottom_width, args.channels).to(device)
    dis_net = Discriminator(args.df_dim, args.channels, args.d_spectral_norm).to(device)
    weights_init(gen_net, args.init_type)
    weights_init(dis_net, args.init_type)
    # (a) networks built and initialised; optimizers and the averaged G come next

    gen_optimizer = torch.optim.Adam(gen_net.parameters(), args.g_lr, (args.beta1, args.beta2))
    dis_optimizer = torch.optim.Adam(dis_net.parameters(), args.d_lr, (args.beta1, args.beta2))
    gen_scheduler = torch.optim.lr_scheduler.LambdaLR(gen_optimizer, lr_factor(args))
    dis_scheduler = torch.optim.lr_scheduler.LambdaLR(dis_optimizer, lr_factor(args))
    gen_avg_param = copy_params(gen_net)

    counters = {"epoch": 0, "global_steps": 0, "gen_step": 0, "nimg": 0, "tick": 0, "total_sec": 0.0,
                "best_fid": 1e4, "tick_loss_D": 0.0, "tick_steps_D": 0, "tick_loss_G": 0.0, "tick_steps_G": 0,
                "last_loss_G": float("nan")}
    if state is not None:
        # (h) resume: everything a checkpoint holds is restored here
        try:
            counters = restore_checkpoint(state, gen_net, dis_net, gen_avg_param, gen_optimizer, dis_optimizer,
                                          gen_scheduler, dis_scheduler, batches, args)
        except (SnapshotError, KeyError, RuntimeError, ValueError) as error:
            parser.error(f"--load_path: cannot restore {args.load_path}: {error}")
        print(f"resumed from {args.load_path} at epoch {counters['epoch']}", flush=True)

    try:  # only now: bad flags leave nothing behind. Locked; a resumed run drops later rows
        prepare_run_dir(args.logdir, resume_step=counters["global_steps"] if state is not None else None,
                        resume_hint=f"--load_path {os.path.join(args.logdir, 'Model', 'checkpoint.pth')}")
        os.makedirs(os.path.join(args.logdir, "Model"), exist_ok=True)
    except (RunDirError, OSError) as error:
        parser.error(f"--logdir: {error}")
    stats_writer = StatsWriter(args.logdir, tensorboard=True)  # + TensorBoard events when tensorboard is installed
    runlog.record_flags(args.logdir, args)  # flags.jsonl: the resolved flags of this start
    guard = FiniteGuard()  # a nan/inf loss or weight stops the run before anything is written from it
    progress = ProgressLine(elapsed_before=counters["total_sec"], total=max_epoch * len(batches))  # ETA in D steps
    progress.start_from(counters["nimg"] / 1000, done=counters["global_steps"])
    c = counters
    print(f"{max_epoch} epochs of {len(batches)} D steps (n_critic {args.n_critic})", flush=True)

    for epoch in range(c["epoch"], max_epoch):
        for real_imgs in batches.epoch(device):
            z = torch.randn(len(real_imgs), args.latent_dim, device=device)
            # discriminator: real and fake scored in separate calls, as upstream
            real_validity = dis_net(DiffAugment(real_imgs, args.diffaug))
            with torch.no_grad():
                fake_imgs = gen_net(z)
            fake_validity = dis_net(DiffAugment(fake_imgs, args.diffaug))
            d_loss = hinge_loss_D(real_validity, fake_validity)
            dis_optimizer.zero_grad(set_to_none=True)
            d_loss.backward()
            dis_optimizer.step()
            c["nimg"] += len(real_imgs)  # (e) real images shown to D
            c["tick_loss_D"] += d_loss.detach()  # stays on the device: no sync per step
            c["tick_steps_D"] += 1
            guard.loss(c["global_steps"] + 1, loss_D=d_loss)

            if c["global_steps"] % args.n_critic == 0:
                # generator
                gen_z = torch.randn(args.gen_batch_size, args.latent_dim, device=device)
                g_loss = hinge_loss_G(dis_net(DiffAugment(gen_net(gen_z), args.diffaug)))
                gen_optimizer.zero_grad(set_to_none=True)
                g_loss.backward()
                gen_optimizer.step()
                gen_scheduler.step(); dis_scheduler.step()  # noqa: E702  (d) LR decay, once per G step
                with torch.no_grad():  # moving average of G's parameters
                    for p, avg_p in zip(gen_net.parameters(), gen_avg_param):
                        avg_p.mul_(EMA_DECAY).add_(p.detach(), alpha=1 - EMA_DECAY)
                c["gen_step"] += 1
                c["last_loss_G"] = g_loss.detach()
                c["tick_loss_G"] += c["last_loss_G"]
                c["tick_steps_G"] += 1
                guard.loss(c["global_steps"] + 1, loss_G=g_loss)
            c["global_steps"] += 1

            if c["global_steps"] % args.print_freq == 0 or c["global_steps"] == max_epoch * len(batches):
                guard.check()
                c["tick"] += 1
                kimg = c["nimg"] / 1000
                loss_G = float(c["tick_loss_G"] / c["tick_steps_G"] if c["tick_steps_G"] else c["last_loss_G"])
                loss_D = float(c["tick_loss_D"]) / c["tick_steps_D"]
                line = progress.tick(c["tick"], kimg, done=c["global_steps"], epoch=epoch, step=c["global_steps"],
                                     loss_G=loss_G, loss_D=loss_D)
                # (f) per-tick stats
                stats = {
                    "progress/tick": c["tick"], "progress/step": c["global_steps"], "progress/gen_step": c["gen_step"],
                    "progress/epoch": epoch, "progress/kimg": kimg,
                    "timing/total_sec": progress.total_sec, "timing/sec_per_kimg": progress.sec_per_kimg,
                    "Loss/G": loss_G, "Loss/D": loss_D,
                    "lr/G": gen_optimizer.param_groups[0]["lr"], "lr/D": dis_optimizer.param_groups[0]["lr"],
                    "resources/max_rss_gb": progress.max_rss_gb,
                }
                stats_writer.write(stats)
                print(line, flush=True)
                c.update(tick_loss_D=0.0, tick_steps_D=0, tick_loss_G=0.0, tick_steps_G=0)

        c["epoch"] = epoch + 1
        is_val_epoch = bool(args.val_freq) and (epoch and epoch % args.val_freq == 0 or epoch == max_epoch - 1)
        is_best = False
        if is_val_epoch:
            guard.check_weights(c["global_steps"], G=gen_net, G_ema=gen_avg_param)
            with averaged(gen_net, gen_avg_param):  # evaluate the averaged G, as upstream
                # (g) metric computed into a variable, then logged
                metric = compute_metric_for(gen_net, dataset, metric_args, device)
                record = {"metric": args.metric, "value": metric, "epoch": c["epoch"], "step": c["global_steps"],
                          "kimg": c["nimg"] / 1000}
                append_jsonl(os.path.join(args.logdir, f"metric-{args.metric}.jsonl"), record)
                print(f"epoch {c['epoch']}  {args.metric} {metric:.4f}", flush=True)
                for name in args.extra_metrics:  # logged only: --metric stays the one a patch may act on
                    value = compute_metric_for(gen_net, dataset, metric_args, device, name)
                    append_jsonl(os.path.join(args.logdir, f"metric-{name}.jsonl"),
                                 {**record, "metric": name, "value": value})
            is_best = metric < c["best_fid"]
            c["best_fid"] = min(c["best_fid"], metric)
        if is_val_epoch or epoch == max_epoch - 1:  # sample grids of the averaged G, also without evaluation
            with averaged(gen_net, gen_avg_param):
                save_samples(gen_net, fixed_z, os.path.join(args.logdir, f"samples-{c['epoch']}.png"))

        c["total_sec"] = progress.total_sec
        guard.check_weights(c["global_steps"], G=gen_net, D=dis_net, G_ema=gen_avg_param)
        # (h) the checkpoint is built here, in one place
        checkpoint = build_checkpoint(gen_net, dis_net, gen_avg_param, gen_optimizer, dis_optimizer, gen_scheduler,
                                      dis_scheduler, batches, c, args)
        save_snapshot(checkpoint, os.path.join(args.logdir, "Model", "checkpoint.pth"))
        if is_val_epoch:
            save_snapshot(checkpoint, os.path.join(args.logdir, "Model", f"checkpoint_{c['epoch']}.pth"))
        if is_best:
            save_snapshot(checkpoint, os.path.join(args.logdir, "Model", "checkpoint_best.pth"))

    # (i) end of training
    guard.check_weights(c["global_steps"], G=gen_net, G_ema=gen_avg_param)
    print(f"done: {c['epoch']} epochs, {c['gen_step']} G steps, {c['nimg'] / 1000:.1f} kimg, {args.logdir}",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
