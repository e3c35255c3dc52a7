"""Command-line entry point for our StyleGAN2-ADA trainer (Karras et al. 2020, limited-data GANs);
flag names, presets and defaults follow the reference implementation.

Additions to upstream's flags: --cfg lowshot (the DiffAugment low-shot preset), --aug apa
(adaptive pseudo augmentation), --diffaug POLICY, --data digits (built-in), --device, and small
overrides that make CPU smoke runs possible (--cbase, --cmax, --map, --mbstd-group, --tick,
--img-snap, --grid, --metric-gen). Examples:

  python vendor/stylegan2_ada/train.py --outdir=runs --data=~/datasets/cifar10.zip --cfg=cifar
  python vendor/stylegan2_ada/train.py --outdir=runs --data=digits --device=cpu --cbase=1024 --cmax=64 \
      --batch=8 --kimg=1 --tick=0.2 --snap=5 --metrics=none
"""
import json
import math
import os
import re
import sys
import tempfile

import click
import torch

try:
    import vendor.common  # noqa: F401  (mapped by `pip install -e .`)
except ImportError:  # e.g. a patched copy run outside the clone after a plain `pip install .`
    print("error: cannot import vendor.common (the project's shared data, metrics and logging code): run "
          "`pip install -e .` in the sparse-gan clone, or run this script from inside the clone", file=sys.stderr)
    sys.exit(2)
from vendor.common import checks, flags
import dnnlib
from torch_utils import training_stats
from vendor.common.datasets import DatasetError
from vendor.common.runguard import run_cli


class UserError(Exception):
    pass


# Upstream's presets (ref_gpus, kimg, mb, mbstd, fmaps, lrate, gamma, ema, ramp, map); -1 = from
# the resolution/GPU count ('auto'). 'lowshot': the DiffAugment low-shot preset (100-shot sets).
CFG_SPECS = {
    'auto':      dict(ref_gpus=-1, kimg=25000,  mb=-1, mbstd=-1, fmaps=-1,  lrate=-1,     gamma=-1,   ema=-1,  ramp=0.05, map=2),
    'stylegan2': dict(ref_gpus=8,  kimg=25000,  mb=32, mbstd=4,  fmaps=1,   lrate=0.002,  gamma=10,   ema=10,  ramp=None, map=8),
    'paper256':  dict(ref_gpus=8,  kimg=25000,  mb=64, mbstd=8,  fmaps=0.5, lrate=0.0025, gamma=1,    ema=20,  ramp=None, map=8),
    'paper512':  dict(ref_gpus=8,  kimg=25000,  mb=64, mbstd=8,  fmaps=1,   lrate=0.0025, gamma=0.5,  ema=20,  ramp=None, map=8),
    'paper1024': dict(ref_gpus=8,  kimg=25000,  mb=32, mbstd=4,  fmaps=1,   lrate=0.002,  gamma=2,    ema=10,  ramp=None, map=8),
    'cifar':     dict(ref_gpus=2,  kimg=100000, mb=64, mbstd=32, fmaps=1,   lrate=0.0025, gamma=0.01, ema=500, ramp=0.05, map=2),
    'lowshot':   dict(ref_gpus=1,  kimg=300,    mb=8,  mbstd=4,  fmaps=1,   lrate=0.002,  gamma=10,   ema=10,  ramp=None, map=2),
}
CFG_SNAP = {'lowshot': 10}  # presets that come with their own snapshot interval

# Upstream's transfer-learning source networks for --resume (NVlabs pickles, fetched once into the cache).
_PRETRAINED = 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/'
RESUME_SPECS = {
    'ffhq256': _PRETRAINED + 'ffhq-res256-mirror-paper256-noaug.pkl',
    'ffhq512': _PRETRAINED + 'ffhq-res512-mirror-stylegan2-noaug.pkl',
    'ffhq1024': _PRETRAINED + 'ffhq-res1024-mirror-stylegan2-noaug.pkl',
    'celebahq256': _PRETRAINED + 'celebahq-res256-mirror-paper256-kimg100000-ada-target0.5.pkl',
    'lsundog256': _PRETRAINED + 'lsundog-res256-paper256-kimg100000-noaug.pkl',
}

AUGPIPES = ['blit', 'geom', 'color', 'filter', 'noise', 'cutout', 'bg', 'bgc', 'bgcf', 'bgcfn', 'bgcfnc']


def _fail(message):
    raise UserError(message)


def auto_spec(res, gpus):
    """Upstream's 'auto' rule: values derived from resolution and GPU count."""
    spec = dict(CFG_SPECS['auto'])
    spec['ref_gpus'] = gpus
    spec['mb'] = max(min(gpus * min(4096 // res, 32), 64), gpus)
    spec['mbstd'] = min(spec['mb'] // gpus, 4)
    spec['fmaps'] = 1 if res >= 512 else 0.5
    spec['lrate'] = 0.002 if res >= 1024 else 0.0025
    spec['gamma'] = 0.0002 * (res ** 2) / spec['mb']
    spec['ema'] = spec['mb'] * 10 / 32
    return spec


def setup_training_loop_kwargs(
    data, gpus=1, snap=None, metrics=None, seed=0, cond=False, subset=None, mirror=False, cfg='auto',
    gamma=None, kimg=None, batch=None, aug='ada', p=None, target=None, augpipe=None, resume=None,
    freezed=None, fp32=False, nhwc=False, allow_tf32=False, nobench=False, workers=3,
    diffaug=None, device=None, cbase=None, cmax=None, map_layers=None, mbstd_group=None, tick=None,
    img_snap=None, grid=None, metric_gen=None, metrics_cache=None, inception=None, vgg=None, lazy_reg=True,
):
    """Turn the command line into (desc, training_loop kwargs); UserError names the bad option."""
    args = dnnlib.EasyDict()
    for flag, value in [('--gamma', gamma), ('--kimg', kimg), ('--p', p), ('--target', target), ('--tick', tick)]:
        if value is not None and not math.isfinite(value):
            raise UserError(f'{flag}: {value} is not a finite number')
    for flag, value, low in [('--cbase', cbase, 1), ('--cmax', cmax, 1), ('--map', map_layers, 1),
                             ('--mbstd-group', mbstd_group, 1), ('--workers', workers, 0),
                             ('--metric-gen', metric_gen, 1), ('--seed', seed, 0)]:
        if value is not None and value < low:
            raise UserError(f'{flag}: must be at least {low}, got {value}')
    flags.check(_fail, flags.seed, seed, '--seed')

    # Process count, snapshots, seed and metrics.
    if gpus < 1:
        raise UserError('--gpus must be at least 1')
    if snap is not None and snap < 1:
        raise UserError('--snap needs a value of 1 or more')
    args.num_gpus = gpus
    args.random_seed = seed
    if metrics is None:
        metrics = ['fid50k_full']
    from metrics import metric_main
    bad = [m for m in metrics if not metric_main.is_valid_metric(m)]
    if bad:
        raise UserError(f'--metrics: unknown {", ".join(bad)}; valid: {", ".join(metric_main.list_valid_metrics())}')
    args.metrics = metrics
    args.metric_kwargs = dnnlib.EasyDict()
    if metric_gen is not None:
        args.metric_kwargs.num_gen = metric_gen
    if metrics_cache is not None:
        args.metric_kwargs.cache_dir = metrics_cache
    detectors = {k: v for k, v in (('inception', inception), ('vgg16', vgg)) if v}
    if detectors:
        args.metric_kwargs.detectors = detectors

    # Device.
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if device == 'cuda' and not torch.cuda.is_available():
        raise UserError('--device cuda: no CUDA device is available (use --device cpu)')
    if device == 'cuda' and gpus > torch.cuda.device_count():
        raise UserError(f'--gpus {gpus}: only {torch.cuda.device_count()} CUDA devices available')
    args.device = device

    # Open the dataset once to learn its resolution and size.
    if data is None:
        raise UserError('--data is required')
    data = os.path.expanduser(data) if data != 'digits' else data
    args.training_set_kwargs = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=data,
                                               use_labels=True, max_size=None, xflip=False)
    args.data_loader_kwargs = dnnlib.EasyDict(pin_memory=(device == 'cuda'), num_workers=workers)
    if workers > 0:
        args.data_loader_kwargs.prefetch_factor = 2
    try:
        training_set = dnnlib.util.construct_class_by_name(**dict(args.training_set_kwargs, use_labels=False))
        args.training_set_kwargs.resolution = training_set.resolution  # pinned, so metrics/resume see the same value
        args.training_set_kwargs.max_size = len(training_set)          # pinned too; --subset lowers it
        desc = re.sub(r'[^A-Za-z0-9_.-]+', '_', training_set.name)
        del training_set
    except DatasetError as err:
        raise UserError(f'--data: {err}')
    res = args.training_set_kwargs.resolution

    if cond:
        try:
            labelled = dnnlib.util.construct_class_by_name(**args.training_set_kwargs)
        except DatasetError as err:
            raise UserError(f'--cond: {err}')
        if not labelled.has_labels:
            raise UserError('--cond=True: the dataset has no labels (dataset.json)')
        desc += '-cond'
    else:
        args.training_set_kwargs.use_labels = False
    if subset is not None:
        if not 1 <= subset <= args.training_set_kwargs.max_size:
            raise UserError(f'--subset: expected a count from 1 to {args.training_set_kwargs.max_size}')
        desc += f'-subset{subset}'
        if subset < args.training_set_kwargs.max_size:
            args.training_set_kwargs.max_size = subset
            args.training_set_kwargs.random_seed = args.random_seed
    if mirror:
        desc += '-mirror'
        args.training_set_kwargs.xflip = True

    # Preset hyperparameters, then network and optimizer specs derived from them.
    if cfg not in CFG_SPECS:
        raise UserError(f'--cfg: unknown preset {cfg!r}')
    desc += f'-{cfg}'
    spec = dnnlib.EasyDict(auto_spec(res, gpus) if cfg == 'auto' else CFG_SPECS[cfg])

    args.G_kwargs = dnnlib.EasyDict(class_name='training.networks.Generator', z_dim=512, w_dim=512,
                                    mapping_kwargs=dnnlib.EasyDict(), synthesis_kwargs=dnnlib.EasyDict())
    args.D_kwargs = dnnlib.EasyDict(class_name='training.networks.Discriminator', block_kwargs=dnnlib.EasyDict(),
                                    mapping_kwargs=dnnlib.EasyDict(), epilogue_kwargs=dnnlib.EasyDict())
    args.G_kwargs.synthesis_kwargs.channel_base = args.D_kwargs.channel_base = int(spec.fmaps * 32768)
    args.G_kwargs.synthesis_kwargs.channel_max = args.D_kwargs.channel_max = 512
    args.G_kwargs.mapping_kwargs.num_layers = spec.map
    args.G_kwargs.synthesis_kwargs.num_fp16_res = args.D_kwargs.num_fp16_res = 4  # fp16 in the 4 highest resolutions
    args.G_kwargs.synthesis_kwargs.conv_clamp = args.D_kwargs.conv_clamp = 256     # clamp activations against fp16 overflow
    args.D_kwargs.epilogue_kwargs.mbstd_group_size = spec.mbstd

    args.G_opt_kwargs = dnnlib.EasyDict(class_name='torch.optim.Adam', lr=spec.lrate, betas=[0, 0.99], eps=1e-8)
    args.D_opt_kwargs = dnnlib.EasyDict(class_name='torch.optim.Adam', lr=spec.lrate, betas=[0, 0.99], eps=1e-8)
    args.loss_kwargs = dnnlib.EasyDict(class_name='training.loss.StyleGAN2Loss', r1_gamma=spec.gamma)

    args.total_kimg = spec.kimg
    args.batch_size = spec.mb
    args.batch_gpu = spec.mb // spec.ref_gpus
    args.ema_kimg = spec.ema
    args.ema_rampup = spec.ramp
    args.kimg_per_tick = 4

    if cfg == 'cifar':
        args.loss_kwargs.pl_weight = 0        # the CIFAR preset trains without the path-length term
        args.loss_kwargs.style_mixing_prob = 0  # ... and without mixing regularisation
        args.D_kwargs.architecture = 'orig'     # ... and with a plain (non-resnet) D

    if gamma is not None:
        if gamma < 0:
            raise UserError('--gamma: negative R1 weights are not allowed')
        desc += f'-gamma{gamma:g}'
        args.loss_kwargs.r1_gamma = gamma

    if kimg is not None:
        if kimg <= 0:
            raise UserError('--kimg must be positive')
        desc += f'-kimg{kimg:g}'
        args.total_kimg = kimg

    if batch is not None:
        if not (batch >= 1 and batch % gpus == 0):
            raise UserError('--batch: needs a positive multiple of --gpus')
        desc += f'-batch{batch}'
        args.batch_size = batch
        args.batch_gpu = batch // gpus
    args.batch_gpu = max(args.batch_gpu, 1)
    if args.batch_size % (args.batch_gpu * gpus) != 0:
        args.batch_gpu = args.batch_size // gpus  # a preset's round size that does not divide this batch

    # Small-model / CPU overrides (not upstream).
    if cbase is not None:
        if cbase // res < 1:  # channels at resolution r are min(cbase // r, cmax)
            raise UserError(f'--cbase: {cbase} leaves no channels at {res}x{res}; use at least {res}')
        args.G_kwargs.synthesis_kwargs.channel_base = args.D_kwargs.channel_base = cbase
        desc += f'-cbase{cbase}'
    if cmax is not None:
        args.G_kwargs.synthesis_kwargs.channel_max = args.D_kwargs.channel_max = cmax
        desc += f'-cmax{cmax}'
    if map_layers is not None:
        args.G_kwargs.mapping_kwargs.num_layers = map_layers
    if mbstd_group is not None:
        args.D_kwargs.epilogue_kwargs.mbstd_group_size = mbstd_group
    group = args.D_kwargs.epilogue_kwargs.mbstd_group_size
    if group and args.batch_gpu % min(group, args.batch_gpu) != 0:  # D splits each round into groups
        raise UserError(f'--mbstd-group: a group of {group} does not divide the {args.batch_gpu} images per process '
                        f'and round; choose a divisor or change --batch')
    if not lazy_reg:  # regularise in every step (Gboth/Dboth phases), as the papers' CIFAR-10 setting
        args.G_reg_interval = args.D_reg_interval = None
        desc += '-nolazyreg'
    if tick is not None:
        if tick <= 0:
            raise UserError('--tick must be positive')
        args.kimg_per_tick = tick

    # How D's inputs get augmented (ADA, fixed p, APA or none).
    if aug is None:
        aug = 'ada'
    desc += f'-{aug}'
    args.apa = False
    if aug == 'ada':
        args.ada_target = 0.6
    elif aug == 'noaug':
        pass
    elif aug == 'fixed':
        if p is None:
            raise UserError(f'--aug={aug} requires specifying --p')
    elif aug == 'apa':
        args.apa = True
        args.ada_target = 0.6
    else:
        raise UserError(f'--aug={aug}: unknown mode')

    if p is not None:
        if aug != 'fixed':
            raise UserError('--p can only be specified with --aug=fixed')
        if not 0 <= p <= 1:
            raise UserError('--p: a probability in [0, 1] is expected')
        desc += f'-p{p:g}'
        args.augment_p = p

    if target is not None:
        if aug not in ('ada', 'apa'):
            raise UserError('--target can only be specified with --aug=ada or --aug=apa')
        if not 0 <= target <= 1:
            raise UserError('--target: a value in [0, 1] is expected')
        desc += f'-target{target:g}'
        args.ada_target = target

    assert augpipe is None or isinstance(augpipe, str)
    if augpipe is None:
        augpipe = 'bgc'
    else:
        if aug in ('noaug', 'apa'):
            raise UserError(f'--augpipe cannot be specified with --aug={aug}')
        desc += f'-{augpipe}'
    if augpipe not in AUGPIPES:
        raise UserError(f'--augpipe: unknown pipe {augpipe!r}')
    if aug in ('ada', 'fixed'):
        from training.augment import AUGPIPE_SPECS
        args.augment_kwargs = dnnlib.EasyDict(class_name='training.augment.AugmentPipe', **AUGPIPE_SPECS[augpipe])

    if diffaug:
        from vendor.common.diffaug import parse_policy
        try:
            parse_policy(diffaug)
        except ValueError as err:
            raise UserError(f'--diffaug: {err}')
        args.loss_kwargs.diffaug_policy = diffaug
        desc += '-diffaug_' + diffaug.replace(',', '_')

    # --resume: our .pt snapshot (continued exactly) or an NVlabs pkl / URL / preset name (weights
    # only, upstream's transfer-learning defaults); check_resume() reads it before the run starts.
    # Freeze-D keeps D's first layers fixed.
    if resume is not None and resume != 'noresume':
        if resume in RESUME_SPECS:
            desc += f'-resume{resume}'
            args.resume_pkl = RESUME_SPECS[resume]
        else:
            desc += '-resumecustom'
            args.resume_pkl = resume if '://' in resume else os.path.expanduser(resume)
        if metrics_cache is not None:
            args.resume_cache_dir = metrics_cache

    if freezed is not None:
        if not freezed >= 0:
            raise UserError('--freezed: the layer count cannot be negative')
        desc += f'-freezed{freezed:d}'
        args.D_kwargs.block_kwargs.freeze_layers = freezed

    # Speed/precision switches: fp16 layers, memory layout, cuDNN autotuning, TF32.
    if fp32:
        args.G_kwargs.synthesis_kwargs.num_fp16_res = args.D_kwargs.num_fp16_res = 0
        args.G_kwargs.synthesis_kwargs.conv_clamp = args.D_kwargs.conv_clamp = None
    if nhwc:
        args.G_kwargs.synthesis_kwargs.fp16_channels_last = args.D_kwargs.block_kwargs.fp16_channels_last = True
    if nobench:
        args.cudnn_benchmark = False
    if allow_tf32:
        args.allow_tf32 = True

    # Snapshots: the preset's interval (50 upstream, 10 for lowshot) unless --snap is given.
    snap = snap if snap is not None else CFG_SNAP.get(cfg, 50)
    args.image_snapshot_ticks = args.network_snapshot_ticks = snap
    if img_snap is not None:
        args.image_snapshot_ticks = img_snap if img_snap > 0 else None
    if grid is not None:
        args.image_grid_size = grid
    return desc, args


def build_networks(args):
    """G and D as the training loop will build them (on the CPU), for checks before the run starts."""
    dataset = dnnlib.util.construct_class_by_name(**args.training_set_kwargs)
    common = dict(c_dim=dataset.label_dim, img_resolution=dataset.resolution, img_channels=dataset.num_channels)
    del dataset
    return (dnnlib.util.construct_class_by_name(**args.G_kwargs, **common),
            dnnlib.util.construct_class_by_name(**args.D_kwargs, **common))


def check_resume(args):
    """Read --resume now, before anything is written: an unreadable file, a network of another shape
    or a snapshot of another batch is a UserError. For an NVlabs pkl / URL, apply upstream's resume
    defaults (ADA reacts faster, no EMA ramp-up). Returns (G, D, resume data) or None."""
    if args.get('resume_pkl') is None:
        return None
    from training import training_loop
    source = args.resume_pkl
    try:
        data = training_loop.load_resume(source, cache_dir=args.get('resume_cache_dir'))
    except (ValueError, RuntimeError, OSError) as err:  # the loaders' own errors name the file
        raise UserError(f'--resume: {err}')
    if data['kind'] == 'snapshot':
        for key in ('G', 'D', 'G_ema', 'G_opt', 'D_opt', 'cur_nimg', 'batch_idx'):
            if key not in data:
                raise UserError(f'--resume: {source} is not a complete training snapshot (no {key!r} entry)')
        try:
            for key in ('batch_size', 'num_gpus'):
                if data.get(key) is not None:
                    checks.counter(data[key], key, 1)
        except checks.CheckpointError as err:
            raise UserError(f'--resume: {checks.in_file(source, err)}')
        for flag, key, given in [('--batch', 'batch_size', args.batch_size), ('--gpus', 'num_gpus', args.num_gpus)]:
            if data.get(key) is not None and int(data[key]) != given:  # the sampler position depends on both
                raise UserError(f'{flag}: the snapshot was trained with {data[key]}, given {given} '
                                f'(an exact resume needs the same value)')
    else:
        missing = [name for name in ('G', 'D') if data.get(name) is None]
        if missing:
            raise UserError(f'--resume: {source} holds no {" or ".join(missing)} (training needs both; an exported '
                            f'generator is for generate.py / calc_metrics.py)')
        args.ada_kimg = 100        # upstream: make ADA react faster at the beginning
        args.ema_rampup = None     # upstream: no EMA ramp-up when starting from a trained network
    G, D = build_networks(args)
    for name, net in [('G', G), ('D', D)]:
        try:
            training_loop.load_tensors_by_name(net, data[name], name)
        except ValueError as err:
            raise UserError(f'--resume: {source}: {err}')
    return G, D, data


def check_dataset(args):
    """Decode every training image once, in --workers processes (the dataset is read lazily during
    training), so a corrupt file is refused before the run folder exists; --cond's labels were read by
    setup_training_loop_kwargs."""
    try:
        dataset = dnnlib.util.construct_class_by_name(**args.training_set_kwargs)
        dataset.check_images(args.data_loader_kwargs.num_workers)
    except DatasetError as err:
        raise UserError(f'--data: {err}')

def check_snapshot(data, G, D, args):
    """Optimizer, counters, RNG, augmentation and statistics state of one of our snapshots
    (vendor.common.checks; the networks were checked by legacy.load_network)."""
    for key, net in [('G_opt', G), ('D_opt', D)]:  # one Adam per network, over all its parameters
        checks.optimizer_state(data[key], torch.optim.Adam(net.parameters()), key)
    cur_nimg = checks.counter(checks.require(data, 'cur_nimg'), 'cur_nimg')
    checks.counter(checks.require(data, 'cur_tick'), 'cur_tick')
    batch_idx = checks.counter(checks.require(data, 'batch_idx'), 'batch_idx')
    if batch_idx * args.batch_size != cur_nimg:  # both advance once per iteration of --batch images
        raise checks.CheckpointError(f"entry 'batch_idx' = {batch_idx} does not match 'cur_nimg' = {cur_nimg} at "
                                     f"batch {args.batch_size} (the sampler would start elsewhere)")
    checks.seconds(checks.require(data, 'total_sec'), 'total_sec')
    if data.get('augment_p') is not None:
        checks.number(data['augment_p'], 'augment_p', 0.0, 1.0)
    if data.get('pl_mean') is not None:
        checks.number(data['pl_mean'], 'pl_mean')
    for key in ('augment_pipe', 'apa'):
        if data.get(key) is not None:
            checks.tensors_like(data[key], {}, key, extra_ok=True)
    for key in ('stats_collector', 'ada_stats'):  # {pending, moments: {name: [count, sum, sum of squares]}}
        collector = data.get(key)
        if collector is None:
            continue
        if not isinstance(collector, dict):
            raise checks.CheckpointError(f"entry '{key}' is a {type(collector).__name__}, expected a dict")
        for part in ('pending', 'moments'):
            moments = collector.get(part, {})
            if not isinstance(moments, dict):
                raise checks.CheckpointError(f"entry '{key}.{part}' is a {type(moments).__name__}, expected a dict")
            for name, value in moments.items():
                checks.tensor(value, f'{key}.{part}.{name}', shape=(training_stats._num_moments,))
    rng = data.get('rng')
    if rng is not None:
        states = rng if isinstance(rng, list) else [rng]
        if isinstance(rng, list) and len(rng) != args.num_gpus:
            raise checks.CheckpointError(f"entry 'rng' holds {len(rng)} per-process states, expected {args.num_gpus}")
        for i, state in enumerate(states):
            where = f'rng[{i}]' if isinstance(rng, list) else 'rng'
            checks.rng_state(state, where)
            keys = checks.tensor(checks.require(state, 'numpy_keys', where), f'{where}.numpy_keys', shape=(624,))
            if keys.dtype.is_floating_point or bool(((keys < 0) | (keys >= 2 ** 32)).any()):
                raise checks.CheckpointError(f"entry '{where}.numpy_keys' is not a numpy MT19937 key array")
            checks.counter(checks.require(state, 'numpy_pos', where), f'{where}.numpy_pos', 0, 624)
            checks.counter(checks.require(state, 'numpy_has_gauss', where), f'{where}.numpy_has_gauss', 0, 1)
            checks.number(checks.require(state, 'numpy_cached_gaussian', where), f'{where}.numpy_cached_gaussian')


def check_detectors(args):
    """Fetch (or find in the cache) the detectors the metrics need, so a missing one fails now."""
    from metrics import metric_main
    try:
        metric_main.check_detectors(args.metrics, args.metric_kwargs.get('detectors'), args.metric_kwargs.get('cache_dir'))
    except ValueError as err:
        raise UserError(f'--metrics {err}')
    from vendor.common.metric_flags import check_digits_only
    from vendor.common.metrics.registry import METRICS
    if any(m in METRICS and METRICS[m].space == 'digits' for m in args.metrics):  # built-in digits only
        reference = metric_main._reference_dataset(args.training_set_kwargs)
        check_digits_only([('--metrics', m) for m in args.metrics], reference.base, _fail, data_flag='--data')


# ---------------------------------------------------------------------------------------------

def subprocess_fn(rank, args, temp_dir):
    local_rank = int(os.environ.get('LOCAL_RANK', rank))  # torchrun: the GPU index on this node
    dnnlib.util.Logger(file_name=os.path.join(args.run_dir, 'log.txt'), file_mode='a', should_flush=True)

    # Spawned workers meet through a file in temp_dir; under torchrun the group already exists.
    if args.num_gpus > 1:
        if not torch.distributed.is_initialized():
            backend = 'nccl' if args.device == 'cuda' else 'gloo'
            init_file = os.path.abspath(os.path.join(temp_dir, '.torch_distributed_init'))
            torch.distributed.init_process_group(backend=backend, init_method=f'file://{init_file}',
                                                 rank=rank, world_size=args.num_gpus)
        sync_device = torch.device('cuda', local_rank) if args.device == 'cuda' else torch.device('cpu')
    else:
        sync_device = None
    training_stats.init_multiprocessing(rank=rank, sync_device=sync_device)

    device = args.device
    if device == 'cuda':
        torch.cuda.set_device(local_rank)
        device = f'cuda:{local_rank}'
    from training import training_loop
    kwargs = dict(args)
    kwargs['device'] = device
    training_loop.training_loop(rank=rank, **kwargs)


def next_run_dir(outdir, desc):
    prev_run_dirs = [x for x in os.listdir(outdir) if os.path.isdir(os.path.join(outdir, x))] if os.path.isdir(outdir) else []
    prev_run_ids = [re.match(r'^\d+', x) for x in prev_run_dirs]
    prev_run_ids = [int(x.group()) for x in prev_run_ids if x is not None]
    cur_run_id = max(prev_run_ids, default=-1) + 1
    return os.path.join(outdir, f'{cur_run_id:05d}-{desc}')


class CommaSeparatedList(click.ParamType):
    name = 'list'

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        if value is None or value.lower() == 'none' or value == '':
            return []
        return value.split(',')


class GridSize(click.ParamType):
    name = 'COLSxROWS'

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        match = re.fullmatch(r'(\d+)x(\d+)', str(value))
        if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
            self.fail(f'{value!r} is not of the form COLSxROWS (e.g. 4x4)', param, ctx)
        return int(match.group(1)), int(match.group(2))


@click.command()
@click.pass_context
# Run control.
@click.option('--outdir', help='Parent directory; each run gets a numbered subdirectory', required=True, metavar='DIR')
@click.option('--gpus', help='Number of processes (GPUs, or CPU workers with --device cpu) [default: 1]', type=int, metavar='INT')
@click.option('--snap', help='Ticks between network snapshots and metric runs [default: 50 ticks]', type=int, metavar='INT')
@click.option('--metrics', help='Metrics per snapshot, comma-separated, or "none" [default: fid50k_full]', type=CommaSeparatedList())
@click.option('--seed', help='Seed for weights and sampling [default: 0]', type=int, metavar='INT')
@click.option('-n', '--dry-run', help='Only show the resolved options, do not train', is_flag=True)
# Data.
@click.option('--data', help='Training data: a zip, image folder, CIFAR-10 batches, or "digits" [required]', metavar='PATH', required=True)
@click.option('--cond', help='Condition G and D on the labels from dataset.json [default: false]', type=bool, metavar='BOOL')
@click.option('--subset', help='Use a random subset of N images [default: all]', type=int, metavar='INT')
@click.option('--mirror', help='Also show horizontally mirrored images [default: false]', type=bool, metavar='BOOL')
# Presets and their overrides.
@click.option('--cfg', help='Hyperparameter preset [default: auto]', type=click.Choice(list(CFG_SPECS)))
@click.option('--gamma', help='R1 weight instead of the preset value', type=float)
@click.option('--kimg', help='Training length instead of the preset value', type=float, metavar='KIMG')
@click.option('--batch', help='Total batch instead of the preset value', type=int, metavar='INT')
# Augmenting what D sees.
@click.option('--aug', help='How D inputs are augmented [default: ada]', type=click.Choice(['noaug', 'ada', 'fixed', 'apa']))
@click.option('--p', help='Constant augment strength used by --aug=fixed', type=float)
@click.option('--target', help='Overfitting level ADA/APA steer towards [default: 0.6]', type=float)
@click.option('--augpipe', help='Set of augmentations in the pipe [default: bgc]', type=click.Choice(AUGPIPES))
@click.option('--diffaug', help='DiffAugment policy applied before every D call, e.g. color,translation,cutout', metavar='POLICY')
# Starting from earlier weights.
@click.option('--resume', help='Our .pt snapshot (continue exactly), or an NVlabs pkl, URL or ' + '|'.join(RESUME_SPECS) +
              ' (weights only) [default: noresume]', metavar='PT|PKL')
@click.option('--freezed', help='Keep this many D layers fixed (Freeze-D) [default: 0 layers]', type=int, metavar='INT')
# Speed and precision.
@click.option('--fp32', help='Keep every layer in float32 (no fp16)', type=bool, metavar='BOOL')
@click.option('--nhwc', help='Channels-last layout for the fp16 layers', type=bool, metavar='BOOL')
@click.option('--nobench', help='Turn off cuDNN autotuning', type=bool, metavar='BOOL')
@click.option('--allow-tf32', help='Permit TF32 math in matmuls and convolutions', type=bool, metavar='BOOL')
@click.option('--workers', help='DataLoader worker processes [default: 3]', type=int, metavar='INT')
# Additions (not upstream).
@click.option('--device', help='cuda or cpu [default: cuda if available]', type=click.Choice(['cpu', 'cuda']))
@click.option('--cbase', help='Override channel_base of G and D (small models for CPU runs)', type=int, metavar='INT')
@click.option('--cmax', help='Override channel_max of G and D', type=int, metavar='INT')
@click.option('--map', 'map_layers', help='Override number of mapping layers', type=int, metavar='INT')
@click.option('--mbstd-group', help='Override minibatch-std group size', type=int, metavar='INT')
@click.option('--tick', help='Override kimg per tick [default: 4]', type=float, metavar='KIMG')
@click.option('--img-snap', help='Image snapshot interval in ticks, 0 = none [default: --snap]', type=int, metavar='INT')
@click.option('--grid', help='Image grid size [default: upstream\'s, about 7680x4320 pixels]', type=GridSize())
@click.option('--lazy-reg', help='Lazy regularization (G every 4, D every 16 steps) [default: true]', type=bool, metavar='BOOL')
@click.option('--metric-gen', help='Generated images per metric (quick, non-standard counts)', type=int, metavar='INT')
@click.option('--metrics-cache', help='Cache directory for detectors and dataset statistics', metavar='DIR')
@click.option('--inception', help='Inception detector file or URL (fid/kid/is)', metavar='PATH')
@click.option('--vgg', help='VGG16 detector file or URL (pr)', metavar='PATH')
def main(ctx, outdir, dry_run, **config_kwargs):
    """StyleGAN2-ADA training (Karras et al. 2020) on a dataset zip, image folder, CIFAR-10 or the built-in digits."""
    dnnlib.util.Logger(should_flush=True)
    config_kwargs = {k: v for k, v in config_kwargs.items() if v is not None}
    flags.check(ctx.fail, flags.out_dir, outdir, '--outdir')

    # torchrun: every process runs this script (WORLD_SIZE/RANK set); --gpus follows WORLD_SIZE.
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    torchrun_rank = int(os.environ.get('RANK', '0')) if world_size > 1 else None
    if torchrun_rank is not None:
        if config_kwargs.get('gpus', world_size) != world_size:
            ctx.fail(f'--gpus={config_kwargs["gpus"]} disagrees with torchrun WORLD_SIZE={world_size}')
        config_kwargs['gpus'] = world_size

    # Flags -> the training loop's keyword arguments (fails early on bad combinations).
    try:
        run_desc, args = setup_training_loop_kwargs(**config_kwargs)
        resumed = check_resume(args)
    except UserError as err:
        ctx.fail(err)

    if resumed is not None and resumed[2]['kind'] == 'snapshot':
        try:  # every entry the training loop restores, against G and D as set up for the run
            check_snapshot(resumed[2], resumed[0], resumed[1], args)
        except checks.CheckpointError as err:
            ctx.fail(f'--resume: {checks.in_file(args.resume_pkl, err)}')

    # Rank 0 names the run directory for everyone.
    if torchrun_rank is not None:
        torch.distributed.init_process_group(backend='nccl' if args.device == 'cuda' else 'gloo', init_method='env://')
        names = [next_run_dir(outdir, run_desc) if torchrun_rank == 0 else None]
        torch.distributed.broadcast_object_list(names, src=0)
        args.run_dir = names[0]
    else:
        args.run_dir = next_run_dir(outdir, run_desc)
    assert not os.path.exists(args.run_dir) or torchrun_rank not in (None, 0)

    # Echo the resolved configuration before anything is written.
    if torchrun_rank in (None, 0):
        print()
        print('Resolved options:')
        print(json.dumps(args, indent=2, default=str))
        print()
        print(f'Run directory:      {args.run_dir}')
        print(f'Dataset:            {args.training_set_kwargs.path}')
        print(f'Length:             {args.total_kimg} kimg')
        print(f'Processes:          {args.num_gpus}')
        print(f'Images used:        {args.training_set_kwargs.max_size}')
        print(f'Resolution:         {args.training_set_kwargs.resolution}')
        print(f'Uses labels:        {args.training_set_kwargs.use_labels}')
        print(f'Mirrored copies:    {args.training_set_kwargs.xflip}')
        print()

    # --dry-run stops before the run directory exists.
    if dry_run:
        print('Dry run; exiting.')
        return
    try:
        check_dataset(args)
        check_detectors(args)  # the last check: nothing has been written yet
    except UserError as err:
        ctx.fail(err)
    del resumed

    # The options file lets a run be inspected or repeated later.
    if torchrun_rank in (None, 0):
        print('Creating the run directory...')
        os.makedirs(args.run_dir, exist_ok=(torchrun_rank is not None))
        with open(os.path.join(args.run_dir, 'training_options.json'), 'wt') as f:
            json.dump(args, f, indent=2, default=str)
    if torchrun_rank is not None:
        torch.distributed.barrier()

    # One process per --gpus; a single one runs in this process (easier to debug).
    print('Starting training process(es)...')
    if torchrun_rank is not None:
        subprocess_fn(rank=torchrun_rank, args=args, temp_dir=None)
        return
    torch.multiprocessing.set_start_method('spawn', force=True)
    with tempfile.TemporaryDirectory() as temp_dir:
        if args.num_gpus == 1:
            subprocess_fn(rank=0, args=args, temp_dir=temp_dir)
        else:
            torch.multiprocessing.spawn(fn=subprocess_fn, args=(args, temp_dir), nprocs=args.num_gpus)


if __name__ == '__main__':
    sys.exit(run_cli(main))  # a nan/inf loss or a failed write: one message, exit 1
