"""StyleGAN2-ADA main training loop (upstream structure, our code).

One iteration = one batch of reals; the G and D phases (main + lazily-applied regularisation)
each take an optimizer step when `batch_idx % phase.interval == 0`. Multi-process training uses
torch.distributed: parameters are broadcast from rank 0 at start, gradients are flattened,
all-reduced and averaged before every optimizer step, training stats are summed over ranks.

Resume (`resume_pkl`): one of our own .pt snapshots continues exactly (networks, optimizers,
augmentation state, counters, RNG states, sampler position, pending statistics), so N iterations
straight equal N/2 + resume + N/2 on the CPU. An NVlabs pickle, a URL or an exported generator
gives weights only (upstream's transfer-learning semantics: every counter from zero).
"""
import copy
import os
import time

import numpy as np
import torch

import dnnlib
from torch_utils import misc
from torch_utils import training_stats
from torch_utils.ops import conv2d_gradfix
from torch_utils.ops import grid_sample_gradfix
from vendor.common import runlog
from vendor.common.runguard import check_finite_stats, check_finite_weights
from vendor.common.runlock import releases_run_dirs

import metrics.metric_main as metric_main

SNAPSHOT_FORMAT = 'network-snapshot-{kimg}.pt'  # kimg: progress_label(cur_nimg, ...)


# ---------------------------------------------------------------------------------------------
# Small pure helpers (unit-tested on their own).

def whole_kimg_names(total_kimg, kimg_per_tick, every_ticks):
    """Whether upstream's whole-kimg file names (network-snapshot-000012.pt) can never repeat in a run that writes
    a file every `every_ticks` ticks and at the end: two files are then at least every_ticks x kimg_per_tick >= 1
    kimg apart (tick 0 is a single batch), and the last is the first at or past a whole total_kimg. A fractional
    --kimg, or --snap x --tick below 1 kimg (CPU smoke runs), would give several files one name."""
    return float(total_kimg).is_integer() and every_ticks * kimg_per_tick >= 1 - 1e-9


def progress_label(cur_nimg, whole_kimg):
    """The training progress in a file name: upstream's whole kimg ('000012'), or the kimg with the images as three
    decimals ('000000.016', exact: 16 images) when whole kimg could repeat (see whole_kimg_names). One form per
    run, so the names sort in training order."""
    return f'{cur_nimg // 1000:06d}' if whole_kimg else f'{cur_nimg // 1000:06d}.{cur_nimg % 1000:03d}'


def ada_adjust(p, signs_real_mean, target, batch_size, interval, ada_kimg):
    """ADA heuristic: move p by sign(E[sign(D(real))] - target) * batch*interval / (ada_kimg*1000),
    never below 0. Returns p unchanged when no real-sign statistics exist (nan)."""
    if signs_real_mean is None or not np.isfinite(signs_real_mean):
        return float(p)
    step = np.sign(signs_real_mean - target) * (batch_size * interval) / (ada_kimg * 1000)
    return max(float(p) + float(step), 0.0)


def ema_beta(batch_size, cur_nimg, ema_kimg, ema_rampup):
    """Per-step decay for G_ema: half-life of ema_kimg thousand images, shortened early on by the
    ramp-up (half-life at most cur_nimg * ema_rampup)."""
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))


def lazy_reg_optimizer_kwargs(opt_kwargs, reg_interval):
    """Lazy regularisation compensates for the skipped steps: lr*mb_ratio, betas**mb_ratio."""
    mb_ratio = reg_interval / (reg_interval + 1)
    out = dict(opt_kwargs)
    out['lr'] = opt_kwargs['lr'] * mb_ratio
    out['betas'] = tuple(float(beta) ** mb_ratio for beta in opt_kwargs['betas'])
    return out


def plain(obj):
    """Nested EasyDicts/tuples -> plain dicts/lists so snapshots load with weights_only=True."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


@torch.no_grad()
def load_tensors_by_name(module, state, what):
    """Copy every tensor of `module` that `state` (a state_dict) has, by name; extra names in
    `state` (e.g. written by a patched run) are ignored, shape mismatches are an error."""
    own = dict(misc.named_params_and_buffers(module))
    copied = 0
    for name, tensor in own.items():
        if name in state:
            if state[name].shape != tensor.shape:
                raise ValueError(f'resume: {what}.{name} has shape {tuple(state[name].shape)} in the snapshot, '
                                 f'expected {tuple(tensor.shape)} (different network config?)')
            tensor.copy_(state[name])
            copied += 1
    if copied == 0:
        raise ValueError(f'resume: the snapshot holds no tensor of {what} (wrong file?)')


def get_rng_state(device):
    """Every random stream the loop draws from (torch CPU, this CUDA device, numpy's global), as
    tensors and plain numbers so that a snapshot still loads with weights_only=True."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = dict(torch=torch.get_rng_state(), numpy_keys=torch.from_numpy(keys.astype(np.int64)),
                 numpy_pos=int(pos), numpy_has_gauss=int(has_gauss), numpy_cached_gaussian=float(cached))
    if device.type == 'cuda':
        state['cuda'] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state, device):
    torch.set_rng_state(state['torch'])
    np.random.set_state(('MT19937', state['numpy_keys'].numpy().astype(np.uint32), state['numpy_pos'],
                         state['numpy_has_gauss'], state['numpy_cached_gaussian']))
    if device.type == 'cuda' and 'cuda' in state:
        torch.cuda.set_rng_state(state['cuda'], device)


def load_resume(source, cache_dir=None):
    """Read what `resume_pkl` names. Our own snapshot -> its dict with kind 'snapshot' (continued
    exactly); an NVlabs pickle / URL / exported generator -> {'kind', 'G', 'D', 'G_ema'} state_dicts
    (weights only). legacy.load_network never runs code from the file."""
    import legacy  # here, not at the top: legacy imports training.networks
    net = legacy.load_network(source, cache_dir=cache_dir, device='cpu')
    if net['kind'] == 'snapshot':
        return dict(net['state'], kind='snapshot')
    return dict(kind=net['kind'], **{name: (None if net.get(name) is None else net[name].state_dict())
                                     for name in ('G', 'D', 'G_ema')})


def prepare_run_folders(run_dir, resume_pkl=None, snapshot=None):
    """Lock run_dir for this process (a second run into it is refused: runlog.RunDirError) and remove the
    temporaries killed writes left there; an exact resume into the snapshot's own folder drops the stats
    rows logged past the snapshot. The resume source's folder loses its stale temporaries too, unless a
    live run holds its lock. Returns the removed temporaries' paths."""
    source_dir = os.path.dirname(os.path.abspath(resume_pkl)) if resume_pkl and os.path.isfile(resume_pkl) else None
    same = source_dir is not None and os.path.realpath(source_dir) == os.path.realpath(run_dir)
    removed = runlog.prepare_run_dir(run_dir, resume_step=snapshot['cur_nimg'] / 1000 if same and snapshot else None,
                           step_keys=('Progress/kimg',), refuse_existing=False)
    if source_dir is not None and not same:
        removed += runlog.remove_stale_tmp_if_idle(source_dir)
    return removed


def stats_row(fields, timestamp):
    """One stats.jsonl line in upstream's layout: {name: {num, mean, std}} plus a plain timestamp.
    A plain value (a number or a string such as a phase name) becomes {num: 1, mean: value, std: 0}."""
    row = {}
    for name, value in fields.items():
        if isinstance(value, dict) and set(value) == {'num', 'mean', 'std'}:
            row[name] = dict(num=value['num'], mean=value['mean'], std=value['std'])
        else:
            row[name] = dict(num=1, mean=value, std=0.0)
    row['timestamp'] = timestamp
    return row


def setup_snapshot_image_grid(training_set, random_seed=0, grid_size=None):
    """(grid_w, grid_h), uint8 reals [N,C,H,W], labels [N, c_dim]; grid_size overrides the
    upstream size (about a 7680x4320 canvas) which is slow on a CPU."""
    rnd = np.random.RandomState(random_seed)
    if grid_size is None:
        gw = int(np.clip(7680 // training_set.resolution, 7, 32))
        gh = int(np.clip(4320 // training_set.resolution, 4, 32))
    else:
        gw, gh = grid_size
    indices = [int(rnd.randint(len(training_set))) for _ in range(gw * gh)]
    images, labels = zip(*[training_set[i] for i in indices])
    return (gw, gh), np.stack(images), np.stack(labels)


def save_grid(images, path, grid_size):
    """images: float [-1,1] tensor/array or uint8 array [N,C,H,W]."""
    if isinstance(images, np.ndarray) and images.dtype == np.uint8:
        images = images.astype(np.float32) / 127.5 - 1
    runlog.save_image_grid(images, path, grid=grid_size)


# ---------------------------------------------------------------------------------------------

@releases_run_dirs
def training_loop(
    run_dir='.',                    # Where snapshots, grids and stats.jsonl go.
    training_set_kwargs={},         # Dataset constructor spec (class_name + kwargs, e.g. ImageFolderDataset).
    data_loader_kwargs={},          # Forwarded to torch.utils.data.DataLoader (workers, pinning, ...).
    G_kwargs={},                    # Generator constructor spec (class_name + kwargs).
    D_kwargs={},                    # Discriminator constructor spec.
    G_opt_kwargs={},                # G optimizer spec (class_name, lr, betas, eps).
    D_opt_kwargs={},                # D optimizer spec.
    augment_kwargs=None,            # AugmentPipe spec; None means no pipe is built.
    loss_kwargs={},                 # Loss constructor spec (class_name + weights).
    metrics=[],                     # Metric names computed whenever a network snapshot is written.
    metric_kwargs={},               # Extra options for metric_main.calc_metric (num_gen, detector, cache_dir).
    random_seed=0,                  # Base seed; each rank derives its own from it.
    num_gpus=1,                     # World size (one process per device).
    rank=0,                         # This process's index, 0 <= rank < num_gpus.
    device='cuda',                  # 'cuda' or 'cpu'.
    batch_size=4,                   # Reals per iteration, summed over all processes.
    batch_gpu=4,                    # Images per process per accumulation round.
    ema_kimg=10,                    # G_ema half-life, in thousands of images.
    ema_rampup=None,                # Caps the half-life at cur_nimg * this early on; None = no cap.
    G_reg_interval=4,               # Run Greg every N iterations; None folds it into Gmain (Gboth).
    D_reg_interval=16,              # Run Dreg every N iterations; None folds it into Dmain (Dboth).
    augment_p=0,                    # Starting p (fixed p when ada_target is None).
    ada_target=None,                # Desired E[sign(D(real))]; None keeps p constant.
    ada_interval=4,                 # Iterations between two p updates.
    ada_kimg=500,                   # Speed of p: this many kimg would take it from 0 to 1.
    apa=False,                      # Adaptive pseudo augmentation instead of / besides the augment pipe.
    total_kimg=25000,               # Stop after this many thousand reals have been shown.
    kimg_per_tick=4,                # Length of a tick (status line, stats row) in kimg.
    image_snapshot_ticks=50,        # Ticks between fake-image grids; None/0 = never.
    network_snapshot_ticks=50,      # Ticks between .pt snapshots (and metric runs); None/0 = never.
    image_grid_size=None,           # (cols, rows) of the image grids; None = upstream's size.
    resume_pkl=None,                # Our .pt snapshot (exact continuation) or NVlabs pkl / URL (weights only).
    resume_cache_dir=None,          # Where a --resume URL is cached.
    cudnn_benchmark=True,           # Let cuDNN autotune conv algorithms (CUDA only).
    allow_tf32=False,               # TF32 in matmuls/convs: faster on Ampere+, slightly less exact.
    abort_fn=None,                  # Called once per tick; returning True ends the run after that tick.
    progress_fn=None,               # Called with (done_kimg, total_kimg) once per tick.
):
    # Seeds differ per rank so that processes draw different latents.
    start_time = time.time()
    device = torch.device(device)
    np.random.seed(random_seed * num_gpus + rank)
    torch.manual_seed(random_seed * num_gpus + rank)
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = allow_tf32
        torch.backends.cudnn.allow_tf32 = allow_tf32
    conv2d_gradfix.enabled = True         # Mirrors the reference loop; our conv2d_gradfix ignores it.
    grid_sample_gradfix.enabled = True    # The augment pipe needs double backward through grid_sample.
    distributed = num_gpus > 1

    # The resume source is read first: an exact resume also needs the sampler's position.
    resume_data = None
    exact = False
    if resume_pkl is not None:
        if rank == 0:
            print(f'Resuming from "{resume_pkl}"')
        resume_data = load_resume(resume_pkl, cache_dir=resume_cache_dir)
        exact = resume_data['kind'] == 'snapshot'
    if rank == 0:
        prepare_run_folders(run_dir, resume_pkl, resume_data if exact else None)

    # Each rank draws its own share of every batch from an endless sampler.
    if rank == 0:
        print('Reading the dataset...')
    training_set = dnnlib.util.construct_class_by_name(**training_set_kwargs)
    sampler_start = int(resume_data.get('batch_idx', 0)) * batch_size if exact else 0  # indices already drawn
    training_set_sampler = misc.InfiniteSampler(dataset=training_set, rank=rank, num_replicas=num_gpus, seed=random_seed,
                                                start=sampler_start)
    training_set_iterator = iter(torch.utils.data.DataLoader(
        dataset=training_set, sampler=training_set_sampler, batch_size=batch_size // num_gpus, **data_loader_kwargs))
    if rank == 0:
        print()
        print('Images:      ', len(training_set))
        print('Image dims:  ', training_set.image_shape)
        print('Label dims:  ', training_set.label_shape)
        print()

    # Networks start on the device with grads off; phases switch them on one at a time.
    if rank == 0:
        print('Building G and D...')
    common_kwargs = dict(c_dim=training_set.label_dim, img_resolution=training_set.resolution,
                         img_channels=training_set.num_channels)
    G = dnnlib.util.construct_class_by_name(**G_kwargs, **common_kwargs).train().requires_grad_(False).to(device)
    D = dnnlib.util.construct_class_by_name(**D_kwargs, **common_kwargs).train().requires_grad_(False).to(device)

    # Resuming is two-step: weights now, optimizer/augment state once those objects exist.
    if resume_data is not None:
        for name, module in [('G', G), ('D', D)]:
            load_tensors_by_name(module, resume_data[name], name)
    G_ema = copy.deepcopy(G).eval()
    if resume_data is not None:
        # Again by name, so tensors added to G/D since the first load (if any) are restored as well.
        for name, module in [('G', G), ('D', D), ('G_ema', G_ema)]:
            load_tensors_by_name(module, resume_data[name if resume_data.get(name) is not None else 'G'], name)

    if rank == 0:
        for name, module in [('G', G), ('D', D)]:
            count = sum(p.numel() for p in module.parameters())
            print(f'{name}: {count:,} parameters')
        print()

    # Augmentation is only built when it can ever be active (p > 0 now or adapted later).
    if rank == 0:
        print('Preparing augmentation...')
    augment_pipe = None
    ada_stats = None
    if augment_kwargs is not None and (augment_p > 0 or ada_target is not None):
        augment_pipe = dnnlib.util.construct_class_by_name(**augment_kwargs).train().requires_grad_(False).to(device)
        augment_pipe.p.copy_(torch.as_tensor(augment_p))
    apa_module = None
    if apa:
        from training.loss import AdaptivePseudoAugment
        apa_module = AdaptivePseudoAugment().to(device)
        apa_module.p.copy_(torch.as_tensor(augment_p))
    # The quantity ADA (or APA) adapts: exactly one of the two when ada_target is set.
    adaptive = apa_module if apa_module is not None else augment_pipe
    if ada_target is not None and adaptive is not None:
        ada_stats = training_stats.Collector(regex='Loss/signs/real')

    # Rank 0's weights win, so every process starts from the same point.
    if rank == 0:
        print(f'Syncing start state over {num_gpus} process(es)...')
    if distributed:
        for module in [G, D, G_ema, augment_pipe, apa_module]:
            if module is not None:
                for tensor in misc.params_and_buffers(module):
                    torch.distributed.broadcast(tensor.data, src=0)

    # One optimizer per network; with lazy regularisation the main and reg phases share it.
    if rank == 0:
        print('Creating loss and optimizers...')
    loss = dnnlib.util.construct_class_by_name(device=device, G_mapping=G.mapping, G_synthesis=G.synthesis, D=D,
                                               augment_pipe=augment_pipe, apa=apa_module, **loss_kwargs)
    phases = []
    for name, module, opt_kwargs, reg_interval in [('G', G, G_opt_kwargs, G_reg_interval),
                                                   ('D', D, D_opt_kwargs, D_reg_interval)]:
        opt_kwargs = dict(opt_kwargs)
        class_name = opt_kwargs.pop('class_name', 'torch.optim.Adam')
        if 'betas' in opt_kwargs:  # torch wants both floats (a JSON/CLI [0, 0.99] has an int)
            opt_kwargs['betas'] = tuple(float(beta) for beta in opt_kwargs['betas'])
        if reg_interval is None:
            opt = dnnlib.util.construct_class_by_name(module.parameters(), class_name=class_name, **opt_kwargs)
            phases += [dnnlib.EasyDict(name=name + 'both', module=module, opt=opt, interval=1)]
        else:  # separate, less frequent reg phase with compensated lr/betas
            opt_kwargs = lazy_reg_optimizer_kwargs(opt_kwargs, reg_interval)
            opt = dnnlib.util.construct_class_by_name(module.parameters(), class_name=class_name, **opt_kwargs)
            phases += [dnnlib.EasyDict(name=name + 'main', module=module, opt=opt, interval=1)]
            phases += [dnnlib.EasyDict(name=name + 'reg', module=module, opt=opt, interval=reg_interval)]
    G_opt = phases[0].opt
    D_opt = phases[-1].opt

    # Counters, restored from our snapshot when resuming it (a pkl gives weights only: all from zero).
    cur_nimg = 0
    cur_tick = 0
    batch_idx = 0
    elapsed_before = 0.0
    if exact:
        G_opt.load_state_dict(resume_data['G_opt'])
        D_opt.load_state_dict(resume_data['D_opt'])
        for module, key in [(augment_pipe, 'augment_pipe'), (apa_module, 'apa')]:
            if module is not None and resume_data.get(key) is not None:
                module.load_state_dict(resume_data[key])
        if adaptive is not None and resume_data.get('augment_p') is not None:
            adaptive.p.copy_(torch.as_tensor(resume_data['augment_p']))
        if resume_data.get('pl_mean') is not None:
            loss.pl_mean.copy_(torch.as_tensor(resume_data['pl_mean']))
        cur_nimg = int(resume_data.get('cur_nimg', 0))
        cur_tick = int(resume_data.get('cur_tick', 0))
        batch_idx = int(resume_data.get('batch_idx', 0))
        elapsed_before = float(resume_data.get('total_sec', 0.0))

    # Fixed latents for the progress grids (rank 0 only).
    grid_size = grid_z = grid_c = None
    if rank == 0 and image_snapshot_ticks:
        print('Writing reals.png (and the initial fakes)...')
        grid_size, images, labels = setup_snapshot_image_grid(training_set, random_seed, image_grid_size)
        save_grid(images, os.path.join(run_dir, 'reals.png'), grid_size)
        # Own generator: the same grid latents in a resumed run, and the training streams untouched.
        grid_gen = torch.Generator().manual_seed(random_seed)
        grid_z = torch.randn([labels.shape[0], G.z_dim], generator=grid_gen).to(device).split(batch_gpu)
        grid_c = torch.from_numpy(labels).to(device).split(batch_gpu)
        if resume_data is None:
            save_grid(_generate_grid(G_ema, grid_z, grid_c), os.path.join(run_dir, 'fakes_init.png'), grid_size)

    # Only rank 0 writes files; every rank still collects stats for the all-reduce.
    if rank == 0:
        print('Opening stats writers...')
    stats_collector = training_stats.Collector(regex='.*')
    if exact:
        stats_collector.load_state_dict(resume_data.get('stats_collector', {}))
        if ada_stats is not None:
            ada_stats.load_state_dict(resume_data.get('ada_stats', {}))
    stats_metrics = dict()
    stats_writer = None
    stats_tfevents = None
    if rank == 0:
        stats_writer = runlog.StatsWriter(run_dir)
        try:
            import torch.utils.tensorboard as tensorboard
            stats_tfevents = tensorboard.SummaryWriter(run_dir)
        except ImportError:
            pass  # no tensorboard installed: stats.jsonl alone is enough

    # Main loop: one batch of reals per iteration, bookkeeping once per tick.
    if rank == 0:
        print(f'Running until {total_kimg} kimg...')
        print()
    progress = runlog.ProgressLine(start_time=start_time, elapsed_before=elapsed_before, total=total_kimg)  # ETA
    # File names by whole kimg as upstream, unless two files of the run could share one (then kimg.images).
    whole_kimg_snaps = whole_kimg_names(total_kimg, kimg_per_tick, network_snapshot_ticks or 1)
    whole_kimg_grids = whole_kimg_names(total_kimg, kimg_per_tick, image_snapshot_ticks or 1)
    progress.start_from(cur_nimg / 1000)
    tick_start_nimg = cur_nimg
    done = cur_nimg >= total_kimg * 1000
    if progress_fn is not None:
        progress_fn(0, total_kimg)
    if exact and resume_data.get('rng') is not None:
        # Last, so that nothing drawn while setting up (initial weights, ...) shifts the streams.
        rng = resume_data['rng']
        set_rng_state(rng[rank] if isinstance(rng, list) else rng, device)
    while not done:

        # Reals in [-1, 1]; fresh latents and labels for every phase, split into per-round chunks.
        phase_real_img, phase_real_c = next(training_set_iterator)
        phase_real_img = (phase_real_img.to(device).to(torch.float32) / 127.5 - 1).split(batch_gpu)
        phase_real_c = phase_real_c.to(device).split(batch_gpu)
        all_gen_z = torch.randn([len(phases) * batch_size, G.z_dim], device=device)
        all_gen_z = [phase_gen_z.split(batch_gpu) for phase_gen_z in all_gen_z.split(batch_size)]
        all_gen_c = [training_set.get_label(np.random.randint(len(training_set))) for _ in range(len(phases) * batch_size)]
        all_gen_c = torch.from_numpy(np.stack(all_gen_c)).to(device)
        all_gen_c = [phase_gen_c.split(batch_gpu) for phase_gen_c in all_gen_c.split(batch_size)]

        # A phase is skipped unless this iteration falls on its interval.
        for phase, phase_gen_z, phase_gen_c in zip(phases, all_gen_z, all_gen_c):
            if batch_idx % phase.interval != 0:
                continue
            if phase.name == 'Greg' and loss.pl_weight == 0:
                continue  # Nothing to regularise (e.g. cfg cifar).
            if phase.name == 'Dreg' and loss.r1_gamma == 0:
                continue

            # Accumulate gradients over the rounds of this process's share of the batch.
            phase.opt.zero_grad(set_to_none=True)
            phase.module.requires_grad_(True)
            num_rounds = len(phase_real_img)
            for round_idx, (real_img, real_c, gen_z, gen_c) in enumerate(
                    zip(phase_real_img, phase_real_c, phase_gen_z, phase_gen_c)):
                loss.accumulate_gradients(phase=phase.name, real_img=real_img, real_c=real_c, gen_z=gen_z,
                                          gen_c=gen_c, sync=(round_idx == num_rounds - 1), gain=phase.interval)
            phase.module.requires_grad_(False)

            # Average gradients over processes, scrub non-finite values, update weights.
            _allreduce_gradients(phase.module, num_gpus)
            phase.opt.step()

        # Update G_ema (parameters decay towards G; buffers are copied, zipped by order).
        with torch.no_grad():
            beta = ema_beta(batch_size, cur_nimg, ema_kimg, ema_rampup)
            for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b in zip(G_ema.buffers(), G.buffers()):
                b_ema.copy_(b)

        # One iteration done.
        cur_nimg += batch_size
        batch_idx += 1

        # ADA / APA: move p towards the target overfitting signal.
        if ada_stats is not None and batch_idx % ada_interval == 0:
            ada_stats.update()
            new_p = ada_adjust(float(adaptive.p), ada_stats['Loss/signs/real'], ada_target,
                               batch_size, ada_interval, ada_kimg)
            adaptive.p.copy_(torch.as_tensor(new_p))

        # Everything below runs once per tick only.
        done = cur_nimg >= total_kimg * 1000
        if (not done) and (cur_tick != 0) and (cur_nimg < tick_start_nimg + kimg_per_tick * 1000):
            continue

        # The status line values are also reported so they reach stats.jsonl.
        augment_value = float(adaptive.p) if adaptive is not None else 0.0
        extra = dict(augment=f'{augment_value:.3f}')
        if device.type == 'cuda':
            extra['gpumem'] = f'{torch.cuda.max_memory_allocated(device) / 2**30:.2f}GiB'
            torch.cuda.reset_peak_memory_stats()
        line = progress.tick(cur_tick, cur_nimg / 1000, **extra)
        training_stats.report0('Progress/tick', cur_tick)
        training_stats.report0('Progress/kimg', cur_nimg / 1e3)
        training_stats.report0('Timing/total_sec', progress.total_sec)
        training_stats.report0('Timing/sec_per_tick', progress.sec_per_tick)
        training_stats.report0('Timing/sec_per_kimg', progress.sec_per_kimg)
        training_stats.report0('Resources/peak_rss_gb', progress.max_rss_gb)
        training_stats.report0('Progress/augment', augment_value)
        if rank == 0:
            print(line, flush=True)

        # abort_fn lets a caller stop cleanly at a tick boundary (still saving below).
        if (not done) and (abort_fn is not None) and abort_fn():
            done = True
            if rank == 0:
                print()
                print('Stopping early on request...')

        # Fake grid from the fixed latents, so snapshots are comparable over time.
        if rank == 0 and image_snapshot_ticks and (done or cur_tick % image_snapshot_ticks == 0):
            save_grid(_generate_grid(G_ema, grid_z, grid_c),
                      os.path.join(run_dir, f'fakes{progress_label(cur_nimg, whole_kimg_grids)}.png'), grid_size)

        # Means over the tick (and over ranks) of everything reported (before the snapshot, which
        # keeps the collectors' state for an exact resume).
        stats_collector.update()
        stats_dict = stats_collector.as_dict()
        where = f'tick {cur_tick} (kimg {cur_nimg / 1000:.3f})'  # nan/inf: stop before the snapshot and the row
        check_finite_stats(where, stats_dict)

        # Snapshot: state_dicts plus constructor kwargs, loadable with weights_only=True.
        snapshot_path = None
        if network_snapshot_ticks and (done or cur_tick % network_snapshot_ticks == 0):
            check_finite_weights(where, G=G, D=D, G_ema=G_ema)
            rng = get_rng_state(device)
            if distributed:  # every rank has its own streams
                rng_all = [None] * num_gpus
                torch.distributed.all_gather_object(rng_all, {k: v.cpu() if torch.is_tensor(v) else v for k, v in rng.items()})
                rng = rng_all
            snapshot_data = dict(
                G=G.state_dict(), D=D.state_dict(), G_ema=G_ema.state_dict(),
                G_opt=G_opt.state_dict(), D_opt=D_opt.state_dict(),
                augment_p=(adaptive.p.detach().cpu() if adaptive is not None else None),
                augment_pipe=(augment_pipe.state_dict() if augment_pipe is not None else None),
                apa=(apa_module.state_dict() if apa_module is not None else None),
                pl_mean=loss.pl_mean.detach().cpu(),
                cur_nimg=cur_nimg, cur_tick=cur_tick + 1, batch_idx=batch_idx, total_sec=progress.total_sec,
                batch_size=batch_size, num_gpus=num_gpus, rng=rng, stats_collector=stats_collector.state_dict(),
                ada_stats=(ada_stats.state_dict() if ada_stats is not None else None),
                G_kwargs=plain(G_kwargs), D_kwargs=plain(D_kwargs), common_kwargs=plain(common_kwargs),
                training_set_kwargs=plain(training_set_kwargs),
            )
            snapshot_path = os.path.join(run_dir, SNAPSHOT_FORMAT.format(kimg=progress_label(cur_nimg, whole_kimg_snaps)))
            if rank == 0:
                runlog.save_snapshot(snapshot_data, snapshot_path)

            # Evaluate metrics (G_ema, every process takes part like upstream's calc_metric). The
            # RNG streams are forked so that evaluating draws nothing from training's streams.
            for metric in metrics:
                numpy_state = np.random.get_state()
                with torch.random.fork_rng(devices=[device] if device.type == 'cuda' else []):
                    result_dict = metric_main.calc_metric(metric=metric, G=G_ema, dataset_kwargs=training_set_kwargs,
                                                          num_gpus=num_gpus, rank=rank, device=device, **metric_kwargs)
                np.random.set_state(numpy_state)
                if rank == 0:
                    metric_main.report_metric(result_dict, run_dir=run_dir, snapshot_pkl=snapshot_path, kimg=cur_nimg / 1e3)
                stats_metrics.update(result_dict['results'])

        # One stats row per tick (rank 0), in upstream's {num, mean, std} layout, with the SPEC's
        # lower-case names as aliases; TensorBoard mirrors it when available.
        timestamp = time.time()
        if rank == 0:
            fields = dict(stats_dict)
            for alias, name in [('progress/tick', 'Progress/tick'), ('progress/kimg', 'Progress/kimg'),
                                ('timing/total_sec', 'Timing/total_sec'), ('timing/sec_per_tick', 'Timing/sec_per_tick'),
                                ('timing/sec_per_kimg', 'Timing/sec_per_kimg'), ('Loss/G', 'Loss/G/loss'),
                                ('Loss/D', 'Loss/D/loss')]:
                if name in fields:
                    fields[alias] = fields[name]
            stats_writer.write(stats_row(fields, timestamp))
            if stats_tfevents is not None:
                global_step = int(cur_nimg / 1e3)
                for name, value in stats_dict.items():
                    stats_tfevents.add_scalar(name, value.mean, global_step=global_step)
                for name, value in stats_metrics.items():
                    stats_tfevents.add_scalar(f'Metrics/{name}', value, global_step=global_step)
                stats_tfevents.flush()
        if progress_fn is not None:
            progress_fn(cur_nimg // 1000, total_kimg)

        # Next tick starts here.
        cur_tick += 1
        tick_start_nimg = cur_nimg

    # Training finished.
    check_finite_weights(f'kimg {cur_nimg / 1000:.3f}', G=G, G_ema=G_ema)
    if stats_tfevents is not None:
        stats_tfevents.close()
    if rank == 0:
        print()
        print('Training finished.')
    return dict(cur_nimg=cur_nimg, cur_tick=cur_tick, G=G, D=D, G_ema=G_ema)


def _allreduce_gradients(module, num_gpus):
    """Average gradients over processes (one flat all-reduce) and replace nan/inf."""
    params = [param for param in module.parameters() if param.grad is not None]
    if not params:
        return
    flat = torch.cat([param.grad.flatten() for param in params])
    if num_gpus > 1:
        torch.distributed.all_reduce(flat)
        flat /= num_gpus
    misc.nan_to_num(flat, nan=0, posinf=1e5, neginf=-1e5, out=flat)
    for param, grad in zip(params, flat.split([param.numel() for param in params])):
        param.grad = grad.reshape(param.shape)


@torch.no_grad()
def _generate_grid(G_ema, grid_z, grid_c):
    return torch.cat([G_ema(z=z, c=c, noise_mode='const').cpu() for z, c in zip(grid_z, grid_c)])


def construct_from_snapshot(snapshot, name='G_ema', device='cpu'):
    """Rebuild network `name` ('G', 'G_ema' or 'D') from a snapshot dict or path written by this loop.
    Goes through legacy (the one safe path): only our network classes are ever built from a file."""
    import legacy  # here, not at the top: legacy imports training.networks
    if isinstance(snapshot, str):
        result = legacy.load_network(snapshot, device=device)
    else:
        result = legacy.from_checkpoint_dict(snapshot, 'snapshot', device)
    if result.get(name) is None:
        raise legacy.NetworkFileError(f'{snapshot if isinstance(snapshot, str) else "snapshot"}: holds no {name}')
    return result[name]
