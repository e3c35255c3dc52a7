"""patches/sngan.patch: applies to vendor/sngan as committed and gives the Re-/RG-SNGAN runs (SPEC §3)."""
import json
import sys
from pathlib import Path

import pytest
import torch

from sparse_core.methods import regan
from patch_checks import assert_applies_with_standard_tools, assert_progress_lines_match_rows, read_stats, run_train
from sparse_core.patching import apply_to_copy

ROOT = Path(__file__).resolve().parents[2]
PATCH = ROOT / "patches" / "sngan.patch"
TINY = ["--data", "digits", "--data-ratio", "0.1", "--ch", "8", "--batch_size", "4", "--G_batch_size", "4",
        "--n_dis", "1", "--tick_steps", "1", "--sample_step", "0", "--eval_step", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def patched(tmp_path_factory):
    return apply_to_copy(PATCH, ROOT / "vendor" / "sngan", tmp_path_factory.mktemp("work") / "sngan")


def train(tree, logdir, *flags, check=True):
    return run_train(tree, [*TINY, *flags], logdir, check)


stats = read_stats


def test_patch_is_small_and_applies_with_gnu_patch(tmp_path):
    assert_applies_with_standard_tools(PATCH, "sngan", tmp_path, max_changed=40)


def test_regan_phase_sequence_sparsity_and_lr(patched, tmp_path):
    train(patched, tmp_path / "r", "--total_steps", "12", "--sparse", "regan", "--sparsity", "0.3",
          "--interval", "3", "--warmup", "2", "--lr_G", "1e-3")
    rows = stats(tmp_path / "r")
    # after step k the controller has done k iterations; stats show the phase of the next one
    want = ["warmup", "sparse", "sparse", "sparse", "dense", "dense", "dense", "sparse", "sparse", "sparse",
            "dense", "dense"]
    assert [r["sparse/phase"] for r in rows] == want == [regan.phase_at(k, 2, 3) for k in range(1, 13)]
    for k, r in enumerate(rows, 1):
        for key in ("progress/kimg", "progress/tick", "timing/total_sec", "Loss/G", "Loss/D", "sparse/G/sparsity",
                    "sparse/D/sparsity", "sparse/lr_scale", "flops/train_total", "flops/train_dense_equiv"):
            assert key in r, key
        assert r["sparse/G/sparsity"] == pytest.approx(0.3 if r["sparse/phase"] == "sparse" else 0.0, abs=1e-3)
        assert r["sparse/D/sparsity"] == 0.0
        scale = 0.1 if r["sparse/phase"] == "dense" else 1.0
        assert r["lr/G"] == pytest.approx(1e-3 * (1 - k / 12) * scale, abs=1e-12)
    assert rows[-1]["flops/train_total"] < rows[-1]["flops/train_dense_equiv"]
    for name in ("G_sparse.pt", "G_dense.pt"):
        exported = torch.load(tmp_path / "r" / name, weights_only=True)
        sys.path.insert(0, str(ROOT / "vendor" / "sngan"))
        from models import ResGenerator32
        G = ResGenerator32(128, ch=8, img_channels=3)
        G.load_state_dict(exported["G"])      # the unmodified vendor network loads it by key
    # the vendor's generate.py renders from the sparse export: the pixels of that network for RandomState(seed)
    import numpy as np
    from PIL import Image
    from vendor.sngan import generate
    assert generate.main(["--network", str(tmp_path / "r" / "G_sparse.pt"), "--seeds", "0-1", "--outdir",
                          str(tmp_path / "png"), "--device", "cpu"]) == 0
    G.load_state_dict(torch.load(tmp_path / "r" / "G_sparse.pt", weights_only=True)["G"])
    with torch.no_grad():
        out = G.eval()(torch.from_numpy(np.random.RandomState(1).randn(1, 128)).float())[0].double()
    want = (out * 127.5 + 128).floor().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(np.asarray(Image.open(tmp_path / "png" / "seed0001.png")), want)


def test_rggan_run_feeds_metric_and_exports(patched, tmp_path):
    run = train(patched, tmp_path / "g", "--total_steps", "12", "--sparse", "rggan", "--rg-lambda", "1e-3",
                "--eval_step", "2", "--num_images", "40", "--metric", "fid_digits")
    rows = stats(tmp_path / "g")
    # the progress line shows the phase, G / D sparsity and FLOPs against dense: the stats row's numbers
    assert_progress_lines_match_rows(run.stdout, rows)
    assert rows[-1]["sparse/D/sparsity"] > 0 and rows[-1]["flops/train_total"] < rows[-1]["flops/train_dense_equiv"]
    assert {r["sparse/phase"] for r in rows} <= {"sparse", "dense"}
    assert all(0.0 <= r["sparse/G/sparsity"] < 1 and "sparse/D/threshold_mean" in r for r in rows)
    metrics = [json.loads(l) for l in (tmp_path / "g" / "metric-fid_digits.jsonl").read_text().splitlines()]
    assert len(metrics) == 6
    snap = torch.load(tmp_path / "g" / "last.pt", weights_only=True)
    assert snap["sparse"]["metric_history"] == [m["value"] for m in metrics]
    sparse_G = torch.load(tmp_path / "g" / "G_sparse.pt", weights_only=True)["G"]
    dense_G = torch.load(tmp_path / "g" / "G_dense.pt", weights_only=True)["G"]
    assert set(sparse_G) == set(dense_G) and not any(k.endswith("_threshold") for k in sparse_G)


@pytest.mark.parametrize("method", ["regan", "rggan"])
def test_resume_continues_the_schedule(patched, tmp_path, method):
    flags = ["--sparse", method, "--interval", "3", "--warmup", "2", "--rg-lambda", "1e-3"]
    train(patched, tmp_path / "full", "--total_steps", "10", "--snapshot_steps", "5", *flags)
    train(patched, tmp_path / "half", "--total_steps", "10", "--resume", str(tmp_path / "full" / "snapshot-5.pt"),
          *flags)
    full, half = stats(tmp_path / "full"), stats(tmp_path / "half")
    assert [r["sparse/phase"] for r in half] == [r["sparse/phase"] for r in full[5:]]
    assert [r["Loss/G"] for r in half] == [r["Loss/G"] for r in full[5:]]
    assert [r["flops/train_total"] for r in half] == pytest.approx([r["flops/train_total"] for r in full[5:]])
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["net_G"]
    b = torch.load(tmp_path / "half" / "last.pt", weights_only=True)["net_G"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sparse_none_is_the_baseline(patched, tmp_path):
    train(ROOT / "vendor" / "sngan", tmp_path / "base", "--total_steps", "4")
    train(patched, tmp_path / "none", "--total_steps", "4", "--sparse", "none")
    a, b = stats(tmp_path / "base"), stats(tmp_path / "none")
    assert [r["Loss/G"] for r in a] == [r["Loss/G"] for r in b]
    assert [r["Loss/D"] for r in a] == [r["Loss/D"] for r in b]


def test_bad_sparse_flags_fail_cleanly(patched, tmp_path):
    r = train(patched, tmp_path / "bad", "--total_steps", "4", "--sparse", "regan", "--sparsity", "1.5", check=False)
    assert r.returncode == 2 and "sparsity must be in [0, 1)" in r.stderr
    assert not (tmp_path / "bad").exists()
    train(ROOT / "vendor" / "sngan", tmp_path / "dense", "--total_steps", "2", "--snapshot_steps", "1")
    r = train(patched, tmp_path / "x", "--total_steps", "4", "--sparse", "regan",
              "--resume", str(tmp_path / "dense" / "snapshot-1.pt"), check=False)
    assert r.returncode == 2 and "--resume" in r.stderr
