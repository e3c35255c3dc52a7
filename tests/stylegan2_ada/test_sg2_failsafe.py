"""StyleGAN2-ADA runs that fail safely (issue 23, items 2, 2b, 3, 4): a full disk at a snapshot write, an absurd
learning rate, a locked run folder, stale temporaries. The CLI runs in-process (click, standalone_mode off)
through the script's entry wrapper, as `python train.py` does."""
import os
import re
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'vendor_common'))
import failsafe as fs  # noqa: E402
import sg2_helpers  # noqa: E402
from sg2_helpers import TINY_FLAGS  # noqa: E402
from vendor.common import runlog  # noqa: E402
from vendor.common.runguard import run_cli  # noqa: E402

# 4 iterations of batch 4, one per tick, a snapshot every tick (network-snapshot-000000.004.pt ... 000000.016.pt)
FLAGS = TINY_FLAGS + ['--kimg', '0.016', '--tick', '0.004', '--snap', '1', '--img-snap', '0', '--seed', '3']


def fresh_training_stats():
    """training_stats' process-wide accumulators as a fresh process has them (a NaN summed into them stays there)."""
    from torch_utils import training_stats
    training_stats._counters.clear()
    training_stats._cumulative.clear()
    training_stats._sync_called = False


@pytest.fixture(autouse=True)
def _leave_training_stats_clean():
    """These runs happen in the test process: later tests in this worker must not inherit their NaN moments."""
    yield
    fresh_training_stats()


def cli(capsys, outdir, *more):
    """(exit status, output, run folder) of one train.py run."""
    train = sg2_helpers.load_script('train')
    fresh_training_stats()   # as a fresh process starts
    before = set(os.listdir(outdir)) if os.path.isdir(outdir) else set()

    def main():
        train.main.main(args=['--outdir', str(outdir), *FLAGS, *more], standalone_mode=False)
        return 0
    capsys.readouterr()
    code = run_cli(main)
    new = sorted(set(os.listdir(outdir)) - before)
    out = capsys.readouterr()  # upstream's Logger mirrors stderr into stdout (and log.txt)
    return code, out.out + out.err, os.path.join(outdir, new[-1]) if new else None


def tick_rows(run_dir):
    rows = [{k: v for k, v in r.items() if not k.startswith(fs.MACHINE_KEYS)}
            for r in runlog.read_jsonl(os.path.join(run_dir, 'stats.jsonl'))]
    ticks = [r['Progress/tick']['mean'] for r in rows]
    assert len(ticks) == len(set(ticks)), ticks
    return rows


def test_full_disk_then_resume_and_absurd_learning_rate(tmp_path, capsys):
    code, err, reference = cli(capsys, tmp_path / 'reference')
    assert code == 0, err
    ref_rows = tick_rows(reference)
    assert len(ref_rows) == 4

    # a full disk at the second snapshot write: one line naming the file and the cause; the first one stays
    with fs.enospc_on('network-snapshot-000000.008.pt') as full:
        code, err, failed = cli(capsys, tmp_path / 'failed')
    snapshot = os.path.join(failed, 'network-snapshot-000000.004.pt')
    assert full.failed is not None and code == 1, err
    line = [x for x in err.splitlines() if x.startswith('error: ')]
    assert len(line) == 1 and os.path.join(failed, 'network-snapshot-000000.008.pt') in line[0], err
    assert 'No space left on device' in line[0], err
    assert 'Traceback' not in err
    kept = runlog.load_snapshot(snapshot)
    assert kept['cur_nimg'] == 4 and fs.temporaries(failed) == []

    # resumed (into a new numbered folder, as upstream): the rows continue the reference run's exactly
    code, err, resumed = cli(capsys, tmp_path / 'failed', '--resume', snapshot)
    assert code == 0, err
    assert tick_rows(resumed) == ref_rows[1:]

    # an absurd learning rate from iteration 1 on (iteration 0 takes 4 Adam steps: Gmain, Greg, Dmain, Dreg)
    with fs.absurd_lr_after(5):
        code, err, diverged = cli(capsys, tmp_path / 'nan')
    assert code == 1
    errors = [x for x in err.splitlines() if x.startswith('error: ')]
    assert len(errors) == 1 and 'Traceback' not in err, err
    line = errors[0]
    match = re.search(r'tick (\d+) \(kimg ([\d.]+)\): (loss \S+|\w+ weights) (is|are not finite)', line)
    assert match, line
    newest = runlog.load_snapshot(os.path.join(diverged, sorted(f for f in os.listdir(diverged)
                                                                if f.startswith('network-snapshot-'))[-1]))
    assert newest['cur_nimg'] / 1000 < float(match.group(2)) and fs.all_finite(newest)
    assert fs.rows_finite(os.path.join(diverged, 'stats.jsonl'))
    assert fs.temporaries(diverged) == []


def test_a_locked_run_folder_is_refused_and_stale_temporaries_go_whatever_their_age(tmp_path):
    from training import training_loop
    train = sg2_helpers.load_script('train')
    _, args = train.setup_training_loop_kwargs(**sg2_helpers.TINY_KWARGS)
    run = tmp_path / 'run'
    with fs.hold_lock(run):
        args.run_dir = str(run)
        with pytest.raises(runlog.RunDirError, match='in use by another run'):
            training_loop.training_loop(rank=0, **args)
    assert sorted(os.listdir(run)) == []   # the refused run wrote nothing; the holder removed its lock file
    # temporaries a killed write left a moment ago (no age rule: the lock says nobody is writing them)
    handle, stale = tempfile.mkstemp(prefix='.network-snapshot-000012.pt.', suffix='.tmp', dir=run)
    os.close(handle)
    (run / 'notes.tmp').write_text('not ours')
    assert training_loop.prepare_run_folders(str(run)) == [stale]
    assert sorted(os.listdir(run)) == ['.lock', 'notes.tmp']
