"""Fault injection shared by the fail-safe tests of the five vendors (not a test module).

- absurd_lr_after(n): from the n-th optimizer step on (all vendors use torch.optim.Adam), every param group's
  learning rate is 1e30: the weights overflow within a step or two, the losses turn inf/nan.
- enospc_on(name, occurrence): the occurrence-th write of a file called `name` (through runlog's writer or
  sparse_core's) writes half its bytes, then fails as a full disk does (OSError ENOSPC).
- hold_lock(folder): another open file description holds the folder's run lock (what a second process does).
"""
import contextlib
import errno
import fcntl
import glob
import math
import os

import torch

import sparse_core.atomic
from vendor.common import runlog
from vendor.common.runguard import run_cli

MACHINE_KEYS = ("timing/", "resources/", "Timing/", "Resources/", "timestamp")  # wall clock, not the run


class Vendor:
    """How one vendor is driven: its main, flags, run folder, snapshot names and counters."""

    def __init__(self, name, main, argv, run_dir, last, step_of, step_key, final, resume_flag, lr_calls,
                 steps=None):
        self.name, self.main, self._argv, self.run_dir, self.last = name, main, argv, run_dir, last
        self.steps = steps  # the steps an uninterrupted run logs, where a reference run is too slow to afford
        self.step_of, self.step_key, self.final, self.resume_flag = step_of, step_key, final, resume_flag
        self.lr_calls = lr_calls  # Adam steps after which the first snapshot is on disk

    def argv(self, base, resume=None):
        return self._argv(base) + ([self.resume_flag, str(resume)] if resume else [])


def sngan(train=None, **_):
    if train is None:
        from vendor.sngan import train
    flags = ["--data", "digits", "--data-ratio", "0.1", "--ch", "8", "--z_dim", "16", "--batch_size", "4",
             "--G_batch_size", "6", "--n_dis", "2", "--eval_step", "0", "--sample_step", "0", "--tick_steps", "1",
             "--device", "cpu", "--total_steps", "6", "--snapshot_steps", "2"]
    return Vendor("sngan", train.main, lambda base: flags + ["--logdir", str(base)], lambda base: base,
                  "last.pt", lambda s: s["step"], "progress/step", "G_final.pt", "--resume", 2 * 3)


def progan(train=None, **_):
    if train is None:
        from vendor.progan import train
    flags = ["--data", "digits", "--data-ratio", "0.05", "--ch", "8", "--z_dim", "8", "--max_res", "8", "--epoch",
             "1", "--batch_sizes", "16,16", "--tick_steps", "1", "--sample_step", "0", "--device", "cpu",
             "--snapshot_steps", "3"]
    return Vendor("progan", train.main, lambda base: flags + ["--logdir", str(base)], lambda base: base,
                  "last.pt", lambda s: s["step"], "progress/step", "G_final.pt", "--resume", 3 * 2)


def autogan(train=None, **_):
    if train is None:
        from vendor.autogan import train
    flags = ["--data", "digits", "--data-ratio", "0.02", "--gf_dim", "8", "--df_dim", "8", "--latent_dim", "16",
             "-gen_bs", "6", "-dis_bs", "5", "--n_critic", "2", "--print_freq", "1", "--val_freq", "0",
             "--device", "cpu", "--max_iter", "8"]  # 2 epochs of 8 D steps; a checkpoint after each
    return Vendor("autogan", train.main, lambda base: flags + ["--logdir", str(base)], lambda base: base,
                  os.path.join("Model", "checkpoint.pth"), lambda s: s["counters"]["global_steps"], "progress/step",
                  None, "--load_path", 8 + 4)


def fastgan(train=None, images=None, **_):
    if train is None:
        from vendor.fastgan import train
    flags = ["--path", str(images), "--im_size", "256", "--batch_size", "2", "--ngf", "8", "--ndf", "8", "--nz",
             "16", "--lpips_untrained", "--lpips_width_div", "16", "--device", "cpu", "--tick", "1",
             "--save_interval", "1", "--iter", "2", "--snapshot_interval", "1", "--name", "run"]
    return Vendor("fastgan", train.main, lambda base: flags + ["--output_path", str(base)],
                  lambda base: base / "train_results" / "run", "last.pt", lambda s: s["iteration"],
                  "progress/iteration", None, "--resume", 1 * 2, steps=[0, 1, 2])


VENDORS = {"sngan": sngan, "progan": progan, "autogan": autogan, "fastgan": fastgan}


@contextlib.contextmanager
def absurd_lr_after(n, lr=1e30):
    original = torch.optim.Adam.step
    calls = [0]

    def step(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] >= n:
            for group in self.param_groups:
                group["lr"] = lr
        return original(self, *args, **kwargs)

    torch.optim.Adam.step = step
    try:
        yield calls
    finally:
        torch.optim.Adam.step = original


class _Full:
    """A writer that fails like a full disk on one chosen write."""

    def __init__(self, name, occurrence):
        self.name, self.occurrence, self.seen, self.failed = name, occurrence, 0, None

    def should_fail(self, target_name):
        if target_name != self.name:
            return False
        self.seen += 1
        return self.seen == self.occurrence

    def fail(self, handle, data, path):
        handle.write(bytes(data[: len(data) // 2]))
        self.failed = path
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@contextlib.contextmanager
def enospc_on(name, occurrence=1):
    """The occurrence-th write of a file called `name` (runlog's writer or sparse_core's) fails with ENOSPC after
    writing half its bytes."""
    full = _Full(name, occurrence)
    original_runlog, original_sparse = runlog.write_bytes, sparse_core.atomic._write_file

    def write_bytes(path, data):
        final = os.path.basename(path)[1:-len(".xxxxxxxx.tmp")]  # atomic_write's `.<name>.<8 chars>.tmp`
        if full.should_fail(final):
            with open(path, "wb") as handle:
                full.fail(handle, data, path)
        return original_runlog(path, data)

    def write_file(tmp, data, target):
        if full.should_fail(os.path.basename(target)):
            with open(tmp, "wb") as handle:
                full.fail(handle, data, tmp)
        return original_sparse(tmp, data, target)

    runlog.write_bytes, sparse_core.atomic._write_file = write_bytes, write_file
    try:
        yield full
    finally:
        runlog.write_bytes, sparse_core.atomic._write_file = original_runlog, original_sparse


@contextlib.contextmanager
def hold_lock(folder):
    os.makedirs(folder, exist_ok=True)
    fd = os.open(os.path.join(folder, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        yield
    finally:  # as a run that releases its lock does (vendor.common.runlock): the file goes, then the lock
        os.unlink(os.path.join(folder, ".lock"))
        os.close(fd)


def run_main(main, argv, capsys):
    """(exit status, stderr) of a vendor main through the scripts' entry wrapper; usage errors -> 2."""
    capsys.readouterr()
    try:
        code = run_cli(main, argv)
    except SystemExit as error:
        code = error.code
    return code, capsys.readouterr().err


def temporaries(folder):
    return sorted(glob.glob(os.path.join(glob.escape(str(folder)), "**", ".*.tmp"), recursive=True)
                  + glob.glob(os.path.join(glob.escape(str(folder)), "**", ".tmp-*.pt"), recursive=True))


def listing(folder):
    """{relative path: (size, mtime_ns)} of every file under folder."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            st = os.stat(path)
            out[os.path.relpath(path, folder)] = (st.st_size, st.st_mtime_ns)
    return out


def rows(path, step_key):
    """Stats rows without machine-dependent entries; asserts no step appears twice."""
    result = [{k: v for k, v in r.items() if not k.startswith(MACHINE_KEYS)} for r in runlog.read_jsonl(str(path))]
    steps = [r[step_key] for r in result]
    assert len(steps) == len(set(steps)), f"duplicated rows: {steps}"
    return result


def all_finite(obj):
    """Every floating tensor and float in a nested snapshot is finite."""
    if isinstance(obj, torch.Tensor):
        return not obj.is_floating_point() or bool(torch.isfinite(obj).all())
    if isinstance(obj, dict):
        return all(all_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(all_finite(v) for v in obj)
    if isinstance(obj, float):
        return math.isfinite(obj) or obj == 1e4  # AutoGAN's best_fid sentinel is finite anyway
    return True


def rows_finite(path):
    def finite(v):
        if isinstance(v, dict):
            return all(finite(x) for x in v.values())
        return v is not None if not isinstance(v, float) else math.isfinite(v)
    return all(all(finite(v) for k, v in r.items() if k.startswith(("Loss/", "loss")))
               for r in runlog.read_jsonl(str(path)))


def one_error_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


