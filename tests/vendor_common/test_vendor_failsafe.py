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


class Vendor:
    """How one vendor is driven: its main, flags, run folder, snapshot names and counters."""

    def __init__(self, name, main, argv, run_dir, last, step_of, step_key, final, resume_flag, lr_calls):
        self.name, self.main, self._argv, self.run_dir, self.last = name, main, argv, run_dir, last
        self.step_of, self.step_key, self.final, self.resume_flag = step_of, step_key, final, resume_flag
        self.lr_calls = lr_calls  # Adam steps after which the first snapshot is on disk

    def argv(self, base, resume=None):
        return self._argv(base) + ([self.resume_flag, str(resume)] if resume else [])


def sngan():
    from vendor.sngan import train
    flags = ["--data", "digits", "--data-ratio", "0.1", "--ch", "8", "--z_dim", "16", "--batch_size", "4",
             "--G_batch_size", "6", "--n_dis", "2", "--eval_step", "0", "--sample_step", "0", "--tick_steps", "1",
             "--device", "cpu", "--total_steps", "6", "--snapshot_steps", "2"]
    return Vendor("sngan", train.main, lambda base: flags + ["--logdir", str(base)], lambda base: base,
                  "last.pt", lambda s: s["step"], "progress/step", "G_final.pt", "--resume", 2 * 3)


def progan():
    from vendor.progan import train
    flags = ["--data", "digits", "--data-ratio", "0.05", "--ch", "8", "--z_dim", "8", "--max_res", "8", "--epoch",
             "1", "--batch_sizes", "16,16", "--tick_steps", "1", "--sample_step", "0", "--device", "cpu",
             "--snapshot_steps", "3"]
    return Vendor("progan", train.main, lambda base: flags + ["--logdir", str(base)], lambda base: base,
                  "last.pt", lambda s: s["step"], "progress/step", "G_final.pt", "--resume", 3 * 2)


def autogan():
    from vendor.autogan import train
    flags = ["--data", "digits", "--data-ratio", "0.02", "--gf_dim", "8", "--df_dim", "8", "--latent_dim", "16",
             "-gen_bs", "6", "-dis_bs", "5", "--n_critic", "2", "--print_freq", "1", "--val_freq", "0",
             "--device", "cpu", "--max_iter", "8"]  # 2 epochs of 8 D steps; a checkpoint after each
    return Vendor("autogan", train.main, lambda base: flags + ["--logdir", str(base)], lambda base: base,
                  os.path.join("Model", "checkpoint.pth"), lambda s: s["counters"]["global_steps"], "progress/step",
                  None, "--load_path", 8 + 4)


def fastgan(images):
    from vendor.fastgan import train
    flags = ["--path", str(images), "--im_size", "256", "--batch_size", "2", "--ngf", "8", "--ndf", "8", "--nz",
             "16", "--lpips_untrained", "--lpips_width_div", "16", "--device", "cpu", "--tick", "1",
             "--save_interval", "1", "--iter", "2", "--snapshot_interval", "1", "--name", "run"]
    return Vendor("fastgan", train.main, lambda base: flags + ["--output_path", str(base)],
                  lambda base: base / "train_results" / "run", "last.pt", lambda s: s["iteration"],
                  "progress/iteration", None, "--resume", 1 * 2)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from fg_helpers import make_folder
    return make_folder(tmp_path_factory.mktemp("fastgan_images"), count=4)


@pytest.fixture(params=["sngan", "progan", "autogan", "fastgan"])
def vendor(request, images):
    return fastgan(images) if request.param == "fastgan" else globals()[request.param]()


def test_full_disk_lock_and_resume(vendor, tmp_path, capsys):
    reference, failed = tmp_path / "reference", tmp_path / "failed"
    code, err = fs.run_main(vendor.main, vendor.argv(reference), capsys)
    assert code == 0, err
    ref_rows = fs.rows(vendor.run_dir(reference) / "stats.jsonl", vendor.step_key)

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
    assert fs.rows(run / "stats.jsonl", vendor.step_key) == ref_rows
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
