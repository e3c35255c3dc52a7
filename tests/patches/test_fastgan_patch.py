"""patches/fastgan.patch: applies to vendor/fastgan as committed and gives Re- / RG-FastGAN (SPEC §3).

Runs at 256x256, batch 2, narrow nets and a narrow random LPIPS (tests/fastgan/fg_helpers.TINY)."""
import json
import sys
from pathlib import Path

import pytest
import torch

from patch_checks import assert_applies_with_standard_tools
from sparse_core.methods import regan
from sparse_core.patching import apply_to_copy

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "fastgan"))
from fg_helpers import make_folder, run_dir, stats, train  # noqa: E402

PATCH = ROOT / "patches" / "fastgan.patch"
KEYS = ("progress/kimg", "progress/tick", "timing/total_sec", "Loss/G", "Loss/D", "sparse/phase", "sparse/G/sparsity",
        "sparse/D/sparsity", "sparse/lr_scale", "flops/train_total", "flops/train_dense_equiv")
REGAN = ["--sparse", "regan", "--sparsity", "0.3", "--interval", "2", "--warmup", "1"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("fgpatch")
    tree = apply_to_copy(PATCH, ROOT / "vendor" / "fastgan", root / "tree" / "fastgan")
    data = make_folder(root / "data")
    train(tree, root, "regan", "--path", str(data), "--iter", "5", "--snapshot_interval", "3", *REGAN)
    return root, tree, data


def test_patch_is_small_and_applies_with_gnu_patch(tmp_path):
    assert_applies_with_standard_tools(PATCH, "fastgan", tmp_path, max_changed=40)


def test_regan_phases_masks_on_G_and_the_ema_list(setup):
    root, tree, data = setup
    rows = stats(root, "regan")
    # iteration k is the controller's (k+1)-th advance; stats show the phase of the next iteration
    assert [r["sparse/phase"] for r in rows] == [regan.phase_at(k, 1, 2) for k in range(1, 7)]
    for r in rows:
        assert all(k in r for k in KEYS)
        assert r["sparse/G/sparsity"] == pytest.approx(0.3 if r["sparse/phase"] == "sparse" else 0.0, abs=2e-3)
        assert r["sparse/D/sparsity"] == 0.0
        assert r["sparse/lr_scale"] == (0.1 if r["sparse/phase"] == "dense" else 1.0)
    assert rows[-1]["flops/train_total"] < rows[-1]["flops/train_dense_equiv"]
    snap = torch.load(run_dir(root, "regan") / "last.pt", weights_only=True)
    ema = dict(zip(snap["param_names"], snap["g_ema"]))
    masks = {k[: -len("_mask")]: v for k, v in snap["netG"].items() if k.endswith("_mask")}
    assert masks and rows[-1]["sparse/phase"] == "sparse"
    for name, mask in masks.items():          # pruned entries are zero in G and in the EMA list
        assert (mask == 0).any() and not snap["netG"][name][mask == 0].any() and not ema[name][mask == 0].any()


def test_exports_load_with_the_unmodified_eval(setup, tmp_path):
    root, tree, data = setup
    from vendor.fastgan import eval as fg_eval

    rdir = run_dir(root, "regan")
    sparse_g = torch.load(rdir / "G_sparse.pt", weights_only=True)["g"]
    dense_g = torch.load(rdir / "G_dense.pt", weights_only=True)["g"]
    assert set(sparse_g) == set(dense_g) and not any(k.endswith("_mask") for k in sparse_g)
    w = sparse_g["feat_8.1.weight_orig"]
    assert (w == 0).float().mean().item() == pytest.approx(0.3, abs=0.01)
    for name in ("G_sparse.pt", "G_dense.pt"):
        assert fg_eval.main(["--ckpt", str(rdir / name), "--n_sample", "2", "--batch", "2", "--size", "32",
                             "--dist", str(tmp_path), "--device", "cpu"]) == 0


def test_rggan_thresholds_on_both_nets_and_metric_fed(setup):
    root, tree, data = setup
    train(tree, root, "rg", "--path", "digits", "--data-ratio", "0.005", "--iter", "2", "--sparse", "rggan",
          "--rg-lambda", "10", "--metrics", "fid_digits", "--eval_interval", "1", "--num_images", "8")
    rows = stats(root, "rg")
    assert {r["sparse/phase"] for r in rows} <= {"sparse", "dense"}
    lr, steps = 2e-4, len(rows)
    for net in ("G", "D"):  # a large λ dominates the gradient of t in both losses: Adam moves t up by ~lr/step
        assert rows[-1][f"sparse/{net}/threshold_mean"] > 0.5 * lr * steps
    metrics = [json.loads(l) for l in (run_dir(root, "rg") / "metric-fid_digits.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in metrics] == [1, 2] and all("UNTRAINED" in m["lpips"] for m in metrics)
    snap = torch.load(run_dir(root, "rg") / "last.pt", weights_only=True)
    assert snap["sparse"]["metric_history"] == [m["value"] for m in metrics]
    g = torch.load(run_dir(root, "rg") / "G_sparse.pt", weights_only=True)["g"]
    assert not any(k.endswith("_threshold") for k in g)


def test_resume_continues_the_schedule(setup):
    root, tree, data = setup
    full = run_dir(root, "regan")
    train(tree, root, "half", "--path", str(data), "--iter", "5", "--snapshot_interval", "3", *REGAN, "--resume",
          str(full / "snapshot-3.pt"))
    a, b = stats(root, "regan"), stats(root, "half")
    assert len(b) == 2 and [r["sparse/phase"] for r in b] == [r["sparse/phase"] for r in a[4:]]
    assert [r["Loss/G"] for r in b] == [r["Loss/G"] for r in a[4:]]
    assert [r["flops/train_total"] for r in b] == pytest.approx([r["flops/train_total"] for r in a[4:]])
    x, y = (torch.load(d / "last.pt", weights_only=True) for d in (full, run_dir(root, "half")))
    assert all(torch.equal(x["netG"][k], y["netG"][k]) for k in x["netG"])
    assert all(torch.equal(p, q) for p, q in zip(x["g_ema"], y["g_ema"]))


def test_sparse_none_is_the_baseline(setup):
    root, tree, data = setup
    train(ROOT / "vendor" / "fastgan", root, "base", "--path", str(data), "--iter", "0")
    train(tree, root, "none", "--path", str(data), "--iter", "0", "--sparse", "none")
    a, b = stats(root, "base"), stats(root, "none")
    assert [r["Loss/G"] for r in a] == [r["Loss/G"] for r in b]
    assert [r["Loss/D"] for r in a] == [r["Loss/D"] for r in b]


def test_bad_sparse_flags_fail_cleanly(setup):
    root, tree, data = setup
    r = train(tree, root, "bad", "--path", str(data), "--iter", "1", "--sparse", "regan", "--sparsity", "1.5",
              check=False)
    assert r.returncode == 2 and "sparsity must be in [0, 1)" in r.stderr
    assert not run_dir(root, "bad").exists()
