"""Few-iteration CPU runs of the StyleGAN2-ADA tree (32x32 digits, tiny channels): the CLI
baseline with snapshots, image grids and stats; resume continuing counters and optimizer state;
ADA and APA p updates (hand-computed); DiffAugment; a two-process gloo run whose ranks must end
with identical parameters."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sg2_helpers  # noqa: E402
from sg2_helpers import PYTHON, SG2_ROOT, TINY_FLAGS, TINY_KWARGS  # noqa: E402

from training import training_loop  # noqa: E402

sys.path.insert(0, os.path.join(sg2_helpers.REPO_ROOT, 'bench'))
from run_readers import read_stats  # noqa: E402  (flattens upstream's {num, mean, std} rows)

torch.set_num_threads(2)
REQUIRED_STATS = ['progress/kimg', 'progress/tick', 'timing/total_sec', 'Loss/G', 'Loss/D', 'Progress/augment']


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def run_cli(outdir, *extra, timeout=300):
    cmd = [PYTHON, os.path.join(SG2_ROOT, 'train.py'), '--outdir', str(outdir)] + TINY_FLAGS + list(extra)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=sg2_helpers.subprocess_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def only_run_dir(outdir, index=0):
    runs = sorted(d for d in os.listdir(outdir) if os.path.isdir(os.path.join(outdir, d)))
    return os.path.join(outdir, runs[index])


def check_stats(lines):
    for line in lines:
        for key in REQUIRED_STATS:
            assert key in line, key
        assert np.isfinite(line['Loss/G']) and np.isfinite(line['Loss/D'])
        assert line['Loss/G'] > 0 and line['Loss/D'] > 0  # softplus losses


@pytest.fixture(scope='module')
def baseline_run(tmp_path_factory):
    """3 iterations of batch 4 with ticks of 4 images: ticks at 4, 8, 12 images; snapshots at tick 0
    and at the end (--snap 2 also hits tick 2 = end)."""
    outdir = tmp_path_factory.mktemp('sg2_baseline')
    proc = run_cli(outdir, '--kimg', '0.012', '--tick', '0.004', '--snap', '2')
    return outdir, only_run_dir(outdir), proc.stdout


def test_cli_baseline_outputs(baseline_run):
    outdir, run_dir, stdout = baseline_run
    assert os.path.basename(run_dir) == '00000-digits-auto-kimg0.012-batch4-cbase256-cmax32-ada'
    files = set(os.listdir(run_dir))
    for name in ['reals.png', 'fakes_init.png', 'stats.jsonl', 'log.txt', 'training_options.json']:
        assert name in files, name
    # --kimg 0.012 is fractional: snapshots (tick 0 = 4 images, the end = 12) and grids are named by kimg with the
    # images as decimals, so neither overwrites the other (whole kimg would name both 000000)
    assert sorted(f for f in files if f.startswith('network-snapshot-')) == [
        'network-snapshot-000000.004.pt', 'network-snapshot-000000.012.pt']
    assert sorted(f for f in files if f.startswith('fakes0')) == ['fakes000000.004.png', 'fakes000000.012.png']
    assert not any(f.endswith('.tmp') for f in files)
    raw = read_jsonl(os.path.join(run_dir, 'stats.jsonl'))
    # upstream's layout: every key {num, mean, std} (the SPEC's names included), plus a plain timestamp
    for row in raw:
        assert isinstance(row.pop('timestamp'), float)
        assert all(set(v) == {'num', 'mean', 'std'} for v in row.values())
        assert row['Loss/G'] == row['Loss/G/loss'] and row['Loss/G']['num'] == 4  # one Gmain step of batch 4
    lines = read_stats(run_dir)
    assert [line['progress/tick'] for line in lines] == [0, 1, 2]
    assert [line['progress/kimg'] for line in lines] == pytest.approx([0.004, 0.008, 0.012])
    check_stats(lines)
    assert lines[-1]['timing/total_sec'] > lines[0]['timing/total_sec'] > 0
    # Progress lines as upstream: tick, kimg, time, sec/tick, sec/kimg, memory, augment.
    progress = [line for line in stdout.splitlines() if line.startswith('tick ')]
    assert len(progress) == 3
    for token in ['kimg', 'time', 'eta', 'sec/tick', 'sec/kimg', 'maxrss', 'augment=']:
        assert token in progress[0]
    assert [line.split()[3] for line in progress] == ['0.004', '0.008', '0.012']  # kimg with its digits
    assert progress[-1].split('  eta ')[1].startswith('0s')
    options = json.load(open(os.path.join(run_dir, 'training_options.json')))
    assert options['G_opt_kwargs']['betas'] == [0, 0.99] and options['G_opt_kwargs']['eps'] == 1e-8


def test_snapshot_loads_weights_only_and_holds_everything(baseline_run):
    _, run_dir, _ = baseline_run
    snap = torch.load(os.path.join(run_dir, 'network-snapshot-000000.012.pt'), weights_only=True)
    for key in ['G', 'D', 'G_ema', 'G_opt', 'D_opt', 'augment_p', 'cur_nimg', 'cur_tick', 'G_kwargs', 'common_kwargs']:
        assert key in snap, key
    assert snap['cur_nimg'] == 12 and snap['cur_tick'] == 3 and snap['batch_idx'] == 3
    # Adam step counts, hand-counted: G = 3 Gmain steps + 1 Greg step (batch_idx 0), the two
    # phases sharing one optimizer; D = 3 Dmain + 1 Dreg (batch_idx 0; the next is at 16).
    g_steps = {float(s['step']) for s in snap['G_opt']['state'].values()}
    d_steps = {float(s['step']) for s in snap['D_opt']['state'].values()}
    assert g_steps == {4.0} and d_steps == {4.0}
    # Lazy regularisation: lr * 4/5 and betas ** (4/5) for G; 16/17 for D (cfg auto at 32px: lr 0.0025).
    assert snap['G_opt']['param_groups'][0]['lr'] == pytest.approx(0.0025 * 4 / 5)
    assert snap['D_opt']['param_groups'][0]['lr'] == pytest.approx(0.0025 * 16 / 17)
    assert snap['D_opt']['param_groups'][0]['betas'][1] == pytest.approx(0.99 ** (16 / 17))
    # G_ema differs from G (EMA, not a copy) but has the same keys.
    assert set(snap['G']) == set(snap['G_ema'])
    assert any(not torch.equal(snap['G'][k], snap['G_ema'][k]) for k in snap['G'] if snap['G'][k].is_floating_point())


def test_resume_continues_counters_and_optimizer_state(baseline_run, tmp_path):
    _, run_dir, _ = baseline_run
    snapshot = os.path.join(run_dir, 'network-snapshot-000000.012.pt')
    run_cli(tmp_path, '--kimg', '0.020', '--tick', '0.004', '--snap', '100', '--img-snap', '0', '--resume', snapshot)
    resumed = only_run_dir(tmp_path)
    lines = read_stats(resumed)
    assert [line['progress/kimg'] for line in lines] == pytest.approx([0.016, 0.020])
    assert [line['progress/tick'] for line in lines] == [3, 4]
    check_stats(lines)
    before = torch.load(snapshot, weights_only=True)
    snap = torch.load(os.path.join(resumed, 'network-snapshot-000000.020.pt'), weights_only=True)
    assert snap['cur_nimg'] == 20 and snap['batch_idx'] == 5
    # 5 iterations in all: G 5 Gmain + Greg at batch_idx 0 and 4; D 5 Dmain + Dreg at 0.
    assert {float(s['step']) for s in snap['G_opt']['state'].values()} == {7.0}
    assert {float(s['step']) for s in snap['D_opt']['state'].values()} == {6.0}
    assert lines[0]['timing/total_sec'] > before['total_sec']  # time keeps counting from the snapshot


def _in_process_run(tmp_path, **overrides):
    train = sg2_helpers.load_script('train')
    loop_overrides = {k: overrides.pop(k) for k in list(overrides)
                      if k in ('ada_kimg', 'ada_target', 'ada_interval', 'augment_p')}
    _, args = train.setup_training_loop_kwargs(**dict(TINY_KWARGS, **overrides))
    args.update(loop_overrides)
    args.run_dir = str(tmp_path)
    args.device = 'cpu'
    result = training_loop.training_loop(rank=0, **args)
    return result, read_stats(tmp_path)


def test_ada_p_follows_the_heuristic(tmp_path):
    # A target below any possible E[sign] makes every adjustment +batch*interval/(ada_kimg*1000);
    # adjusting every iteration: 2 iterations of batch 4 -> p = 2 * 4*1/(0.16*1000) = 0.05.
    result, lines = _in_process_run(tmp_path, aug='ada', kimg=0.008, tick=0.008, snap=100, img_snap=0,
                                    ada_kimg=0.16, ada_target=-2.0, ada_interval=1)
    check_stats(lines)
    assert lines[-1]['Progress/augment'] == pytest.approx(0.05, abs=1e-6)
    assert 'Loss/signs/real' in lines[-1]


def test_apa_run_adapts_pseudo_augmentation_probability(tmp_path):
    result, lines = _in_process_run(tmp_path, aug='apa', kimg=0.008, tick=0.008, snap=100, img_snap=0,
                                    ada_kimg=0.16, ada_target=-2.0, ada_interval=1)
    check_stats(lines)
    assert lines[-1]['Progress/augment'] == pytest.approx(0.05, abs=1e-6)
    snap = torch.load(os.path.join(tmp_path, 'network-snapshot-000000.008.pt'), weights_only=True)
    assert float(snap['augment_p']) == pytest.approx(0.05, abs=1e-6)


def test_diffaugment_run_without_lazy_regularisation(tmp_path):
    result, lines = _in_process_run(tmp_path, aug='noaug', diffaug='color,translation,cutout', kimg=0.008,
                                    tick=0.004, snap=100, img_snap=0, lazy_reg=False)
    check_stats(lines)
    assert len(lines) == 2 and lines[-1]['Progress/augment'] == 0.0
    assert 'Loss/D/reg' in lines[-1] and 'Loss/G/reg' in lines[-1]  # R1 and path length in every step
    snap = torch.load(os.path.join(tmp_path, 'network-snapshot-000000.008.pt'), weights_only=True)
    # Gboth/Dboth: one step per iteration with the preset's lr and betas unchanged (no mb_ratio).
    assert {float(s['step']) for s in snap['G_opt']['state'].values()} == {2.0}
    assert {float(s['step']) for s in snap['D_opt']['state'].values()} == {2.0}
    assert snap['D_opt']['param_groups'][0]['lr'] == pytest.approx(0.0025)
    assert snap['D_opt']['param_groups'][0]['betas'] == pytest.approx([0, 0.99])


def test_two_process_gloo_run_keeps_ranks_identical(tmp_path):
    worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'sg2_ddp_worker.py')
    proc = subprocess.run([PYTHON, worker, str(tmp_path)], capture_output=True, text=True, timeout=300,
                          env=sg2_helpers.subprocess_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rank0 = torch.load(os.path.join(tmp_path, 'rank0.pt'), weights_only=True)
    rank1 = torch.load(os.path.join(tmp_path, 'rank1.pt'), weights_only=True)
    for net in ('G', 'D', 'G_ema'):
        assert set(rank0[net]) == set(rank1[net])
        for name in rank0[net]:
            assert torch.equal(rank0[net][name], rank1[net][name]), f'{net}.{name} differs between ranks'
    lines = read_stats(tmp_path)  # rank 0 writes the log
    check_stats(lines)
    assert lines[-1]['progress/kimg'] == pytest.approx(0.008)  # global batch 4 = 2 per rank
