"""Train SNGAN (ResNet, hinge loss) on 32x32 images: the unmodified baseline.

    python vendor/sngan/train.py --data digits --logdir runs/sngan_digits
    python vendor/sngan/train.py --dataset cifar10 --data_root ./data --logdir runs/sngan_cifar10
    python vendor/sngan/train.py --data digits --ch 32 --total_steps 50 --batch_size 16 --logdir /tmp/t

Flags and defaults follow the widely used PyTorch GAN collection (Adam 2e-4, betas (0, 0.9), n_dis 5,
batch 64 for D and 2x that for G, z 128, 100k steps, linear LR decay, G width 256, D width 128, reals in
[-1, 1] plus dequantisation noise U[0, 1/128), no flips), with its syntaxes: `--betas=0.0 --betas=0.9`,
`--flagfile FILE`, `--loss hinge|bce|softplus|was`, `--ema_decay` (off by default). Additions: --data-ratio,
--diffaug, --hflip, --metric, --tick_steps, --snapshot_steps, --resume, --ch, --device.

Run directory (--logdir): stats.jsonl (one JSON object per tick), metric-<name>.jsonl,
samples-<step>.png from fixed latents, snapshot-<step>.pt and last.pt (atomic, weights_only
loadable), G_final.pt at the end.

The loop is kept flat on purpose: patches/sngan.patch adds one line next to each named place.
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import sys

import torch

if __package__:
    from .losses import LOSSES
    from .models import ResDiscriminator32, ResGenerator32
else:  # run as a script (upstream style): the sibling modules live next to this file
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from losses import LOSSES
    from models import ResDiscriminator32, ResGenerator32
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
from vendor.common.metric_flags import check_metric_flags, detector_for
from vendor.common.runguard import FiniteGuard, run_cli
from vendor.common.runlock import releases_run_dirs
from vendor.common.runlog import (ProgressLine, SnapshotError, StatsWriter, append_jsonl,
                                  load_snapshot, prepare_run_dir, RunDirError, save_image_grid,
                                  save_snapshot)

NUM_SAMPLES = 64  # fixed latents for the sample grids (upstream --sample_size default)
# Settings a resumed run must share with its snapshot: each one changes what the continued run computes.
# Everything else (logging, evaluation, snapshots, --device, --logdir, --total_steps upwards) may change.
RESUME_FIXED = ("dataset", "data_ratio", "seed", "z_dim", "ch", "batch_size", "G_batch_size", "lr_G",
                "lr_D", "betas", "n_dis", "loss", "diffaug", "hflip", "ema_decay")
CIFAR10_FOLDER, CIFAR10_ARCHIVE = "cifar-10-batches-py", "cifar-10-python.tar.gz"


def finite_float(text: str) -> float:
    """argparse type: a float that is neither nan nor inf (argparse names the flag in the error)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


class MultiFloat(argparse.Action):
    """Upstream's absl multi_float: `--betas=0.0 --betas=0.9` (repeated) or `--betas 0.0 0.9` (one go).
    The first occurrence replaces the default, later ones append."""

    def __call__(self, parser, namespace, values, option_string=None):
        seen = getattr(namespace, "_multi_seen", set())
        current = list(getattr(namespace, self.dest)) if self.dest in seen else []
        namespace._multi_seen = seen | {self.dest}
        setattr(namespace, self.dest, current + list(values))


def expand_flagfiles(argv: list[str], on_error, _depth: int = 0) -> list[str]:
    """Replace `--flagfile FILE` / `--flagfile=FILE` by the flags in FILE (absl's format: one flag per
    line, `--name=value` or `--name`, `#` and `//` comments; nested flagfiles allowed)."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--flagfile" or arg.startswith("--flagfile="):
            if arg == "--flagfile":
                if i + 1 >= len(argv):
                    on_error("--flagfile: expected a file name")
                path, i = argv[i + 1], i + 2
            else:
                path, i = arg.split("=", 1)[1], i + 1
            if _depth > 8:
                on_error(f"--flagfile: {path}: flagfiles nested more than 8 deep")
            try:
                with open(path, encoding="utf-8") as handle:
                    lines = [line.strip() for line in handle]
            except (OSError, UnicodeDecodeError) as error:
                on_error(f"--flagfile: cannot read {path}: {error}")
            flags = [line for line in lines if line and not line.startswith(("#", "//"))]
            for line in flags:
                if not line.startswith("-"):
                    on_error(f"--flagfile: {path}: not a flag: {line!r}")
            out.extend(expand_flagfiles(flags, on_error, _depth + 1))
            continue
        out.append(arg)
        i += 1
    return out


def build_argparser() -> argparse.ArgumentParser:
    p = flags.ArgumentParser(description="SNGAN (ResNet 32x32, hinge loss) training",
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--flagfile", metavar="FILE", help="read flags from FILE (upstream's absl format, "
                   "one --name=value per line); expanded before the other flags are parsed")
    # data
    p.add_argument("--dataset", "--data", dest="dataset", default="cifar10",
                   help="'cifar10' (python batches under --data_root), 'digits', a CIFAR-10 batch "
                        "folder or .tar.gz, an image folder, or a StyleGAN2-ADA .zip")
    p.add_argument("--data_root", default="./data", help="where --dataset cifar10 is looked up")
    p.add_argument("--data-ratio", "--data_ratio", dest="data_ratio", type=finite_float, default=1.0,
                   help="train on this deterministic fraction (0, 1] of the dataset")
    p.add_argument("--hflip", action="store_true",
                   help="random horizontal flips of the reals (ours; upstream does not flip)")
    p.add_argument("--diffaug", default="", help="DiffAugment policy applied to reals and fakes "
                   "before every D call, e.g. 'color,translation,cutout' ('' = off)")
    # model and optimisation
    p.add_argument("--arch", default="res32", choices=["res32"], help="upstream's architecture flag "
                   "(only the ResNet 32x32 networks are here)")
    p.add_argument("--loss", default="hinge", choices=sorted(LOSSES), help="GAN loss (upstream's names)")
    p.add_argument("--z_dim", type=int, default=128, help="latent size of G's input")
    p.add_argument("--ch", type=int, default=256, help="G width; D width is ch // 2 (upstream: G 256, D 128)")
    p.add_argument("--total_steps", type=int, default=100000, help="generator steps")
    p.add_argument("--batch_size", type=int, default=64, help="real (and fake) images per D step")
    p.add_argument("--G_batch_size", type=int, default=None,
                   help="images per G step (default 2*batch_size, as upstream: 128)")
    p.add_argument("--lr_G", type=finite_float, default=2e-4,
                   help="Adam learning rate of G (decays linearly to 0 over --total_steps)")
    p.add_argument("--lr_D", type=finite_float, default=2e-4,
                   help="Adam learning rate of D (decays linearly to 0 over --total_steps)")
    p.add_argument("--betas", type=finite_float, nargs="+", action=MultiFloat, default=[0.0, 0.9],
                   help="Adam betas: `--betas 0.0 0.9` or upstream's `--betas=0.0 --betas=0.9`")
    p.add_argument("--ema_decay", type=finite_float, default=0.0,
                   help="keep an exponential moving average of G with this decay per G step (e.g. 0.999; "
                        "warm-up min(decay, (1+step)/(10+step))); metrics, sample grids and G_final.pt's "
                        "net_G_ema use it. 0 = off (upstream)")
    p.add_argument("--n_dis", type=int, default=5, help="D steps per G step")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the weights, the data order and the fixed sample latents")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device: cpu, cuda or cuda:N")
    # logging, evaluation, snapshots
    p.add_argument("--logdir", default="./logs/SNGAN_CIFAR10_RES",
                   help="run folder (stats, samples, snapshots, G_final.pt)")
    p.add_argument("--tick_steps", type=int, default=100, help="steps per stats tick")
    p.add_argument("--sample_step", type=int, default=500, help="steps between sample grids (0=off)")
    p.add_argument("--sample_size", type=int, default=NUM_SAMPLES, help="images per sample grid")
    p.add_argument("--eval_step", type=int, default=5000, help="steps between metrics (0=off)")
    p.add_argument("--snapshot_steps", type=int, default=5000, help="steps between snapshots (0=only last)")
    p.add_argument("--num_images", type=int, default=None,
                   help="generated images per metric (default: the metric's own, 50000 for fid)")
    p.add_argument("--metric", default=None,
                   help="metric name for vendor.common.metrics (default fid, fid_digits on digits)")
    p.add_argument("--extra_metrics", default="", type=lambda v: [m for m in v.split(",") if m],
                   help="comma-separated metrics logged next to --metric at every evaluation, e.g. kid_digits")
    p.add_argument("--detector", default=None, help="Inception/VGG detector path or URL for metrics")
    p.add_argument("--metric_cache", default=None, help="cache folder for detectors / statistics")
    p.add_argument("--resume", default=None, help="snapshot (.pt) to continue from")
    # upstream flags that appear in its flagfiles; accepted so those files work unchanged
    p.add_argument("--record", dest="record", action="store_true", default=True,
                   help="evaluate metrics every --eval_step (upstream; --norecord turns metrics off)")
    p.add_argument("--norecord", dest="record", action="store_false", help=argparse.SUPPRESS)
    p.add_argument("--fid_cache", default=None, help="upstream's precomputed FID statistics: not used here "
                   "(reference statistics are computed from the dataset and cached in --metric_cache)")
    p.add_argument("--generate", dest="generate", action="store_true", default=False,
                   help="upstream's sampling mode: not here; use generate.py --network G_final.pt")
    p.add_argument("--nogenerate", dest="generate", action="store_false", help=argparse.SUPPRESS)
    p.add_argument("--pretrain", default=None, help=argparse.SUPPRESS)
    p.add_argument("--output", default=None, help=argparse.SUPPRESS)
    return p


def parse_args(parser, argv=None):
    """parse_args with upstream's --flagfile expanded first."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return parser.parse_args(expand_flagfiles(argv, parser.error))


def check_args(args, parser) -> None:
    """Reject bad flag values before anything is written."""
    if args.generate:
        parser.error("--generate: upstream's sampling mode is not available here; use generate.py --network "
                     "G_final.pt --seeds 0-63 --outdir DIR")
    if len(args.betas) != 2:
        parser.error(f"--betas takes two values (beta1, beta2), got {len(args.betas)}: {args.betas}")
    for i, beta in enumerate(args.betas):
        if not 0.0 <= beta < 1.0:
            parser.error(f"--betas: beta{i + 1} must be in [0, 1), got {beta}")
    for name in ("lr_G", "lr_D"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be > 0, got {getattr(args, name)}")
    if not 0.0 <= args.ema_decay < 1.0:
        parser.error(f"--ema_decay must be in [0, 1) (0 = off), got {args.ema_decay}")
    for name in ("z_dim", "total_steps", "batch_size", "n_dis", "tick_steps", "sample_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.ch < 2:
        parser.error(f"--ch must be >= 2 (D gets ch // 2 channels), got {args.ch}")
    for name in ("sample_step", "eval_step", "snapshot_steps"):
        if getattr(args, name) < 0:
            parser.error(f"--{name} must be >= 0, got {getattr(args, name)}")
    if args.G_batch_size is None:
        args.G_batch_size = 2 * args.batch_size
    if args.G_batch_size < 1:
        parser.error(f"--G_batch_size must be >= 1, got {args.G_batch_size}")
    if not 0.0 < args.data_ratio <= 1.0:
        parser.error(f"--data-ratio must be in (0, 1], got {args.data_ratio}")
    try:
        parse_policy(args.diffaug)
    except ValueError as error:
        parser.error(f"--diffaug: {error}")
    if args.metric is None:
        args.metric = "fid_digits" if args.dataset == "digits" else "fid"
    if args.resume is not None and not os.path.isfile(args.resume):
        parser.error(f"--resume: snapshot file not found: {args.resume}")
    flags.check(parser.error, flags.seed, args.seed, "--seed")
    flags.check(parser.error, flags.device, args.device, "--device")
    flags.check(parser.error, flags.out_dir, args.logdir, "--logdir")
    if not args.record:
        args.eval_step = 0


def resolve_dataset_spec(args) -> str:
    """Upstream's `--dataset cifar10` means the python batches under --data_root."""
    if args.dataset != "cifar10":
        return args.dataset
    for candidate in (CIFAR10_FOLDER, CIFAR10_ARCHIVE):
        path = os.path.join(args.data_root, candidate)
        if os.path.exists(path):
            return path
    raise DatasetError(f"--dataset cifar10: neither {os.path.join(args.data_root, CIFAR10_FOLDER)} "
                       f"nor {os.path.join(args.data_root, CIFAR10_ARCHIVE)} exists (no downloads "
                       f"here; pass --data PATH or --data digits)")


class InfiniteBatches:
    """Endless random batches of a uint8 dataset held as one tensor, as upstream feeds them: scaled to
    [-1, 1], plus dequantisation noise U[0, 1/128) per value (upstream's `x + rand_like(x) / 128`), no
    flips unless `hflip` (ours). Indices come from back-to-back seeded permutations (a batch may span
    two epochs, so even datasets smaller than a batch work). Noise and flips draw from the sampler's
    own generator, whose whole state goes into snapshots, so a resumed run sees exactly the batches it
    would have seen."""

    def __init__(self, images_uint8: torch.Tensor, batch_size: int, seed: int, hflip: bool = False):
        self.images, self.batch_size, self.hflip = images_uint8, batch_size, hflip
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(images_uint8), generator=self.generator)
        self.position = 0

    def _next_indices(self) -> torch.Tensor:
        picked = []
        needed = self.batch_size
        while needed > 0:
            if self.position == len(self.order):
                self.order = torch.randperm(len(self.images), generator=self.generator)
                self.position = 0
            take = min(needed, len(self.order) - self.position)
            picked.append(self.order[self.position:self.position + take])
            self.position += take
            needed -= take
        return torch.cat(picked)

    def next(self, device) -> torch.Tensor:
        batch = self.images[self._next_indices()].to(device=device, dtype=torch.float32)
        batch = batch / 127.5 - 1.0
        batch += (torch.rand(batch.shape, generator=self.generator) / 128).to(device)
        if self.hflip:
            flip = torch.rand(len(batch), generator=self.generator) < 0.5
            batch[flip.to(device)] = batch[flip.to(device)].flip(3)
        return batch

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order.clone(),
                "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order, self.position = state["order"].clone(), int(state["position"])


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resume_config(args) -> dict:
    return {key: (list(getattr(args, key)) if key == "betas" else getattr(args, key)) for key in RESUME_FIXED}


def ema_decay_at(decay: float, step: int) -> float:
    """The decay used at G step `step` (1-based): min(decay, (1 + step) / (10 + step)), the warm-up rule of
    TensorFlow's ExponentialMovingAverage (ours; upstream has no EMA). Without it an average with decay
    0.999 would still be ~90 % the random initialisation after 100 steps."""
    return min(decay, (1.0 + step) / (10.0 + step))


@torch.no_grad()
def update_ema(net_G_ema, net_G, decay: float) -> None:
    """p_ema <- decay * p_ema + (1 - decay) * p for every parameter; buffers (BatchNorm statistics,
    spectral-norm vectors) are copied, so G_ema evaluates with G's current statistics."""
    for p_ema, p in zip(net_G_ema.parameters(), net_G.parameters()):
        p_ema.lerp_(p, 1.0 - decay)
    for b_ema, b in zip(net_G_ema.buffers(), net_G.buffers()):
        b_ema.copy_(b)


def build_snapshot(net_G, net_D, optim_G, optim_D, sched_G, sched_D, batches, step, nimg, tick,
                   total_sec, args, net_G_ema=None) -> dict:
    """Everything a resumed run needs; tensors and plain containers only (weights_only loading)."""
    return {
        "net_G": net_G.state_dict(), "net_D": net_D.state_dict(),
        **({"net_G_ema": net_G_ema.state_dict()} if net_G_ema is not None else {}),
        "optim_G": optim_G.state_dict(), "optim_D": optim_D.state_dict(),
        "sched_G": sched_G.state_dict(), "sched_D": sched_D.state_dict(),
        "step": step, "nimg": nimg, "tick": tick, "total_sec": total_sec,
        "rng": rng_state(), "batches": batches.state_dict(),
        "config": {**resume_config(args), "total_steps": args.total_steps},
    }


def check_resume_config(state: dict, args) -> None:
    """Refuse a resume whose flags would change the continued run, naming the setting (saved vs given)."""
    if not isinstance(state, dict) or "step" not in state or "net_G" not in state:
        raise SnapshotError("not a training snapshot of this script (no step / net_G); G_final.pt cannot be resumed")
    config = state.get("config", {})
    if not isinstance(config, dict):
        raise SnapshotError(f"entry 'config' is a {type(config).__name__}, expected a dict")
    try:
        checks.counter(state["step"], "step")
    except checks.CheckpointError as error:
        raise SnapshotError(str(error)) from None
    given = resume_config(args)
    differ = [f"--{key} (snapshot {config[key]!r}, given {given[key]!r})" for key in RESUME_FIXED
              if key in config and config[key] != given[key]]
    if differ:
        raise SnapshotError("these settings differ from the snapshot's and would change the run: "
                            + ", ".join(differ) + "; resume with the snapshot's values")
    if int(state["step"]) > args.total_steps:
        raise SnapshotError(f"--total_steps {args.total_steps} is below the snapshot's step {int(state['step'])}")
    if args.ema_decay and "net_G_ema" not in state:
        raise SnapshotError("--ema_decay is on but the snapshot has no net_G_ema")


def check_state(state, net_G, net_D, optim_G, optim_D, sched_G, sched_D, batches, net_G_ema=None) -> None:
    """Networks, optimizers, schedulers, counters, RNG and sampler state of a snapshot (vendor.common.checks);
    raises CheckpointError naming the entry."""
    for key, net in (("net_G", net_G), ("net_D", net_D), ("net_G_ema", net_G_ema)):
        if net is not None:
            checks.module_state(checks.require(state, key), net, key)
    for key, opt in (("optim_G", optim_G), ("optim_D", optim_D)):
        checks.optimizer_state(checks.require(state, key), opt, key)
    for key, sched in (("sched_G", sched_G), ("sched_D", sched_D)):
        checks.scheduler_state(checks.require(state, key), sched, key)
    for key in ("step", "nimg", "tick"):
        checks.counter(checks.require(state, key), key)
    checks.seconds(checks.require(state, "total_sec"), "total_sec")
    checks.rng_state(checks.require(state, "rng"), "rng")
    checks.permutation_sampler(checks.require(state, "batches"), len(batches.images), "batches")


def restore_snapshot(state: dict, net_G, net_D, optim_G, optim_D, sched_G, sched_D, batches, args,
                     net_G_ema=None):
    """Inverse of build_snapshot; returns (step, nimg, tick, total_sec)."""
    check_resume_config(state, args)
    try:  # every entry checked against the live objects before any is used
        check_state(state, net_G, net_D, optim_G, optim_D, sched_G, sched_D, batches, net_G_ema)
    except checks.CheckpointError as error:
        raise SnapshotError(str(error)) from None
    net_G.load_state_dict(state["net_G"])
    if net_G_ema is not None:
        net_G_ema.load_state_dict(state["net_G_ema"])
    net_D.load_state_dict(state["net_D"])
    optim_G.load_state_dict(state["optim_G"])
    optim_D.load_state_dict(state["optim_D"])
    sched_G.load_state_dict(state["sched_G"])
    sched_D.load_state_dict(state["sched_D"])
    batches.load_state_dict(state["batches"])
    set_rng_state(state["rng"])
    return int(state["step"]), int(state["nimg"]), int(state["tick"]), float(state["total_sec"])


_full_datasets = {}


def metric_reference_dataset(dataset, args):
    """Metrics compare against the whole training set, also when training on a --data-ratio subset
    (as in the data-efficient GAN literature); the full set is loaded once, at the first evaluation."""
    if args.data_ratio == 1.0:
        return dataset
    spec = resolve_dataset_spec(args)
    if spec not in _full_datasets:
        _full_datasets[spec] = load_dataset(spec, resolution=32)
    return _full_datasets[spec]


def compute_metric_for(net_G, dataset, args, device, name=None) -> float:
    """The value of metric `name` (default --metric), e.g. FID; for two-valued metrics (precision/recall,
    IS mean/std) the first one."""
    # imported here: a run with --eval_step 0 never loads the metrics package or its detectors
    from vendor.common.metrics import compute_metric

    @torch.no_grad()
    def G_sample(n):
        return net_G(torch.randn(n, args.z_dim, device=device))

    mode = net_G.training
    net_G.eval()  # evaluated with BatchNorm running statistics
    saved_rng = rng_state()  # evaluation must not shift the training RNG stream
    try:
        results = compute_metric(name or args.metric, G_sample, metric_reference_dataset(dataset, args),
                                 num_gen=args.num_images,
                                 batch=args.batch_size, device=str(device),
                                 detector=detector_for(name or args.metric, args.detector),
                                 cache_dir=args.metric_cache)
    finally:
        set_rng_state(saved_rng)
        net_G.train(mode)
    return float(next(iter(results.values())))


@torch.no_grad()
def save_samples(net_G, fixed_z, path) -> None:
    mode = net_G.training
    net_G.eval()
    images = net_G(fixed_z)
    net_G.train(mode)
    save_image_grid(images, path, grid=(8, (len(fixed_z) + 7) // 8))


@releases_run_dirs
def main(argv=None):
    parser = build_argparser()
    args = parse_args(parser, argv)
    check_args(args, parser)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    try:
        dataset = load_dataset(resolve_dataset_spec(args), resolution=32, ratio=args.data_ratio,
                               seed=args.seed)
    except DatasetError as error:
        parser.error(f"--dataset: {error}")
    if args.eval_step:  # after the data: a bad --data is the more basic error
        args.detector = check_metric_flags(
            [("--metric", args.metric)] + [("--extra_metrics", name) for name in args.extra_metrics], dataset,
            parser.error, detector=args.detector, cache_dir=args.metric_cache, num_images=args.num_images,
            hint="or use --eval_step 0, or --metric fid_digits with --data digits")
    state = None
    if args.resume is not None:
        try:
            state = load_snapshot(args.resume)
            check_resume_config(state, args)
        except SnapshotError as error:
            parser.error(f"--resume: {args.resume}: {error}")
    if args.fid_cache is not None:
        print(f"note: --fid_cache {args.fid_cache} is not used: reference statistics are computed from the "
              f"dataset and cached", flush=True)
    print(f"dataset {dataset.name}: {len(dataset)} images, {dataset.num_channels}x"
          f"{dataset.resolution}x{dataset.resolution}", flush=True)
    loss_fn_D, loss_fn_G = LOSSES[args.loss]

    batches = InfiniteBatches(torch.from_numpy(dataset.images_uint8()), args.batch_size, args.seed,
                              hflip=args.hflip)
    fixed_z = torch.randn(args.sample_size, args.z_dim,
                          generator=torch.Generator().manual_seed(args.seed + 1)).to(device)
    net_G = ResGenerator32(args.z_dim, ch=args.ch, img_channels=dataset.num_channels).to(device)
    net_D = ResDiscriminator32(ch=args.ch // 2, img_channels=dataset.num_channels).to(device)
    # (a) networks constructed and initialised; optimizers come next

    # the EMA copy is made after (a), so whatever is attached to G there is copied with it
    net_G_ema = copy.deepcopy(net_G).eval() if args.ema_decay else None
    optim_G = torch.optim.Adam(net_G.parameters(), lr=args.lr_G, betas=tuple(args.betas))
    optim_D = torch.optim.Adam(net_D.parameters(), lr=args.lr_D, betas=tuple(args.betas))
    sched_G = torch.optim.lr_scheduler.LambdaLR(optim_G, lambda step: 1 - step / args.total_steps)
    sched_D = torch.optim.lr_scheduler.LambdaLR(optim_D, lambda step: 1 - step / args.total_steps)

    start_step, nimg, tick, total_sec = 0, 0, 0, 0.0
    if state is not None:
        # (h) resume: everything a snapshot holds is restored here
        try:
            start_step, nimg, tick, total_sec = restore_snapshot(
                state, net_G, net_D, optim_G, optim_D, sched_G, sched_D, batches, args, net_G_ema)
        except (SnapshotError, KeyError, RuntimeError, ValueError) as error:
            parser.error(f"--resume: cannot restore {args.resume}: {error}")
        print(f"resumed from {args.resume} at step {start_step}", flush=True)
    G_eval = net_G_ema if net_G_ema is not None else net_G  # what metrics and sample grids see

    try:  # only now: bad flags or data leave nothing behind
        prepare_run_dir(args.logdir, resume_step=start_step if state is not None else None)
    except (RunDirError, OSError) as error:
        parser.error(f"--logdir: {error}")
    stats_writer = StatsWriter(args.logdir, tensorboard=True)  # + TensorBoard events when tensorboard is installed
    runlog.record_flags(args.logdir, args)  # flags.jsonl: the resolved flags of this start
    guard = FiniteGuard()  # a nan/inf loss or weight stops the run before anything is written from it
    progress = ProgressLine(elapsed_before=total_sec, total=args.total_steps)  # the ETA in steps
    progress.start_from(nimg / 1000, done=start_step)
    # per-tick loss sums stay on the device (no sync per step); averaged when the tick is written
    tick_loss_G, tick_loss_D, tick_steps_G, tick_steps_D = 0.0, 0.0, 0, 0

    for step in range(start_step + 1, args.total_steps + 1):
        # discriminator: n_dis steps, real and fake scored in one call
        for _ in range(args.n_dis):
            with torch.no_grad():
                fake = net_G(torch.randn(args.batch_size, args.z_dim, device=device))
            real = batches.next(device)
            logits = net_D(DiffAugment(torch.cat([real, fake]), args.diffaug))
            logits_real, logits_fake = torch.split(logits, [len(real), len(fake)])
            loss_D = loss_fn_D(logits_real, logits_fake)
            optim_D.zero_grad(set_to_none=True)
            loss_D.backward()
            optim_D.step()
            nimg += len(real)  # (e) real images shown to D
            tick_loss_D += loss_D.detach()
            tick_steps_D += 1
            guard.loss(step, loss_D=loss_D)
        # generator
        fake = net_G(torch.randn(args.G_batch_size, args.z_dim, device=device))
        loss_G = loss_fn_G(net_D(DiffAugment(fake, args.diffaug)))
        optim_G.zero_grad(set_to_none=True)
        loss_G.backward()
        optim_G.step()
        if net_G_ema is not None:
            update_ema(net_G_ema, net_G, ema_decay_at(args.ema_decay, step))  # (c) EMA of G after every G step
        sched_G.step(); sched_D.step()  # noqa: E702  (d) linear LR decay, once per step

        tick_loss_G += loss_G.detach()
        tick_steps_G += 1
        guard.loss(step, loss_G=loss_G)

        if step % args.tick_steps == 0 or step == args.total_steps:
            guard.check()
            tick += 1
            kimg = nimg / 1000
            mean_loss_G, mean_loss_D = float(tick_loss_G) / tick_steps_G, float(tick_loss_D) / tick_steps_D
            line = progress.tick(tick, kimg, done=step, step=step, loss_G=mean_loss_G, loss_D=mean_loss_D)
            # (f) per-tick stats
            stats = {
                "progress/tick": tick, "progress/step": step, "progress/kimg": kimg,
                "timing/total_sec": progress.total_sec, "timing/sec_per_kimg": progress.sec_per_kimg,
                "Loss/G": mean_loss_G, "Loss/D": mean_loss_D,
                "lr/G": optim_G.param_groups[0]["lr"], "lr/D": optim_D.param_groups[0]["lr"],
                "resources/max_rss_gb": progress.max_rss_gb,
            }
            stats_writer.write(stats)
            print(line, flush=True)
            tick_loss_G, tick_loss_D, tick_steps_G, tick_steps_D = 0.0, 0.0, 0, 0

        if args.sample_step and (step % args.sample_step == 0 or step == args.total_steps):
            save_samples(G_eval, fixed_z, os.path.join(args.logdir, f"samples-{step}.png"))

        if args.eval_step and (step % args.eval_step == 0 or step == args.total_steps):
            guard.check_weights(step, G=G_eval)
            # (g) metric computed into a variable, then logged
            metric = compute_metric_for(G_eval, dataset, args, device)
            append_jsonl(os.path.join(args.logdir, f"metric-{args.metric}.jsonl"),
                         {"metric": args.metric, "value": metric, "step": step, "kimg": nimg / 1000})
            print(f"step {step}  {args.metric} {metric:.4f}", flush=True)
            for name in args.extra_metrics:  # logged only: --metric stays the one a patch may act on
                value = compute_metric_for(G_eval, dataset, args, device, name)
                append_jsonl(os.path.join(args.logdir, f"metric-{name}.jsonl"),
                             {"metric": name, "value": value, "step": step, "kimg": nimg / 1000})

        is_snapshot_step = bool(args.snapshot_steps) and step % args.snapshot_steps == 0
        if is_snapshot_step or step == args.total_steps:
            guard.check_weights(step, G=net_G, D=net_D, G_ema=net_G_ema)
            # (h) the snapshot dict is built here, in one place
            snapshot = build_snapshot(net_G, net_D, optim_G, optim_D, sched_G, sched_D, batches,
                                      step, nimg, tick, progress.total_sec, args, net_G_ema)
            if is_snapshot_step:
                save_snapshot(snapshot, os.path.join(args.logdir, f"snapshot-{step}.pt"))
            save_snapshot(snapshot, os.path.join(args.logdir, "last.pt"))

    # (i) final export of the trained generator
    guard.check_weights(args.total_steps, G=net_G, G_ema=net_G_ema)
    save_snapshot({"net_G": net_G.state_dict(), "z_dim": args.z_dim, "ch": args.ch,
                   "img_channels": dataset.num_channels,
                   **({"net_G_ema": net_G_ema.state_dict()} if net_G_ema is not None else {})},
                  os.path.join(args.logdir, "G_final.pt"))
    print(f"done: {args.total_steps} steps, {nimg / 1000:.1f} kimg, {args.logdir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
