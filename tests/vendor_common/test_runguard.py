"""vendor.common.runguard / runlock / runlog's fail-safe parts: the finite guard, the write-failure message (real
kernel errors: /dev/full and a file-size limit), the run-folder lock (a second process, released on SIGKILL),
stale temporaries of every snapshot name pattern, log truncation on resume."""
import errno
import os
import resource
import signal
import subprocess
import sys
import tempfile
import textwrap

import pytest
import torch

import sparse_core.atomic
from vendor.common import runlog
from vendor.common.runguard import FiniteGuard, NonFiniteError, check_finite_stats, check_finite_weights, run_cli
from vendor.common.runlock import lock_run_dir, release_run_dir, releases_run_dirs


def test_guard_keeps_the_first_non_finite_loss_of_all_names():
    guard = FiniteGuard()
    for step in range(1, 6):
        guard.loss(step, loss_G=torch.tensor(float("nan") if step >= 4 else 1.0),
                   loss_D=torch.tensor(float("-inf") if step == 2 else 0.5))
    assert guard.first_bad() == (2, "loss_D", float("-inf"))
    with pytest.raises(NonFiniteError, match=r"^step 2: loss loss_D is -inf"):
        guard.check()
    finite = FiniteGuard()
    finite.loss(1, loss=torch.tensor(3.0))
    finite.loss(2, loss=1e30)  # large but finite
    finite.check()  # nothing to report


def test_weights_check_names_the_network_tensor_and_count():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    check_finite_weights(7, G=net, D=None)
    with torch.no_grad():
        net[0].weight[1, :2] = float("inf")
    with pytest.raises(NonFiniteError, match=r"^step 7: G weights are not finite \(0.weight: 2 of 12 values"):
        check_finite_weights(7, G=net)
    with pytest.raises(NonFiniteError, match=r"G_ema weights .*\(1: 1 of 2"):
        check_finite_weights(7, G_ema=[torch.zeros(3), torch.tensor([0.0, float("nan")])])
    with pytest.raises(NonFiniteError, match=r"^tick 3 \(kimg 0.1\): loss Loss/D/loss is nan"):
        check_finite_stats("tick 3 (kimg 0.1)", {"Loss/G/loss": {"num": 4, "mean": 1.0},
                                                 "Loss/D/loss": {"num": 4, "mean": float("nan")},
                                                 "Progress/kimg": {"num": 1, "mean": 0.1}})


def _guarded_limit(limit):
    """A per-file size limit for this process (the kernel then fails writes past it with EFBIG)."""
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old[1]))
    return lambda: (resource.setrlimit(resource.RLIMIT_FSIZE, old), signal.signal(signal.SIGXFSZ, old_handler))


def test_a_failed_write_names_the_final_file_and_the_kernel_cause(tmp_path, capsys):
    path = tmp_path / "last.pt"
    runlog.save_snapshot({"w": torch.zeros(4)}, str(path))
    before = path.read_bytes()
    restore = _guarded_limit(len(before) + 64)
    try:
        with pytest.raises(OSError) as failed:
            runlog.save_snapshot({"w": torch.zeros(100_000)}, str(path))
        with pytest.raises(OSError) as failed_export:
            sparse_core.atomic.save_atomic({"w": torch.zeros(100_000)}, str(tmp_path / "G_sparse.pt"))
    finally:
        restore()
    for error, name in ((failed.value, path), (failed_export.value, tmp_path / "G_sparse.pt")):
        assert error.errno == errno.EFBIG and error.filename == str(name)
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["last.pt"]  # nothing half-written

    # the entry wrapper words both the same way: one line, the file, the kernel's strerror, exit 1
    for error, name in ((failed.value, path), (failed_export.value, tmp_path / "G_sparse.pt")):
        def main(error=error):
            raise error
        assert run_cli(main) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: cannot write {name}: {os.strerror(errno.EFBIG)}")

    # stats rows: a full device (/dev/full) is named with its cause
    with pytest.raises(OSError) as full:
        runlog.append_jsonl("/dev/full", {"step": 1})
    assert full.value.errno == errno.ENOSPC and full.value.filename == "/dev/full"


def test_lock_refuses_a_second_process_and_dies_with_its_holder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from vendor.common.runlock import lock_run_dir
        lock_run_dir({str(run)!r}); print("locked", flush=True); time.sleep(60)""")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(runlog.RunDirError, match=rf"{run} is in use by another run .*by pid {holder.pid}"):
            runlog.prepare_run_dir(str(run))
        assert sorted(os.listdir(run)) == [".lock"]
    finally:
        holder.send_signal(signal.SIGKILL)  # a crash: the kernel drops the flock with the process
        holder.wait()
    runlog.prepare_run_dir(str(run))
    release_run_dir(str(run))


def test_lock_is_reentrant_in_one_process_and_released_by_the_entry_decorator(tmp_path):
    import fcntl
    run = str(tmp_path)

    @releases_run_dirs
    def main():
        lock_run_dir(run)
        lock_run_dir(run)  # a second take in the same process (a resume in-process) is fine
        probe = os.open(os.path.join(run, ".lock"), os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held against any other open
        finally:
            os.close(probe)

    main()
    assert not os.path.exists(os.path.join(run, ".lock"))  # released when main returned: the file went with it
    lock_run_dir(run)  # and the folder can be taken again
    release_run_dir(run)


def test_stale_temporaries_of_every_snapshot_pattern_go_at_start_whatever_their_age(tmp_path):
    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    (run / "Model").mkdir()
    (run / "other_run").mkdir()
    (run / "other_run" / ".lock").write_text("")
    stale = []
    for folder, name in ((run, "network-snapshot-000000.pt"), (run / "models", "all_5.pth"), (run, "snapshot-5.pt"),
                         (run, "last.pt"), (run / "Model", "checkpoint.pth"), (run / "other_run", "last.pt")):
        handle, path = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)  # atomic_write's names
        os.close(handle)
        stale.append(path)
    handle, export_tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=run)  # sparse_core's
    os.close(handle)
    keep = [run / "notes.tmp", run / ".last.pt.tmp", run / "last.pt", run / ".hidden"]
    for path in keep:
        path.write_text("keep")
    removed = runlog.prepare_run_dir(str(run))
    assert sorted(removed) == sorted(stale[:5] + [export_tmp])  # not the other run's (locked folder)
    assert all(p.exists() for p in keep) and os.path.exists(stale[5])
    release_run_dir(str(run))


def test_resume_truncates_every_log_past_the_snapshot_and_keeps_the_rest(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for step in range(1, 7):
        runlog.append_jsonl(str(run / "stats.jsonl"), {"progress/iteration": step, "Loss/G": 0.1 * step})
        if step % 2 == 0:
            runlog.append_jsonl(str(run / "metric-fid.jsonl"), {"iteration": step, "value": float(step)})
    runlog.prepare_run_dir(str(run), resume_step=3, step_keys=("progress/iteration", "iteration"))
    assert [r["progress/iteration"] for r in runlog.read_jsonl(str(run / "stats.jsonl"))] == [1, 2, 3]
    assert [r["iteration"] for r in runlog.read_jsonl(str(run / "metric-fid.jsonl"))] == [2]
    release_run_dir(str(run))
    # StyleGAN2-ADA's rows: {num, mean, std} per entry
    sg2 = tmp_path / "sg2"
    sg2.mkdir()
    for kimg in (0.004, 0.008, 0.012):
        runlog.append_jsonl(str(sg2 / "stats.jsonl"), {"Progress/kimg": {"num": 1, "mean": kimg, "std": 0}})
    runlog.prepare_run_dir(str(sg2), resume_step=0.008, step_keys=("Progress/kimg",), refuse_existing=False)
    assert [r["Progress/kimg"]["mean"] for r in runlog.read_jsonl(str(sg2 / "stats.jsonl"))] == [0.004, 0.008]
    release_run_dir(str(sg2))
