"""Evaluate metrics on the G_ema of a network file (flags as in the reference tool).

  python vendor/stylegan2_ada/calc_metrics.py --metrics=fid50k_full --network=.../network-snapshot-000100.pt
  python vendor/stylegan2_ada/calc_metrics.py --metrics=fid_digits --data=digits --network=...

`--network` takes our .pt snapshots and exports, NVlabs .pkl files and their URLs (read by
legacy.load_network: nothing in the file is executed). `--data` defaults to the dataset the file
records (its class must be one of ours). Results are printed and, for a local file, appended to
<folder of the file>/metric-<name>.jsonl.
"""
import os

import click
import torch

from metrics import metric_main
import legacy
from vendor.common import flags


class CommaSeparatedList(click.ParamType):
    name = 'list'

    def convert(self, value, param, ctx):
        return [] if value in (None, '', 'none') else value.split(',')


@click.command()
@click.pass_context
@click.option('--network', 'network_pkl', help='Network: our .pt snapshot/export, an NVlabs .pkl or its URL', metavar='PATH', required=True)
@click.option('--metrics', help='Metric names, comma-separated, or "none"', type=CommaSeparatedList(), default='fid50k_full', show_default=True)
@click.option('--data', help='Reference dataset [default: the one recorded in the snapshot]', metavar='PATH')
@click.option('--mirror', help='Include mirrored reals, as a --mirror training run did', type=bool, metavar='BOOL')
@click.option('--gpus', help='Process count (this tool supports 1 only)', type=int, default=1, metavar='INT', show_default=True)
@click.option('--verbose', help='Show dataset options and progress', type=bool, default=True, metavar='BOOL', show_default=True)
@click.option('--device', help='cuda or cpu [default: cuda if available]', type=click.Choice(['cpu', 'cuda']))
@click.option('--num-gen', help='Generated images per metric (quick, non-standard counts)', type=int, metavar='INT')
@click.option('--metrics-cache', help='Cache directory for detectors and dataset statistics', metavar='DIR')
@click.option('--inception', help='Inception network: file or URL', metavar='PATH')
@click.option('--vgg', help='VGG16 network: file or URL', metavar='PATH')
def calc_metrics(ctx, network_pkl, metrics, data, mirror, gpus, verbose, device, num_gen, metrics_cache, inception, vgg):
    """Compute the requested metrics for one snapshot."""
    bad = [m for m in metrics if not metric_main.is_valid_metric(m)]
    if bad:
        ctx.fail('\n'.join([f'--metrics: unknown {", ".join(bad)}; choose from:'] + metric_main.list_valid_metrics()))
    if gpus != 1:
        ctx.fail('--gpus: only single-process evaluation is supported by this tool')
    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        flags.device(device, '--device')
    except flags.FlagError as err:
        ctx.fail(str(err))
    if num_gen is not None and num_gen < 2:
        ctx.fail(f'--num-gen: must be at least 2, got {num_gen}')

    try:
        network = legacy.load_network(network_pkl, device=device)
        G = legacy.generator(network)
    except legacy.NetworkFileError as err:
        ctx.fail(f'--network: {err}')

    # load_network has checked the recorded dataset spec against our dataset classes.
    dataset_kwargs = dict(network['training_set_kwargs'] or {})
    if data is not None:
        dataset_kwargs = dict(class_name='training.dataset.ImageFolderDataset', path=data)
    elif not dataset_kwargs:
        ctx.fail('--data: could not look up the training data from the snapshot; please specify it')
    dataset_kwargs.update(max_size=None, xflip=bool(mirror) if mirror is not None else False)
    dataset_kwargs.setdefault('use_labels', G.c_dim > 0)
    dataset_kwargs['resolution'] = G.img_resolution
    if verbose:
        print('Dataset options:', dataset_kwargs)

    run_dir = os.path.dirname(os.path.abspath(network_pkl)) if os.path.isfile(network_pkl) else None
    options = dict(num_gen=num_gen, cache_dir=metrics_cache)
    detectors = {k: v for k, v in (('inception', inception), ('vgg16', vgg)) if v}
    if detectors:
        options['detectors'] = detectors
    for metric in metrics:
        if verbose:
            print(f'Evaluating {metric}...')
        try:
            result_dict = metric_main.calc_metric(metric=metric, G=G, dataset_kwargs=dataset_kwargs, device=device, **options)
        except ValueError as err:  # DatasetError / MetricError name the problem
            ctx.fail(f'{metric}: {err}')
        metric_main.report_metric(result_dict, run_dir=run_dir, snapshot_pkl=network_pkl)


if __name__ == '__main__':
    calc_metrics()  # pylint: disable=no-value-for-parameter
