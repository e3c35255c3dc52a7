"""patches/autogan.patch: applies to vendor/autogan as committed and gives the Re-/RG-AutoGAN runs (SPEC §3).

The patched tree is imported as its own package (a unique name) and trained in-process at a reduced width,
so the runs stay cheap on one CPU core."""
import importlib
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from patch_checks import assert_applies_with_standard_tools
from sparse_core.methods import regan
from sparse_core.patching import apply_to_copy
from vendor.autogan import train as baseline_train
from vendor.autogan.models import Generator
from vendor.common.runlog import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
PATCH = ROOT / "patches" / "autogan.patch"
# digits at ratio 0.02 = 36 images, -dis_bs 4: 9 D steps (iterations) per epoch; n_critic 1: a G step after each
TINY = ["--data", "digits", "--data-ratio", "0.02", "--gf_dim", "8", "--df_dim", "8", "--latent_dim", "16",
        "-gen_bs", "4", "-dis_bs", "4", "--n_critic", "1", "--print_freq", "1", "--val_freq", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def patched(tmp_path_factory):
    tree = apply_to_copy(PATCH, ROOT / "vendor" / "autogan", tmp_path_factory.mktemp("work") / "autogan")
    name = "autogan_patched_under_test"
    spec = importlib.util.spec_from_file_location(name, tree / "__init__.py", submodule_search_locations=[str(tree)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    yield importlib.import_module(f"{name}.train")
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


def train(module, logdir, *flags):
    assert module.main([*TINY, *flags, "--logdir", str(logdir)]) == 0
    return read_jsonl(str(Path(logdir) / "stats.jsonl"))


def test_patch_is_small_and_applies_with_gnu_patch(tmp_path):
    assert_applies_with_standard_tools(PATCH, "autogan", tmp_path, max_changed=40)


def test_default_schedule_is_the_official_epochs_in_iterations(patched):
    # Re-GAN's AutoGAN flags --g 5 / --warmup_epoch 100 count loader epochs of ceil(50000 / 64) = 782 D steps
    parser = patched.build_argparser()
    patched.sparse.add_argparse_flags(parser, interval=3910, warmup=78200)
    assert "sparse.add_argparse_flags(parser, interval=3910, warmup=78200)" in Path(patched.__file__).read_text()
    assert 5 * 782 == 3910 and 100 * 782 == 78200
    args = parser.parse_args(["--sparse", "regan"])
    assert (args.interval, args.warmup, args.n_critic, args.dis_batch_size) == (3910, 78200, 5, 64)


def test_regan_phases_sparsity_lr_and_masked_average(patched, tmp_path):
    rows = train(patched, tmp_path / "r", "--max_iter", "9", "--sparse", "regan", "--sparsity", "0.3",
                 "--interval", "3", "--warmup", "2", "--g_lr", "1e-3", "--lr_decay")
    assert [r["sparse/phase"] for r in rows] == [regan.phase_at(k, 2, 3) for k in range(1, 10)]
    for k, r in enumerate(rows, 1):
        for key in ("progress/kimg", "progress/tick", "timing/total_sec", "Loss/G", "Loss/D", "sparse/G/sparsity",
                    "sparse/D/sparsity", "sparse/lr_scale", "flops/train_total", "flops/train_dense_equiv"):
            assert key in r, key
        sparse = r["sparse/phase"] == "sparse"
        assert r["sparse/G/sparsity"] == pytest.approx(0.3 if sparse else 0.0, abs=1e-3)
        assert r["sparse/D/sparsity"] == 0.0
        # the dense-phase 0.1x composes with upstream's linear decay (after the k-th G step: 1 - (k - 1) / max_iter)
        scale = 0.1 if r["sparse/phase"] == "dense" else 1.0
        assert r["lr/G"] == pytest.approx(1e-3 * (1 - (k - 1) / 9) * scale, abs=1e-12)
        assert r["lr/D"] == pytest.approx(2e-4 * (1 - (k - 1) / 9), abs=1e-12)
    assert rows[-1]["flops/train_total"] < rows[-1]["flops/train_dense_equiv"]
    ckpt = torch.load(tmp_path / "r" / "Model" / "checkpoint.pth", weights_only=True)
    masks = {k[:-len("_mask")]: v for k, v in ckpt["gen_state_dict"].items() if k.endswith("_mask")}
    assert masks and rows[-1]["sparse/phase"] == "sparse"
    for name, mask in masks.items():   # the averaged G carries the same zeros as G
        assert (mask == 0).any() and ckpt["avg_gen_state_dict"][name][mask == 0].abs().max() == 0, name
        assert ckpt["gen_state_dict"][name][mask == 0].abs().max() == 0, name
    exported = torch.load(tmp_path / "r" / "G_sparse.pt", weights_only=True)["avg_gen_state_dict"]
    G = Generator("autogan_cifar10_a", latent_dim=16, gf_dim=8)
    G.load_state_dict(exported)   # the unmodified vendor network loads it by key
    for name, mask in masks.items():
        assert torch.equal(exported[name], ckpt["avg_gen_state_dict"][name])


def test_rggan_feeds_the_metric_and_exports(patched, tmp_path):
    rows = train(patched, tmp_path / "g", "--max_iter", "27", "--sparse", "rggan", "--rg-lambda", "1e-3",
                 "--val_freq", "1", "--num_eval_imgs", "20", "--eval_batch_size", "10")
    assert {r["sparse/phase"] for r in rows} <= {"sparse", "dense"} and len(rows) == 27
    assert all(0.0 <= r["sparse/G/sparsity"] < 1 and "sparse/D/threshold_mean" in r for r in rows)
    metrics = read_jsonl(str(tmp_path / "g" / "metric-fid_digits.jsonl"))
    assert [m["epoch"] for m in metrics] == [2, 3]
    ckpt = torch.load(tmp_path / "g" / "Model" / "checkpoint.pth", weights_only=True)
    assert ckpt["sparse"]["metric_history"] == [m["value"] for m in metrics]
    sparse_G = torch.load(tmp_path / "g" / "G_sparse.pt", weights_only=True)["avg_gen_state_dict"]
    dense_G = torch.load(tmp_path / "g" / "G_dense.pt", weights_only=True)["avg_gen_state_dict"]
    assert set(sparse_G) == set(dense_G) and not any(k.endswith("_threshold") for k in sparse_G)
    Generator("autogan_cifar10_a", latent_dim=16, gf_dim=8).load_state_dict(sparse_G)


@pytest.mark.parametrize("method", ["regan", "rggan"])
def test_resume_continues_the_schedule_exactly(patched, tmp_path, method):
    flags = ["--sparse", method, "--interval", "4", "--warmup", "5", "--rg-lambda", "1e-3"]
    full = train(patched, tmp_path / "full", "--max_iter", "27", *flags)      # 3 epochs of 9 iterations
    train(patched, tmp_path / "first", "--max_iter", "18", *flags)           # stops after epoch 2
    half = train(patched, tmp_path / "half", "--max_iter", "27", "--load_path", str(tmp_path / "first"), *flags)
    assert [r["progress/step"] for r in half] == list(range(19, 28))
    for key in ("sparse/phase", "Loss/G", "Loss/D", "sparse/G/sparsity"):
        assert [r[key] for r in half] == [r[key] for r in full[18:]], key
    assert [r["flops/train_total"] for r in half] == pytest.approx([r["flops/train_total"] for r in full[18:]])
    a = torch.load(tmp_path / "full" / "Model" / "checkpoint.pth", weights_only=True)
    b = torch.load(tmp_path / "half" / "Model" / "checkpoint.pth", weights_only=True)
    for key in ("gen_state_dict", "avg_gen_state_dict", "dis_state_dict"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key


def test_sparse_none_is_the_baseline(patched, tmp_path):
    assert baseline_train.main([*TINY, "--max_iter", "4", "--logdir", str(tmp_path / "base")]) == 0
    base = read_jsonl(str(tmp_path / "base" / "stats.jsonl"))
    none = train(patched, tmp_path / "none", "--max_iter", "4", "--sparse", "none")
    assert [r["Loss/G"] for r in base] == [r["Loss/G"] for r in none]
    assert [r["Loss/D"] for r in base] == [r["Loss/D"] for r in none]


def test_bad_sparse_flags_fail_cleanly(patched, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        train(patched, tmp_path / "bad", "--max_iter", "4", "--sparse", "regan", "--sparsity", "1.5")
    assert exc.value.code == 2 and "sparsity must be in [0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    train(patched, tmp_path / "dense", "--max_iter", "1", "-dis_bs", "36")
    with pytest.raises(SystemExit) as exc:
        train(patched, tmp_path / "x", "--max_iter", "4", "--sparse", "regan", "--load_path", str(tmp_path / "dense"))
    assert exc.value.code == 2 and "--load_path" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
