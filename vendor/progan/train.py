"""Train ProGAN (progressive growing, WGAN-GP) as the official Re-GAN code does: the unmodified baseline.

    python vendor/progan/train.py --dataset cifar10 --data_root ./data --logdir runs/progan_cifar10
    python vendor/progan/train.py --data digits --ch 32 --max_res 16 --epoch 1 --logdir /tmp/t
    python vendor/progan/train.py --data ./shots100 --max_res 256 --schedule kimg --stable_kimg 200 \\
        --fade_kimg 200 --ema_beta 0.999 --logdir runs/progan_100shot

Defaults follow IntellicentAI-Lab/Re-GAN `ProGAN/` (see shared/upstream/README.md "ProGAN"): z 512, width
512, 4 -> 32, WGAN-GP lambda 10 + drift 0.001, n_critic 1 (G reuses the critic step's fake batch), Adam 1e-3
betas (0, 0.99) for both nets and never reset between stages, batch [128, 128, 128, 64] and epochs
[2, 2, 2, 8] for 4/8/16/32, `--epoch N` sets every stage to N epochs, fade-in alpha as upstream (see
schedule.py: it starts at 1/N, not 0). Options from Karras et al.: `--schedule kimg`, `--reset_adam`,
`--ema_beta 0.999`, resolutions up to 1024 with halved widths. Differences from upstream: data through
vendor.common.datasets (its `--data-ratio` subset is a seeded random subset, upstream takes the first
images by index; resizing is the shared antialiased bilinear one), and metrics, samples and snapshots,
which upstream does not have.

Run directory (--logdir): stats.jsonl (one JSON object per tick), metric-<name>.jsonl (final resolution
only), samples-<step>.png, snapshot-<step>.pt and last.pt (atomic, weights_only loadable, resumable at any
iteration, mid-fade included), G_final.pt at the end.

The loop is kept flat on purpose: patches/progan.patch adds one line next to each named place.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys

import torch

if __package__:
    from .data import StageBatches
    from .losses import critic_loss, generator_loss, gradient_penalty
    from .models import Discriminator, Generator, resolutions
    from .schedule import build_plan, describe
else:  # run as a script (upstream style): the sibling modules live next to this file
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from data import StageBatches
    from losses import critic_loss, generator_loss, gradient_penalty
    from models import Discriminator, Generator, resolutions
    from schedule import build_plan, describe
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
from vendor.common.metric_flags import check_metric_flags, detector_for
from vendor.common.runguard import FiniteGuard, run_cli
from vendor.common.runlock import releases_run_dirs
from vendor.common.runlog import (ProgressLine, RunDirError, SnapshotError, StatsWriter, append_jsonl,
                                  load_snapshot, prepare_run_dir, save_image_grid, save_snapshot)

NUM_SAMPLES = 64  # fixed latents for the sample grids
METRIC_BATCH = 64
CIFAR10_FOLDER, CIFAR10_ARCHIVE = "cifar-10-batches-py", "cifar-10-python.tar.gz"


def int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def build_argparser() -> argparse.ArgumentParser:
    p = flags.ArgumentParser(description="ProGAN (progressive growing, WGAN-GP) training",
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    # data
    p.add_argument("--dataset", "--data", dest="dataset", default="cifar10",
                   help="'cifar10' (python batches under --data_root), 'digits', a CIFAR-10 batch "
                        "folder or .tar.gz, an image folder, or a StyleGAN2-ADA .zip")
    p.add_argument("--data_root", default="../dataset", help="where --dataset cifar10 is looked up")
    p.add_argument("--data-ratio", "--data_ratio", dest="data_ratio", type=float, default=1.0,
                   help="train on this deterministic fraction (0, 1] of the dataset")
    # model
    p.add_argument("--z_dim", type=int, default=512, help="latent size of G's input")
    p.add_argument("--ch", "--in_channels", dest="ch", type=int, default=512,
                   help="feature maps up to 32x32 (halved per doubling above)")
    p.add_argument("--max_res", type=int, default=32, help="final resolution (power of two, 8..1024)")
    # schedule and optimisation
    p.add_argument("--schedule", choices=("epochs", "kimg"), default="epochs",
                   help="'epochs': upstream's per-stage epochs; 'kimg': Karras' stable / fade-in kimg")
    p.add_argument("--batch_sizes", type=int_list, default=None,
                   help="one batch size per resolution (default 128,128,128,64 for 4..32; 32,16,8,4,4 above)")
    p.add_argument("--epochs", type=int_list, default=None,
                   help="one epoch count per resolution (default 2,2,2,8 for 4..32; 8 above)")
    p.add_argument("--epoch", type=int, default=-1, help="upstream's flag: every stage trains this many epochs")
    p.add_argument("--stable_kimg", type=float, default=600.0, help="kimg schedule: stable images per stage")
    p.add_argument("--fade_kimg", type=float, default=600.0, help="kimg schedule: fade-in images per stage")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of G and D")
    p.add_argument("--betas", type=float, nargs=2, default=[0.0, 0.99], help="Adam betas (beta1 beta2)")
    p.add_argument("--lambda_gp", type=float, default=10.0, help="weight of the WGAN-GP gradient penalty")
    p.add_argument("--drift", type=float, default=0.001, help="weight of E[D(x)^2]")
    p.add_argument("--reset_adam", action="store_true",
                   help="new Adam optimizers at each resolution (Karras); upstream keeps them")
    p.add_argument("--ema_beta", type=float, default=0.0,
                   help="G EMA decay per step (Karras: 0.999); 0 = off (upstream has none)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the weights, the data order and the fixed sample latents")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device: cpu, cuda or cuda:N")
    # logging, evaluation, snapshots
    p.add_argument("--logdir", default="./runs/progan", help="run folder (stats, samples, snapshots, G_final.pt)")
    p.add_argument("--tick_steps", type=int, default=50, help="iterations per stats tick (upstream prints every 50)")
    p.add_argument("--sample_step", type=int, default=1000, help="iterations between sample grids (0=off)")
    p.add_argument("--eval_step", type=int, default=0,
                   help="iterations between metrics during the final resolution, and at the end (0=off)")
    p.add_argument("--snapshot_steps", type=int, default=2000, help="iterations between snapshots (0=only last)")
    p.add_argument("--num_images", type=int, default=None,
                   help="generated images per metric (default: the metric's own, 50000 for fid)")
    p.add_argument("--metric", default=None,
                   help="metric name for vendor.common.metrics (default fid, fid_digits on digits)")
    p.add_argument("--extra_metrics", default="", type=lambda v: [m for m in v.split(",") if m],
                   help="comma-separated metrics logged next to --metric, e.g. kid,is")
    p.add_argument("--detector", default=None, help="Inception/VGG detector path or URL for metrics")
    p.add_argument("--metric_cache", default=None, help="cache folder for detectors / statistics")
    p.add_argument("--resume", default=None, help="snapshot (.pt) to continue from")
    return p


def check_args(args, parser) -> None:
    """Reject bad flag values before anything is written."""
    for name in ("z_dim", "ch", "tick_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    try:
        args.resolutions = resolutions(args.max_res)
    except ValueError as error:
        parser.error(f"--max_res: {error}")
    if args.max_res < 8:
        parser.error(f"--max_res must be >= 8 (at least one growth step), got {args.max_res}")
    count = len(args.resolutions)
    for name in ("batch_sizes", "epochs"):
        values = getattr(args, name)
        if values is not None and (len(values) != count or min(values) < 1):
            parser.error(f"--{name} needs {count} positive integers (one per resolution "
                         f"{args.resolutions}), got {values}")
    if args.epoch != -1:
        if args.epoch < 1:
            parser.error(f"--epoch must be >= 1 (or -1 for the per-stage defaults), got {args.epoch}")
        args.epochs = [args.epoch] * count
    flags.check(parser.error, flags.finite_positive, args.stable_kimg, "--stable_kimg")
    flags.check(parser.error, flags.finite_nonneg, args.fade_kimg, "--fade_kimg")
    flags.check(parser.error, flags.unit_interval, args.ema_beta, "--ema_beta")
    flags.check(parser.error, flags.finite_positive, args.lr, "--lr")
    flags.check(parser.error, flags.finite_nonneg, args.lambda_gp, "--lambda_gp")
    flags.check(parser.error, flags.finite_nonneg, args.drift, "--drift")
    for i, beta in enumerate(args.betas):
        flags.check(parser.error, flags.unit_interval, beta, f"--betas (beta{i + 1})")
    flags.check(parser.error, flags.seed, args.seed, "--seed")
    for name in ("sample_step", "eval_step", "snapshot_steps"):
        if getattr(args, name) < 0:
            parser.error(f"--{name} must be >= 0, got {getattr(args, name)}")
    if not 0.0 < args.data_ratio <= 1.0:
        parser.error(f"--data-ratio must be in (0, 1], got {args.data_ratio}")
    if args.metric is None:
        args.metric = "fid_digits" if args.dataset == "digits" else "fid"
    if args.resume is not None and not os.path.isfile(args.resume):
        parser.error(f"--resume: snapshot file not found: {args.resume}")
    flags.check(parser.error, flags.device, args.device, "--device")
    flags.check(parser.error, flags.out_dir, args.logdir, "--logdir")


def resolve_dataset_spec(args) -> str:
    """Upstream's CIFAR-10 lives under --data_root."""
    if args.dataset != "cifar10":
        return args.dataset
    for candidate in (CIFAR10_FOLDER, CIFAR10_ARCHIVE):
        path = os.path.join(args.data_root, candidate)
        if os.path.exists(path):
            return path
    raise DatasetError(f"--dataset cifar10: neither {os.path.join(args.data_root, CIFAR10_FOLDER)} "
                       f"nor {os.path.join(args.data_root, CIFAR10_ARCHIVE)} exists (no downloads "
                       f"here; pass --data PATH or --data digits)")


def stage_images(args, res: int) -> torch.Tensor:
    """The training subset resized to `res` (upstream: Resize((res, res)) per stage), uint8 NCHW."""
    data = load_dataset(resolve_dataset_spec(args), resolution=res, channels=3, ratio=args.data_ratio,
                        seed=args.seed)
    return torch.from_numpy(data.images_uint8())


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def make_optimizers(net_G, net_D, args):
    return (torch.optim.Adam(net_G.parameters(), lr=args.lr, betas=tuple(args.betas)),
            torch.optim.Adam(net_D.parameters(), lr=args.lr, betas=tuple(args.betas)))


@torch.no_grad()
def update_ema(G_ema, net_G, beta: float) -> None:
    for p_ema, p in zip(G_ema.parameters(), net_G.parameters()):
        p_ema.lerp_(p, 1.0 - beta)


def snapshot_config(args, plan) -> dict:
    return {"z_dim": args.z_dim, "ch": args.ch, "max_res": args.max_res, "schedule": args.schedule,
            "ema": args.ema_beta > 0, "iters": [s.iters for s in plan], "batch": [s.batch for s in plan]}


def build_snapshot(net_G, net_D, G_ema, optim_G, optim_D, batches, stage, it, step, nimg, tick, total_sec,
                   args, plan) -> dict:
    """Everything a resumed run needs; tensors and plain containers only (weights_only loading).
    (stage, it) is the next iteration to run."""
    return {
        "net_G": net_G.state_dict(), "net_D": net_D.state_dict(),
        "G_ema": None if G_ema is None else G_ema.state_dict(),
        "optim_G": optim_G.state_dict(), "optim_D": optim_D.state_dict(),
        "batches": batches.state_dict(), "stage": stage, "it": it,
        "step": step, "nimg": nimg, "tick": tick, "total_sec": total_sec, "rng": rng_state(),
        "config": snapshot_config(args, plan),
    }


def restore_networks(state: dict, net_G, net_D, G_ema, args, plan):
    """Networks and counters (before anything is written); returns (stage, it, step, nimg, tick, total_sec).
    Optimizers, sampler and RNG are restored when the loop reaches the stage (they are per stage)."""
    for key in ("optim_G", "optim_D", "batches", "rng", "stage", "it"):
        if key not in state:
            raise SnapshotError(f"{args.resume}: not a ProGAN training snapshot (no {key!r})")
    saved, mine = state.get("config", {}), snapshot_config(args, plan)
    for key in mine:
        if saved.get(key) != mine[key]:
            raise SnapshotError(f"{args.resume}: snapshot has {key}={saved.get(key)} but this run has "
                                f"{mine[key]} (same --z_dim/--ch/--max_res/schedule/--ema_beta/data needed)")
    try:  # networks and optimizers checked against live (throw-away) objects before anything is loaded
        checks.module_state(state["net_G"], net_G, "net_G")
        checks.module_state(state["net_D"], net_D, "net_D")
        if G_ema is not None:
            checks.module_state(state["G_ema"], G_ema, "G_ema")
        for name, optimizer in zip(("optim_G", "optim_D"), make_optimizers(net_G, net_D, args)):
            checks.optimizer_state(state[name], optimizer, name)
    except checks.CheckpointError as error:
        raise SnapshotError(str(checks.in_file(args.resume, error))) from None
    net_G.load_state_dict(state["net_G"])
    net_D.load_state_dict(state["net_D"])
    if G_ema is not None:
        G_ema.load_state_dict(state["G_ema"])
    return (int(state["stage"]), int(state["it"]), int(state["step"]), int(state["nimg"]), int(state["tick"]),
            float(state["total_sec"]))


def check_snapshot(state, path, plan, num_images) -> None:
    """Counters, position in the plan, RNG and sampler state of a snapshot (vendor.common.checks), before the
    networks exist; raises SnapshotError naming the file and the entry."""
    try:
        stage = checks.counter(checks.require(state, "stage"), "stage", 0, len(plan) - 1)
        checks.counter(checks.require(state, "it"), "it", 0, plan[stage].iters)
        for key in ("step", "nimg", "tick"):
            checks.counter(checks.require(state, key), key)
        checks.seconds(checks.require(state, "total_sec"), "total_sec")
        if not isinstance(state.get("config", {}), dict):
            raise checks.CheckpointError("entry 'config' is not a dict")
        checks.rng_state(checks.require(state, "rng"), "rng")
        checks.permutation_sampler(checks.require(state, "batches"), num_images, "batches")
    except checks.CheckpointError as error:
        raise SnapshotError(str(checks.in_file(path, error))) from None


_full_datasets = {}


def metric_reference_dataset(args):
    """Metrics compare against the whole training set at the final resolution (also for --data-ratio runs)."""
    spec = resolve_dataset_spec(args)
    if spec not in _full_datasets:
        _full_datasets[spec] = load_dataset(spec, resolution=args.max_res, channels=3)
    return _full_datasets[spec]


def compute_metric_for(net_G, alpha, step, args, device, name=None) -> float:
    """The value of metric `name` (default --metric) of the final-resolution G; first value if two-valued."""
    from vendor.common.metrics import compute_metric  # a run with --eval_step 0 never loads the detectors

    @torch.no_grad()
    def G_sample(n):
        return net_G(torch.randn(n, args.z_dim, device=device), alpha, step)

    saved_rng = rng_state()  # evaluation must not shift the training RNG stream
    try:
        results = compute_metric(name or args.metric, G_sample, metric_reference_dataset(args),
                                 num_gen=args.num_images, batch=METRIC_BATCH, device=str(device),
                                 detector=detector_for(name or args.metric, args.detector), cache_dir=args.metric_cache)
    finally:
        set_rng_state(saved_rng)
    return float(next(iter(results.values())))


@torch.no_grad()
def save_samples(net_G, fixed_z, alpha, step, path) -> None:
    save_image_grid(net_G(fixed_z, alpha, step).clamp(-1, 1), path, grid=(8, (len(fixed_z) + 7) // 8))


@releases_run_dirs
def main(argv=None):
    parser = build_argparser()
    args = parser.parse_args(argv)
    check_args(args, parser)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    try:
        num_images = len(stage_images(args, args.resolutions[0]))
    except DatasetError as error:
        parser.error(f"--dataset: {error}")
    plan = build_plan(args.resolutions, num_images, args.schedule, args.batch_sizes, args.epochs,
                      args.stable_kimg, args.fade_kimg)
    last = len(plan) - 1
    if args.eval_step:  # after the data: a bad --data is the more basic error
        args.detector = check_metric_flags(
            [("--metric", args.metric)] + [("--extra_metrics", name) for name in args.extra_metrics],
            metric_reference_dataset(args), parser.error, detector=args.detector,
            cache_dir=args.metric_cache, num_images=args.num_images,
            hint="or use --eval_step 0, or --metric fid_digits with --data digits")
    state = None
    if args.resume is not None:
        try:
            state = load_snapshot(args.resume)
            check_snapshot(state, args.resume, plan, num_images)
        except SnapshotError as error:
            parser.error(f"--resume: {error}")
    total_steps = sum(s.iters for s in plan)
    print(f"dataset {args.dataset}: {num_images} images; {total_steps} iterations:\n{describe(plan)}", flush=True)

    fixed_z = torch.randn(NUM_SAMPLES, args.z_dim, generator=torch.Generator().manual_seed(args.seed + 1)).to(device)
    net_G = Generator(args.z_dim, args.ch, args.max_res).to(device)
    net_D = Discriminator(args.ch, args.max_res).to(device)
    # (a) networks constructed and initialised (every resolution's blocks); G_ema and optimizers come next
    G_ema = copy.deepcopy(net_G).eval() if args.ema_beta > 0 else None
    G_eval = net_G if G_ema is None else G_ema  # samples, metrics and the final export
    optim_G = optim_D = None

    start_stage, start_it, step, nimg, tick, total_sec = 0, 0, 0, 0, 0, 0.0
    if state is not None:
        # (h) resume: networks and counters here, per-stage objects when the loop reaches the stage
        try:
            start_stage, start_it, step, nimg, tick, total_sec = restore_networks(
                state, net_G, net_D, G_ema, args, plan)
        except (SnapshotError, KeyError, RuntimeError, ValueError) as error:
            parser.error(f"--resume: cannot restore {args.resume}: {error}")
        print(f"resumed from {args.resume} at {plan[start_stage].res}x{plan[start_stage].res}, "
              f"iteration {start_it} of the stage ({step} in all)", flush=True)

    try:  # only now: bad flags or data leave nothing behind. Locked; a resumed run drops later rows
        prepare_run_dir(args.logdir, resume_step=step if state is not None else None)
    except (RunDirError, OSError) as error:
        parser.error(f"--logdir: {error}")
    stats_writer = StatsWriter(args.logdir, tensorboard=True)  # + TensorBoard events when tensorboard is installed
    runlog.record_flags(args.logdir, args)  # flags.jsonl: the resolved flags of this start
    guard = FiniteGuard()  # a nan/inf loss or weight stops the run before anything is written from it
    progress = ProgressLine(elapsed_before=total_sec, total=total_steps)  # the ETA in iterations
    progress.start_from(nimg / 1000, done=step)
    tick_loss_G, tick_loss_D, tick_gp, tick_steps = 0.0, 0.0, 0.0, 0
    alpha = 1.0

    for s in range(start_stage, len(plan)):
        stage = plan[s]
        it0 = start_it if s == start_stage else 0
        batches = StageBatches(stage_images(args, stage.res), stage.batch, seed=args.seed * 1000 + s,
                               epoch_aligned=stage.epoch_aligned())
        print(f"stage {stage.res}x{stage.res}: {stage.iters} iterations, batch {stage.batch}", flush=True)
        if optim_G is None or (args.reset_adam and it0 == 0):
            optim_G, optim_D = make_optimizers(net_G, net_D, args)
            # (b) optimizers (re)built for this stage
        if state is not None:
            if not (args.reset_adam and it0 == 0):  # a resumed run at a stage start gets fresh ones too
                optim_G.load_state_dict(state["optim_G"])
                optim_D.load_state_dict(state["optim_D"])
            if it0 > 0:
                batches.load_state_dict(state["batches"])
            set_rng_state(state["rng"])
            state = None

        for it in range(it0, stage.iters):
            alpha = stage.alpha(it)
            real = batches.next(device)
            z = torch.randn(len(real), args.z_dim, device=device)
            fake = net_G(z, alpha, stage.step)
            # critic: real, fake and the penalty at interpolates (n_critic 1)
            d_real = net_D(real, alpha, stage.step)
            d_fake = net_D(fake.detach(), alpha, stage.step)
            gp = gradient_penalty(net_D, real, fake, alpha, stage.step)
            loss_D = critic_loss(d_real, d_fake, gp, args.lambda_gp, args.drift)
            optim_D.zero_grad(set_to_none=True)
            loss_D.backward()
            optim_D.step()
            # generator: the same fake batch, scored by the updated critic (upstream)
            loss_G = generator_loss(net_D(fake, alpha, stage.step))
            optim_G.zero_grad(set_to_none=True)
            loss_G.backward()
            optim_G.step()
            if G_ema is not None:
                update_ema(G_ema, net_G, args.ema_beta)
            nimg += len(real)  # (e) real images shown to D
            step += 1
            tick_loss_G += loss_G.detach()
            tick_loss_D += loss_D.detach()
            tick_gp += gp.detach()
            tick_steps += 1
            guard.loss(step, loss_G=loss_G, loss_D=loss_D)
            stage_done = it + 1 == stage.iters
            run_done = stage_done and s == last

            if step % args.tick_steps == 0 or run_done:
                guard.check()
                tick += 1
                kimg = nimg / 1000
                mean_G, mean_D = float(tick_loss_G) / tick_steps, float(tick_loss_D) / tick_steps
                line = progress.tick(tick, kimg, done=step, res=stage.res, alpha=min(alpha, 1.0), loss_G=mean_G,
                                     loss_D=mean_D)
                # (f) per-tick stats
                stats = {
                    "progress/tick": tick, "progress/step": step, "progress/kimg": kimg,
                    "progress/res": stage.res, "progress/stage_iter": it + 1, "progress/alpha": alpha,
                    "timing/total_sec": progress.total_sec, "timing/sec_per_kimg": progress.sec_per_kimg,
                    "Loss/G": mean_G, "Loss/D": mean_D, "Loss/gp": float(tick_gp) / tick_steps,
                    "lr/G": optim_G.param_groups[0]["lr"], "lr/D": optim_D.param_groups[0]["lr"],
                    "resources/max_rss_gb": progress.max_rss_gb,
                }
                stats_writer.write(stats)
                print(line, flush=True)
                tick_loss_G, tick_loss_D, tick_gp, tick_steps = 0.0, 0.0, 0.0, 0

            if args.sample_step and (step % args.sample_step == 0 or run_done):
                save_samples(G_eval, fixed_z, alpha, stage.step, os.path.join(args.logdir, f"samples-{step}.png"))

            if args.eval_step and s == last and (step % args.eval_step == 0 or run_done):
                guard.check_weights(step, G=G_eval)
                # (g) metric of the final-resolution G computed into a variable, then logged
                metric = compute_metric_for(G_eval, alpha, stage.step, args, device)
                append_jsonl(os.path.join(args.logdir, f"metric-{args.metric}.jsonl"),
                             {"metric": args.metric, "value": metric, "step": step, "kimg": nimg / 1000})
                print(f"step {step}  {args.metric} {metric:.4f}", flush=True)
                for name in args.extra_metrics:  # logged only: --metric stays the one a patch may act on
                    value = compute_metric_for(G_eval, alpha, stage.step, args, device, name)
                    append_jsonl(os.path.join(args.logdir, f"metric-{name}.jsonl"),
                                 {"metric": name, "value": value, "step": step, "kimg": nimg / 1000})

            is_snapshot_step = bool(args.snapshot_steps) and step % args.snapshot_steps == 0
            if is_snapshot_step or run_done:
                guard.check_weights(step, G=net_G, D=net_D, G_ema=G_ema)
                # (h) the snapshot dict is built here, in one place; it points at the next iteration
                nxt = (s + 1, 0) if stage_done and not run_done else (s, it + 1)
                snapshot = build_snapshot(net_G, net_D, G_ema, optim_G, optim_D, batches, *nxt, step, nimg, tick,
                                          progress.total_sec, args, plan)
                if is_snapshot_step:
                    save_snapshot(snapshot, os.path.join(args.logdir, f"snapshot-{step}.pt"))
                save_snapshot(snapshot, os.path.join(args.logdir, "last.pt"))

    # (i) final export of the trained generator (the EMA one when --ema_beta is set)
    guard.check_weights(step, G=net_G, G_ema=G_ema)
    save_snapshot({"net_G": G_eval.state_dict(), "z_dim": args.z_dim, "ch": args.ch, "max_res": args.max_res,
                   "ema": G_ema is not None}, os.path.join(args.logdir, "G_final.pt"))
    print(f"done: {step} iterations, {nimg / 1000:.1f} kimg, {args.logdir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
