"""vendor/progan/train.py, unmodified: a CPU run through two resolutions, exact mid-fade resume, clean errors."""
import json
from pathlib import Path

import pytest
import torch

from vendor.progan import train as progan_train

# 90 digits at 4x4 then 8x8, batch 16: 6 batches per epoch, 2 epochs per stage -> 12 + 12 iterations
TINY = ["--data", "digits", "--data-ratio", "0.05", "--ch", "8", "--z_dim", "8", "--max_res", "8", "--epoch", "2",
        "--batch_sizes", "16,16", "--tick_steps", "1", "--sample_step", "0", "--device", "cpu"]


def train(logdir, *flags):
    """In-process (the patch tests run the patched tree as a script)."""
    assert progan_train.main([*TINY, *flags, "--logdir", str(logdir)]) == 0


def train_error(capsys, logdir, *flags) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        progan_train.main([*TINY, *flags, "--logdir", str(logdir)])
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def stats(logdir):
    return [json.loads(line) for line in (Path(logdir) / "stats.jsonl").read_text().splitlines()]


def test_two_resolutions_then_exact_resume_mid_fade(tmp_path):
    flags = ["--ema_beta", "0.9", "--reset_adam", "--snapshot_steps", "15", "--sample_step", "24"]
    train(tmp_path / "full", *flags)
    rows = stats(tmp_path / "full")
    assert [r["progress/res"] for r in rows] == [4] * 12 + [8] * 12
    assert sum(r["progress/kimg"] for r in rows[-1:]) == 2 * 2 * 90 / 1000       # 4 epochs of 90 images
    # upstream alpha: (i + L) / (N L) with L = 6 batches, N = 2 epochs
    assert [r["progress/alpha"] for r in rows[12:]] == [(i + 6) / 12 for i in range(12)]
    assert all(r["lr/G"] == 1e-3 and r["lr/D"] == 1e-3 for r in rows)
    assert (tmp_path / "full" / "samples-24.png").exists()
    snap = torch.load(tmp_path / "full" / "snapshot-15.pt", weights_only=True)
    assert (snap["stage"], snap["it"]) == (1, 3) and 0 < (3 + 6) / 12 < 1   # resumes inside the 8x8 fade
    final = torch.load(tmp_path / "full" / "G_final.pt", weights_only=True)
    assert final["ema"] and set(final["net_G"]) == set(snap["net_G"])

    train(tmp_path / "half", *flags, "--resume", str(tmp_path / "full" / "snapshot-15.pt"))
    half = stats(tmp_path / "half")
    assert [r["Loss/D"] for r in half] == [r["Loss/D"] for r in rows[15:]]
    assert [r["progress/alpha"] for r in half] == [r["progress/alpha"] for r in rows[15:]]
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "half" / "last.pt", weights_only=True)
    for key in ("net_G", "net_D", "G_ema"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    assert a["optim_G"]["state"].keys() == b["optim_G"]["state"].keys()
    assert all(torch.equal(a["optim_G"]["state"][i]["exp_avg_sq"], b["optim_G"]["state"][i]["exp_avg_sq"])
               for i in a["optim_G"]["state"])


def test_bad_flags_fail_cleanly(tmp_path, capsys):
    for flags, text in ((["--max_res", "12"], "--max_res"), (["--batch_sizes", "16"], "--batch_sizes"),
                        (["--data", str(tmp_path / "nope")], "--dataset"), (["--ema_beta", "1"], "--ema_beta"),
                        (["--epochs", "2,x"], "--epochs")):
        err = train_error(capsys, tmp_path / "bad", *flags)
        assert text in err, (flags, err[-500:])
    assert not (tmp_path / "bad").exists()
    train(tmp_path / "ok", "--epoch", "1", "--snapshot_steps", "3")
    err = train_error(capsys, tmp_path / "other", "--epoch", "1", "--ch", "4",
                      "--resume", str(tmp_path / "ok" / "snapshot-3.pt"))
    assert "--resume" in err and "ch=8" in err and not (tmp_path / "other").exists()
