"""SNGAN reliability (issue 14): bit-exact resume for the baseline and both patched variants (every tensor of
the final snapshot, every stats row), bad flags refused before anything is written, resume settings checked,
stale temporaries removed, no duplicated stats rows, no appending to an old run folder."""
import importlib.util
import os
from pathlib import Path

import pytest
import torch

from sparse_core.patching import apply_to_copy
from vendor.common.runlog import read_jsonl
from vendor.sngan import train

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--data", "digits", "--data-ratio", "0.1", "--ch", "8", "--z_dim", "16", "--batch_size", "4",
        "--G_batch_size", "6", "--n_dis", "2", "--eval_step", "0", "--sample_step", "0", "--tick_steps", "1",
        "--device", "cpu"]
# stats that measure the machine, not the run
MACHINE_KEYS = ("timing/", "resources/")


@pytest.fixture(scope="module")
def patched(tmp_path_factory):
    return apply_to_copy(ROOT / "patches" / "sngan.patch", ROOT / "vendor" / "sngan",
                         tmp_path_factory.mktemp("work") / "sngan")


def _run(tree, logdir, *flags):
    """One run in-process (a subprocess per run would spend most of the test importing torch):
    the baseline module, or the patched copy's train.py loaded from its file."""
    main = train.main if tree is None else _load_patched_module(tree).main
    assert main(TINY + list(flags) + ["--logdir", str(logdir)]) == 0


_patched_modules = {}


def _load_patched_module(tree):
    if tree not in _patched_modules:
        spec = importlib.util.spec_from_file_location("sngan_patched_train", tree / "train.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _patched_modules[tree] = module
    return _patched_modules[tree]


def _run_rows(logdir):
    return [{k: v for k, v in row.items() if not k.startswith(MACHINE_KEYS)}
            for row in read_jsonl(os.path.join(logdir, "stats.jsonl"))]


def _assert_same_tensors(a, b, path="snapshot"):
    """Every tensor equal bit for bit; every other leaf equal, except the wall-clock total."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert set(a) == set(b), path
        for key in a:
            if key != "total_sec":
                _assert_same_tensors(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tensors(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


@pytest.mark.parametrize("variant", ["baseline", "regan", "rggan"])
def test_resume_is_bit_exact_and_never_duplicates_rows(patched, tmp_path, monkeypatch, variant):
    # the PyTorch reference ops: this is about the loop's state, and a first use of the native kernels would
    # compile them here (minutes); tests/ops checks the kernels against the reference
    monkeypatch.setenv("SPARSE_CORE_OPS", "ref")
    tree = None if variant == "baseline" else patched
    flags = ["--total_steps", "6", "--ema_decay", "0.9", "--diffaug", "translation"]
    if variant != "baseline":
        flags += ["--sparse", variant, "--interval", "2", "--warmup", "1", "--rg-lambda", "1e-2",
                  "--eval_step", "2", "--num_images", "20"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _run(tree, straight, *flags)
    # the "killed" run: it got past its snapshot at step 3 and logged steps 4..6 before dying
    _run(tree, resumed, *flags, "--snapshot_steps", "3")
    (resumed / ".last.pt.abcd1234.tmp").write_bytes(b"half a snapshot")  # a killed atomic write
    _run(tree, resumed, *flags, "--snapshot_steps", "3", "--resume", str(resumed / "snapshot-3.pt"))
    assert _run_rows(resumed) == _run_rows(straight)  # every stats row once, values equal
    assert [r["progress/step"] for r in _run_rows(resumed)] == list(range(1, 7))
    for name in [p.name for p in straight.glob("metric-*.jsonl")]:
        assert read_jsonl(resumed / name) == read_jsonl(straight / name)
    _assert_same_tensors(torch.load(straight / "last.pt", weights_only=True),
                         torch.load(resumed / "last.pt", weights_only=True))
    assert not [p.name for p in resumed.iterdir() if p.name.endswith(".tmp")]




BAD_FLAGS = [
    (["--lr_G", "-1"], "--lr_G"),
    (["--lr_D", "0"], "--lr_D"),
    (["--betas", "1.5", "0.9"], "--betas"),
    (["--betas=0.5"], "--betas"),
    (["--lr_G", "nan"], "--lr_G"),
    (["--lr_D", "inf"], "--lr_D"),
    (["--betas", "nan", "0.9"], "--betas"),
    (["--ema_decay", "nan"], "--ema_decay"),
    (["--ema_decay", "1"], "--ema_decay"),
    (["--data-ratio", "nan"], "--data-ratio"),
    (["--loss", "lsgan"], "--loss"),
    (["--sample_size", "0"], "--sample_size"),
    (["--generate"], "--generate"),
]
if not torch.cuda.is_available():
    BAD_FLAGS.append((["--device", "cuda"], "--device"))


@pytest.mark.parametrize("variant", ["baseline", "patched"])
@pytest.mark.parametrize("flags,name", BAD_FLAGS)
def test_bad_flags_exit_2_naming_the_flag_and_write_nothing(patched, tmp_path, capsys, variant, flags, name):
    main = train.main if variant == "baseline" else _load_patched_module(patched).main
    logdir = tmp_path / "never"
    with pytest.raises(SystemExit) as info:
        main(TINY + ["--total_steps", "2"] + flags + ["--logdir", str(logdir)])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert name in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if "error:" in line]) == 1
    assert not logdir.exists() and os.listdir(tmp_path) == []


def test_logdir_naming_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "afile"
    target.write_text("keep me")
    with pytest.raises(SystemExit) as info:
        train.main(TINY + ["--total_steps", "2", "--logdir", str(target)])
    assert info.value.code == 2 and "--logdir" in capsys.readouterr().err
    assert target.read_text() == "keep me" and os.listdir(tmp_path) == ["afile"]


@pytest.fixture(scope="module")
def snapshot_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("snap") / "run"
    _run(None, logdir, "--total_steps", "4", "--snapshot_steps", "2")
    return logdir


@pytest.mark.parametrize("flags,message", [
    (["--data-ratio", "0.2"], "--data_ratio (snapshot 0.1, given 0.2)"),
    (["--batch_size", "8"], "--batch_size (snapshot 4, given 8)"),
    (["--lr_G", "1e-3"], "--lr_G (snapshot 0.0002, given 0.001)"),
    (["--n_dis", "1"], "--n_dis (snapshot 2, given 1)"),
    (["--total_steps", "1"], "below the snapshot's step 2"),
    (["--ema_decay", "0.9"], "--ema_decay (snapshot 0.0, given 0.9)"),
])
def test_resume_refuses_changed_settings_naming_them(snapshot_run, tmp_path, capsys, flags, message):
    logdir = tmp_path / "never"
    argv = TINY + ["--total_steps", "4"] + flags + ["--resume", str(snapshot_run / "snapshot-2.pt"),
                                                    "--logdir", str(logdir)]
    with pytest.raises(SystemExit) as info:
        train.main(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err
    assert not logdir.exists()


def test_resume_may_change_logging_and_total_steps(snapshot_run, tmp_path):
    # documented as allowed: logging / evaluation / snapshot cadence, --logdir, a longer --total_steps
    _run(None, tmp_path / "more", "--total_steps", "5", "--tick_steps", "2", "--sample_step", "5",
         "--resume", str(snapshot_run / "snapshot-2.pt"))
    assert [r["progress/step"] for r in read_jsonl(tmp_path / "more" / "stats.jsonl")] == [4, 5]


def test_fresh_run_in_an_old_folder_is_refused(snapshot_run, capsys):
    before = (snapshot_run / "stats.jsonl").read_bytes()
    with pytest.raises(SystemExit) as info:
        train.main(TINY + ["--total_steps", "4", "--logdir", str(snapshot_run)])
    assert info.value.code == 2 and "already holds a run" in capsys.readouterr().err
    assert (snapshot_run / "stats.jsonl").read_bytes() == before
