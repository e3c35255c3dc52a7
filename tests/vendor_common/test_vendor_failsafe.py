"""Runs that fail safely (issue 23, items 2, 2b, 3, 4), for SNGAN, ProGAN, AutoGAN and FastGAN unmodified
(StyleGAN2-ADA: tests/stylegan2_ada/test_sg2_failsafe.py; the patched trees: test_patched_failsafe.py).

Per vendor, tiny runs in-process:
- a full disk at the second `last.pt` write: exit 1, ONE line naming the file and "No space left on device";
  the previous snapshot stays readable, no temporary is left;
- a second run into the (locked) run folder is refused by name, exit 2, and changes nothing there;
- resuming after the failure finishes, and its stats rows equal an uninterrupted run's (none twice, none lost);
- an absurd learning rate from a mid-run step on: exit 1, one line naming the step and the loss; the newest
  snapshot is the last finite one, nothing from the diverged state (no final export), no null loss rows.
"""
import os
import re
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fastgan"))
import failsafe as fs  # noqa: E402
from vendor.common.runlog import load_snapshot  # noqa: E402


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from fg_helpers import make_folder
    return make_folder(tmp_path_factory.mktemp("fastgan_images"), count=4)


@pytest.fixture(params=["sngan", "progan", "autogan", "fastgan"])
def vendor(request, images):
    return fs.VENDORS[request.param](images=images)


def test_full_disk_lock_and_resume(vendor, tmp_path, capsys):
    reference, failed = tmp_path / "reference", tmp_path / "failed"
    if vendor.steps is None:
        code, err = fs.run_main(vendor.main, vendor.argv(reference), capsys)
        assert code == 0, err
        ref_rows = fs.rows(vendor.run_dir(reference) / "stats.jsonl", vendor.step_key)
    else:  # FastGAN (1 s per iteration): its exact resume is tests/fastgan's; here each step once, in order
        ref_rows = [{vendor.step_key: step} for step in vendor.steps]

    # a full disk at the second write of the newest-snapshot file
    with fs.enospc_on(os.path.basename(vendor.last), occurrence=2) as full:
        code, err = fs.run_main(vendor.main, vendor.argv(failed), capsys)
    run = vendor.run_dir(failed)
    last = run / vendor.last
    assert full.failed is not None and code == 1
    line = fs.one_error_line(err)
    assert str(last) in line and "No space left on device" in line, line
    first_snapshot_step = vendor.step_of(load_snapshot(str(last)))  # readable: the first snapshot, intact
    assert first_snapshot_step < ref_rows[-1][vendor.step_key]
    assert fs.temporaries(run) == []

    # a second run into the folder while the first still holds it: refused by name, nothing touched
    before = fs.listing(run)
    with fs.hold_lock(run):
        code, err = fs.run_main(vendor.main, vendor.argv(failed, resume=last), capsys)
    assert code == 2 and str(run) in err and "in use by another run" in err, err
    assert fs.listing(run) == before

    # space freed: the resumed run finishes, its rows are the uninterrupted run's
    code, err = fs.run_main(vendor.main, vendor.argv(failed, resume=last), capsys)
    assert code == 0, err
    resumed_rows = fs.rows(run / "stats.jsonl", vendor.step_key)
    if vendor.steps is not None:
        resumed_rows = [{vendor.step_key: row[vendor.step_key]} for row in resumed_rows]
    assert resumed_rows == ref_rows
    assert fs.temporaries(run) == []


def test_absurd_learning_rate_stops_before_writing_the_diverged_state(vendor, tmp_path, capsys):
    with fs.absurd_lr_after(vendor.lr_calls + 1):
        code, err = fs.run_main(vendor.main, vendor.argv(tmp_path), capsys)
    run = vendor.run_dir(tmp_path)
    assert code == 1
    line = fs.one_error_line(err)
    match = re.search(r"step (\d+): loss (\w+) is (nan|inf|-inf)", line)
    assert match, line
    stopped = int(match.group(1))
    snapshot = load_snapshot(str(run / vendor.last))
    assert vendor.step_of(snapshot) < stopped  # the newest snapshot predates the divergence ...
    assert fs.all_finite(snapshot)             # ... and is finite
    if vendor.final:
        assert not (run / vendor.final).exists()
    logged = fs.rows(run / "stats.jsonl", vendor.step_key)
    assert fs.rows_finite(run / "stats.jsonl") and logged[-1][vendor.step_key] < stopped
    assert fs.temporaries(run) == []


def test_guard_names_the_first_non_finite_step_exactly(tmp_path):
    """The guard's step is the first step whose loss is non-finite: here a hand-made loss sequence."""
    from vendor.common.runguard import FiniteGuard, NonFiniteError
    guard = FiniteGuard()
    values = [0.5, 1.0, float("inf"), float("nan"), 2.0]
    for step, value in enumerate(values, start=1):
        guard.loss(step, loss_D=torch.tensor(value), loss_G=torch.tensor(1.0))
    with pytest.raises(NonFiniteError, match=r"^step 3: loss loss_D is inf"):
        guard.check()
