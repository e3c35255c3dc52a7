"""StyleGAN2-ADA's metric front end: names, calc_metric(), report_metric().

The computations live in `vendor.common.metrics` (shared by every vendor tree); this module only
maps upstream's names onto them, samples the generator and writes `metric-<name>.jsonl` lines in
upstream's format. `fid_digits` / `kid_digits` are NON-STANDARD (features of a small digits
classifier instead of Inception); their values are not comparable with published FIDs.
"""
import json
import os
import time

import numpy as np
import torch

import dnnlib
from vendor.common import metrics as common_metrics
from vendor.common.metrics import registry

from metrics import perceptual_path_length as ppl  # noqa: E402

# Upstream names first (metric_main.py's registry), then our non-standard digits metrics.
_METRICS = ['fid50k_full', 'kid50k_full', 'pr50k3_full', 'ppl2_wend', 'is50k', 'fid50k', 'kid50k', 'pr50k3',
            'ppl_zfull', 'ppl_wfull', 'ppl_zend', 'ppl_wend', 'fid_digits', 'kid_digits']

_DEFAULT_DETECTORS = {'inception': common_metrics.INCEPTION_URL, 'vgg16': common_metrics.VGG16_URL}

_dataset_cache = {}  # json(dataset_kwargs) -> vendor.common dataset (loading CIFAR every snapshot is slow)


def list_valid_metrics():
    return list(_METRICS)


def is_valid_metric(metric):
    return metric in _METRICS


def check_detectors(metrics, detectors=None, cache_dir=None):
    """Find (or fetch into the cache) every detector file `metrics` need, without loading them:
    a missing detector is a ValueError naming the metric and the flag, before any run starts."""
    from vendor.common.metrics.detectors import resolve_detector_file
    flags = {'inception': '--inception', 'vgg16': '--vgg'}
    for metric in metrics:
        space = 'vgg16' if metric in ppl.PPL_SPECS else registry.get_metric_spec(metric).space
        if space != 'digits':
            spec = dnnlib.EasyDict(space=space)
            source = (detectors or {}).get(spec.space) or _DEFAULT_DETECTORS[spec.space]
            try:
                resolve_detector_file(source, cache_dir)
            except common_metrics.MetricError as err:
                raise ValueError(f'{metric}: {err} (give the file with {flags[spec.space]} PATH)') from err


def _reference_dataset(dataset_kwargs):
    """The whole dataset as trained on, without x-flip or --subset (upstream's "full")."""
    kwargs = dict(dataset_kwargs, xflip=False, max_size=None)
    key = json.dumps(kwargs, sort_keys=True, default=str)
    if key not in _dataset_cache:
        _dataset_cache[key] = dnnlib.util.construct_class_by_name(**kwargs)
    return _dataset_cache[key]


def make_sampler(G, dataset, device, seed=0):
    """G_sample(n) -> [n, C, H, W] images in [-1, 1] with labels drawn from the dataset."""
    generator = torch.Generator().manual_seed(seed)
    rnd = np.random.RandomState(seed)

    @torch.no_grad()
    def G_sample(n):
        z = torch.randn([n, G.z_dim], generator=generator).to(device)
        if dataset.label_dim:
            c = np.stack([dataset.get_label(rnd.randint(len(dataset))) for _ in range(n)])
        else:
            c = np.zeros([n, 0], dtype=np.float32)
        return G(z=z, c=torch.from_numpy(c).to(device)).float()
    return G_sample


def calc_metric(metric, G, dataset_kwargs, num_gpus=1, rank=0, device='cpu', num_gen=None, detectors=None,
                cache_dir=None, batch=64):
    """Evaluate `metric` for generator G. Rank 0 computes; the values are broadcast so every
    process sees the same number (anything that reacts to the metric stays in lockstep).
    `detectors` maps 'inception' / 'vgg16' to a local path or URL (default: upstream's URLs,
    downloaded once into the cache). `num_gen` overrides the metric's sample count (quick checks).
    Returns {'metric', 'results': {key: value}, 'primary': first value, 'total_time', 'total_time_str',
    'num_gpus', 'num_gen'}."""
    if not is_valid_metric(metric):
        raise ValueError(f'--metrics: unknown metric {metric!r}; valid: {", ".join(_METRICS)}')
    spec = registry.get_metric_spec(metric) if metric not in ppl.PPL_SPECS else \
        dnnlib.EasyDict(space='vgg16', is_standard=True, result_keys=(metric,))
    start = time.time()
    values = None
    if rank == 0:
        dataset = _reference_dataset(dataset_kwargs)
        detector = None
        if spec.is_standard:
            detector = (detectors or {}).get(spec.space) or _DEFAULT_DETECTORS[spec.space]
        was_training = G.training
        G.eval()
        try:
            if metric in ppl.PPL_SPECS:  # LPIPS through the same VGG16 detector file as pr50k3
                vgg16 = common_metrics.load_detector(detector, cache_dir=cache_dir, device=device)
                rnd = np.random.RandomState(0)
                labels = lambda n: np.stack([dataset.get_label(rnd.randint(len(dataset))) for _ in range(n)])  # noqa: E731
                results = {metric: ppl.compute_ppl(metric, G, vgg16, labels, num_samples=num_gen, device=device)}
            else:
                results = common_metrics.compute_metric(metric, make_sampler(G, dataset, device), dataset.base,
                                                        num_gen=num_gen, batch=batch, device=device,
                                                        detector=detector, cache_dir=cache_dir)
        finally:
            G.train(was_training)
        values = [results[key] for key in spec.result_keys]
    if num_gpus > 1:
        buffer = torch.zeros(len(spec.result_keys), dtype=torch.float64)
        if rank == 0:
            buffer.copy_(torch.tensor(values, dtype=torch.float64))
        torch.distributed.broadcast(buffer, src=0)
        values = buffer.tolist()
    total_time = time.time() - start
    return dnnlib.EasyDict(
        metric=metric,
        results=dnnlib.EasyDict(zip(spec.result_keys, values)),
        primary=float(values[0]),
        total_time=total_time,
        total_time_str=dnnlib.util.format_time(total_time),
        num_gpus=num_gpus,
        num_gen=num_gen,
    )


def report_metric(result_dict, run_dir=None, snapshot_pkl=None, kimg=None):
    """Print one line and append it as JSON to <run_dir>/metric-<name>.jsonl (upstream's keys; the
    training loop adds `kimg`, the training progress, so readers need not parse the file name)."""
    metric = result_dict['metric']
    line = dict(result_dict, snapshot_pkl=snapshot_pkl, timestamp=time.time())
    if kimg is not None:
        line['kimg'] = kimg
    line = {k: (dict(v) if isinstance(v, dict) else v) for k, v in line.items()}
    if snapshot_pkl is not None:
        line['snapshot_pkl'] = os.path.basename(snapshot_pkl)
    text = json.dumps(line)
    print(text)
    if run_dir is not None and os.path.isdir(run_dir):
        with open(os.path.join(run_dir, f'metric-{metric}.jsonl'), 'at') as f:
            f.write(text + '\n')
