"""vendor/sngan/train.py: a short CPU run (files, stats keys, kimg and LR schedule by hand), exact
resume against an uninterrupted run, the metric call site, and clear errors for bad flags."""
import os
import subprocess
import sys

import pytest
import torch

from vendor.common.runlog import read_jsonl
from vendor.sngan import train
from vendor.sngan.models import ResGenerator32

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TINY = ["--data", "digits", "--data-ratio", "0.1", "--ch", "8", "--z_dim", "16", "--batch_size", "4",
        "--G_batch_size", "6", "--n_dis", "2", "--eval_step", "0"]
STATS_KEYS = {"progress/kimg", "progress/tick", "progress/step", "timing/total_sec",
              "timing/sec_per_kimg", "Loss/G", "Loss/D", "lr/G", "lr/D", "resources/max_rss_gb"}


def run(argv):
    assert train.main(argv) == 0


def test_short_run_writes_stats_samples_snapshots(tmp_path):
    logdir = str(tmp_path / "run")
    run(TINY + ["--total_steps", "6", "--tick_steps", "3", "--sample_step", "3",
                "--snapshot_steps", "3", "--diffaug", "color,translation,cutout", "--logdir", logdir])
    files = set(os.listdir(logdir))
    assert {"stats.jsonl", "samples-3.png", "samples-6.png", "snapshot-3.pt", "snapshot-6.pt",
            "last.pt", "G_final.pt"} <= files
    assert not [f for f in files if f.startswith(".")]  # no temporaries left
    stats = read_jsonl(os.path.join(logdir, "stats.jsonl"))
    assert len(stats) == 2
    for tick, record in enumerate(stats, start=1):
        assert STATS_KEYS <= set(record)
        step = 3 * tick
        assert record["progress/tick"] == tick and record["progress/step"] == step
        assert record["progress/kimg"] == pytest.approx(step * 2 * 4 / 1000)  # n_dis * batch reals
        # LambdaLR: lr = 2e-4 * (1 - step / total_steps) after `step` scheduler steps
        assert record["lr/G"] == pytest.approx(2e-4 * (1 - step / 6))
        assert record["lr/D"] == pytest.approx(2e-4 * (1 - step / 6))
        assert record["resources/max_rss_gb"] > 0
    snapshot = torch.load(os.path.join(logdir, "last.pt"), weights_only=True)
    assert snapshot["step"] == 6 and snapshot["nimg"] == 6 * 2 * 4
    assert {"net_G", "net_D", "optim_G", "optim_D", "sched_G", "sched_D", "rng"} <= set(snapshot)
    final = torch.load(os.path.join(logdir, "G_final.pt"), weights_only=True)
    G = ResGenerator32(z_dim=16, ch=8)
    G.load_state_dict(final["net_G"])  # the export loads into a fresh generator by name
    assert torch.equal(G.linear.weight, snapshot["net_G"]["linear.weight"])


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    full, resumed = str(tmp_path / "full"), str(tmp_path / "resumed")
    common = TINY + ["--total_steps", "4", "--tick_steps", "1", "--sample_step", "0",
                     "--diffaug", "color,translation", "--seed", "3"]
    torch.manual_seed(999)  # the run must not depend on the caller's RNG state
    run(common + ["--snapshot_steps", "2", "--logdir", full])
    torch.manual_seed(12345)
    run(common + ["--resume", os.path.join(full, "snapshot-2.pt"), "--logdir", resumed])
    reference = read_jsonl(os.path.join(full, "stats.jsonl"))
    continued = read_jsonl(os.path.join(resumed, "stats.jsonl"))
    assert [r["progress/step"] for r in continued] == [3, 4]
    assert [r["progress/tick"] for r in continued] == [3, 4]
    for ref, got in zip(reference[2:], continued):
        for key in ("Loss/G", "Loss/D", "lr/G", "lr/D", "progress/kimg"):
            assert got[key] == pytest.approx(ref[key], rel=1e-6, abs=1e-9), key
    a = torch.load(os.path.join(full, "last.pt"), weights_only=True)
    b = torch.load(os.path.join(resumed, "last.pt"), weights_only=True)
    for key, value in a["net_G"].items():
        assert torch.allclose(value.float(), b["net_G"][key].float(), atol=1e-6), key
    assert a["nimg"] == b["nimg"]


def test_metric_call_site_logs_jsonl(tmp_path, monkeypatch):
    calls = []

    def fake_compute_metric(name, G_sample, dataset, num_gen=None, batch=64, device="cpu",
                            detector=None, cache_dir=None):
        images = G_sample(5)
        calls.append((name, tuple(images.shape), num_gen, len(dataset)))
        return {name: 12.5}

    import vendor.common.metrics as metrics

    monkeypatch.setattr(metrics, "compute_metric", fake_compute_metric)
    logdir = str(tmp_path / "m")
    without_eval_flag = TINY[:-2]  # TINY ends with "--eval_step", "0"
    assert TINY[-2:] == ["--eval_step", "0"]
    run(without_eval_flag + ["--total_steps", "2", "--eval_step", "1", "--num_images", "5", "--sample_step", "0",
                "--extra_metrics", "kid_digits", "--logdir", logdir])
    # digits' default metric (then the extra one), against the whole dataset although training uses a 10% subset
    assert calls == [("fid_digits", (5, 3, 32, 32), 5, 1797), ("kid_digits", (5, 3, 32, 32), 5, 1797)] * 2
    for name in ("fid_digits", "kid_digits"):
        lines = read_jsonl(os.path.join(logdir, f"metric-{name}.jsonl"))
        assert lines == [{"metric": name, "value": 12.5, "step": s, "kimg": s * 2 * 4 / 1000} for s in (1, 2)]


@pytest.mark.parametrize("flags,message", [
    (["--data", "/no/such/dataset"], "/no/such/dataset"),
    (["--data", "digits", "--data-ratio", "0"], "--data-ratio"),
    (["--data", "digits", "--data-ratio", "1.5"], "--data-ratio"),
    (["--data", "digits", "--diffaug", "color,bogus"], "bogus"),
    (["--data", "digits", "--batch_size", "0"], "--batch_size"),
    (["--data", "digits", "--resume", "/no/such/snapshot.pt"], "snapshot.pt"),
    (["--dataset", "cifar10", "--data_root", "/no/root"], "cifar"),
    (["--data", "digits", "--eval_step", "10", "--metric", "fidd"], "fidd"),
    (["--data", "digits", "--eval_step", "10", "--extra_metrics", "kid_digits,kidd"], "kidd"),
    # a digits metric next to a standard one: the standard one's detector is looked up at start-up
    (["--data", "digits", "--eval_step", "10", "--extra_metrics", "fid", "--detector", "/no/incep.pt"],
     "--detector: "),
    (["--data", "digits", "--eval_step", "10", "--metric", "fid", "--extra_metrics", "pr"], "vgg16 detector"),
    (["--data", "digits", "--eval_step", "10", "--metric", "fid", "--detector", "/no/inception.pt"],
     "/no/inception.pt"),
])
def test_bad_flags_give_one_clear_error_and_write_nothing(tmp_path, capsys, flags, message):
    logdir = tmp_path / "never"
    with pytest.raises(SystemExit) as exit_info:
        train.main(flags + ["--ch", "8", "--logdir", str(logdir)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not logdir.exists()


def test_corrupt_resume_file_is_rejected(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a snapshot")
    logdir = tmp_path / "never"
    with pytest.raises(SystemExit):
        train.main(["--data", "digits", "--ch", "8", "--resume", str(bad), "--logdir", str(logdir)])
    assert "bad.pt" in capsys.readouterr().err
    assert not logdir.exists()


def test_runs_as_a_script_with_upstream_flags():
    result = subprocess.run([sys.executable, os.path.join(REPO, "vendor", "sngan", "train.py"), "--help"],
                            capture_output=True, text=True, timeout=120, cwd=str(REPO))
    assert result.returncode == 0, result.stderr
    for flag in ("--total_steps", "--batch_size", "--lr_G", "--lr_D", "--betas", "--n_dis", "--z_dim",
                 "--logdir", "--sample_step", "--eval_step", "--num_images", "--data-ratio",
                 "--diffaug", "--resume", "--G_batch_size"):
        assert flag in result.stdout, flag
    parser = train.build_argparser()
    defaults = parser.parse_args([])
    assert (defaults.total_steps, defaults.batch_size, defaults.lr_G, defaults.lr_D, defaults.n_dis,
            defaults.z_dim, defaults.ch) == (100000, 64, 2e-4, 2e-4, 5, 128, 256)
    assert defaults.betas == [0.0, 0.9]
