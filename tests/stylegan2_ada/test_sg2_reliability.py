"""StyleGAN2-ADA promises: a refused run writes nothing (exit 2, one message naming the flag, no run folder),
non-finite numbers are refused, and a resume of our own snapshot is bit-exact on the CPU (N iterations
straight == N/2 + --resume + N/2, every tensor of the final snapshot and every stats row)."""
import json
import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sg2_helpers  # noqa: E402
from sg2_helpers import PYTHON, SG2_ROOT, TINY_FLAGS  # noqa: E402

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'sg2_resume_worker.py')


def refused(tmp_path, extra, flags=TINY_FLAGS):
    train = sg2_helpers.load_script('train')
    outdir = tmp_path / 'runs'
    result = CliRunner().invoke(train.main, ['--outdir', str(outdir)] + list(flags) + [str(e) for e in extra])
    return result, outdir


@pytest.mark.parametrize('extra, flag', [
    (['--mbstd-group', '3'], '--mbstd-group'),        # batch 4: a group of 3 does not divide it
    (['--cbase', '0'], '--cbase'),
    (['--cbase', '16'], '--cbase'),                    # 16 // 32 = 0 channels at 32x32
    (['--map', '0'], '--map'),
    (['--gamma', 'nan'], '--gamma'),
    (['--kimg', 'inf'], '--kimg'),
    (['--target', 'nan'], '--target'),
    (['--tick', 'inf'], '--tick'),
    (['--aug', 'fixed', '--p', 'nan'], '--p'),
    (['--metrics', 'fid50k_full', '--inception', '/nonexistent/inception.pt'], '--inception'),
    (['--metrics', 'pr50k3_full', '--vgg', 'file:///nonexistent/vgg16.pt'], '--vgg'),
])
def test_bad_flags_exit_2_naming_the_flag_and_write_nothing(tmp_path, extra, flag):
    result, outdir = refused(tmp_path, extra)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith('Error:')]
    assert len(errors) == 1 and flag in errors[0], result.output
    assert 'Traceback' not in result.output
    assert not outdir.exists()


def test_garbage_or_foreign_resume_files_are_refused_before_the_run_dir(tmp_path):
    garbage = tmp_path / 'garbage.pt'
    garbage.write_bytes(os.urandom(2000))
    foreign = tmp_path / 'foreign.pt'
    torch.save({'G': {'w': torch.zeros(3)}, 'D': {}, 'G_ema': {}, 'G_opt': {}, 'D_opt': {}, 'cur_nimg': 0,
                'batch_idx': 0}, foreign)  # a snapshot whose networks are not these networks
    for path in (garbage, foreign, tmp_path / 'missing.pt'):
        result, outdir = refused(tmp_path, ['--resume', path])
        assert result.exit_code == 2 and '--resume' in result.output, result.output
        assert 'Traceback' not in result.output and not outdir.exists()


def run_worker(tree, tmp_path, iterations, *flags):
    proc = subprocess.run([PYTHON, WORKER, str(tree), str(tmp_path), str(iterations), *flags], capture_output=True,
                          text=True, env=sg2_helpers.subprocess_env(), timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((tmp_path / 'result.json').read_text())


def test_resume_is_bit_exact_baseline(tmp_path):
    # 10 iterations; the resume at 5 falls between two ADA updates (every 4) and after the only Dreg step
    # (iteration 0, interval 16), so pending ADA statistics and kept-over moments are exercised too.
    result = run_worker(SG2_ROOT, tmp_path, 10)
    assert result['iterations'] == 10 and result['num_rows'] == [10, 10] and result['tensors'] > 100
    assert result['snapshot'] is None and result['stats'] is None, result


def test_first_difference_sees_a_difference_when_there_is_one():
    a = {'G': {'w': torch.zeros(3)}, 'total_sec': 1.0, 'rows': [{'x': float('nan')}]}
    same = {'G': {'w': torch.zeros(3)}, 'total_sec': 2.0, 'rows': [{'x': float('nan')}]}
    assert sg2_helpers.first_difference(a, same, 's', skip=('total_sec',)) is None
    assert 'total_sec' in sg2_helpers.first_difference(a, same, 's')
    assert 'max |diff|' in sg2_helpers.first_difference(a, dict(same, G={'w': torch.tensor([0, 0, 1e-7])}), 's', skip=('total_sec',))
    assert 'keys differ' in sg2_helpers.first_difference(a, dict(same, G={}), 's', skip=('total_sec',))
    assert 'rows[0].x' in sg2_helpers.first_difference(a, dict(same, rows=[{'x': 1.0}]), 's', skip=('total_sec',))


def test_resume_from_an_nvlabs_pickle_is_weights_only_with_upstream_defaults(tmp_path):
    path, G, D, G_ema = sg2_helpers.nvlabs_pickle(tmp_path)
    train = sg2_helpers.load_script('train')
    _, args = train.setup_training_loop_kwargs(**sg2_helpers.TINY_KWARGS, resume=str(path))
    assert args.ema_rampup == 0.05 and 'ada_kimg' not in args      # cfg auto, before the file is read
    _, _, data = train.check_resume(args)
    assert data['kind'] == 'nvlabs-pkl'
    assert args.ada_kimg == 100 and args.ema_rampup is None         # upstream train.py's resume defaults
    assert not (tmp_path / 'MARKER').exists()
    # a short run: counters start from zero, the networks start from the pickle's weights
    from training import training_loop
    args.run_dir = str(tmp_path / 'run')
    args.total_kimg, args.kimg_per_tick, args.image_snapshot_ticks = 0.004, 0.004, None
    result = training_loop.training_loop(rank=0, **args)
    assert result['cur_nimg'] == 4 and result['cur_tick'] == 1
    snap = torch.load(tmp_path / 'run' / 'network-snapshot-000000.004.pt', weights_only=True)
    assert snap['cur_nimg'] == 4 and snap['batch_idx'] == 1
    assert {float(s['step']) for s in snap['G_opt']['state'].values()} == {2.0}  # fresh optimizers: Gmain + Greg
    # buffers no step changes equal the pickle's; trained tensors moved one small step away from it
    name = 'synthesis.b8.conv0.resample_filter'
    assert torch.equal(snap['G'][name], G.state_dict()[name])
    moved = (snap['G']['synthesis.b4.const'] - G.state_dict()['synthesis.b4.const']).abs().max()
    assert 0 < moved < 0.05
    assert not (tmp_path / 'MARKER').exists()

