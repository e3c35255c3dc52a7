"""N iterations straight vs N/2 + --resume + N/2 through a StyleGAN2-ADA tree's train.py, in one process.

    python sg2_resume_worker.py TREE OUTDIR N [train.py flags ...]

TREE is vendor/stylegan2_ada or a patched copy. Writes OUTDIR/result.json: for each compared entry the
first difference found (empty lists = bit-exact): every tensor of the final snapshots (networks, optimizer
states, augment pipe, RNG states, sparse state, ...) and every stats.jsonl row except wall-clock values.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sg2_helpers import first_difference  # noqa: E402  (imported before TREE goes first on sys.path)

TREE, OUTDIR, N = sys.argv[1], sys.argv[2], int(sys.argv[3])
EXTRA = sys.argv[4:]
sys.path.insert(0, os.path.abspath(TREE))
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', 'bench')))

import torch  # noqa: E402

import train  # noqa: E402  (the tree's own train.py)
from torch_utils import training_stats  # noqa: E402
from run_readers import read_stats  # noqa: E402

torch.set_num_threads(1)
TICK = 0.004  # one iteration of batch 4 per tick: every iteration gets a stats row
FLAGS = ['--data', 'digits', '--device', 'cpu', '--cbase', '256', '--cmax', '16', '--map', '2', '--batch', '4',
         '--mbstd-group', '2', '--metrics', 'none', '--workers', '0', '--tick', str(TICK), '--img-snap', '0',
         '--snap', '1000', '--seed', '3'] + EXTRA
WALL_CLOCK = ('Timing/', 'timing/', 'Resources/', 'resources/', 'timestamp', 'total_sec')  # naturally different


def run(outdir, kimg, *more):
    # each run starts as a fresh process would: no statistics left from the previous one
    training_stats._counters.clear()
    training_stats._cumulative.clear()
    training_stats._sync_called = False
    try:
        train.main.main(args=['--outdir', outdir, '--kimg', f'{kimg:g}', *FLAGS, *more], standalone_mode=False)
    except SystemExit as err:  # click's ctx.fail
        if err.code:
            raise
    runs = sorted(os.path.join(outdir, d) for d in os.listdir(outdir))
    run_dir = runs[-1]
    snaps = sorted(f for f in os.listdir(run_dir) if f.startswith('network-snapshot-'))
    return run_dir, os.path.join(run_dir, snaps[-1])


def rows(run_dir):
    return [{k: v for k, v in r.items() if not k.startswith(WALL_CLOCK)} for r in read_stats(run_dir)]


kimg = N * TICK
straight_dir, straight = run(os.path.join(OUTDIR, 'straight'), kimg)
half_dir, half = run(os.path.join(OUTDIR, 'half'), kimg / 2)
resumed_dir, resumed = run(os.path.join(OUTDIR, 'resumed'), kimg, '--resume', half)
a = torch.load(straight, weights_only=True)
b = torch.load(resumed, weights_only=True)
stats_a, stats_b = rows(straight_dir), rows(half_dir) + rows(resumed_dir)
result = dict(
    snapshot=first_difference(a, b, 'snapshot', skip=WALL_CLOCK),
    stats=first_difference(stats_a, stats_b, 'stats', skip=WALL_CLOCK),
    num_rows=[len(stats_a), len(stats_b)],
    iterations=int(a['batch_idx']),
    tensors=sum(1 for net in ('G', 'D', 'G_ema') for _ in a[net]),
)
with open(os.path.join(OUTDIR, 'result.json'), 'w') as f:
    json.dump(result, f, indent=1)
print(json.dumps(result))
