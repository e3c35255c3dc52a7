"""patches/stylegan2_ada.patch: applies to vendor/stylegan2_ada as committed; Re-/RG-StyleGAN2 runs (SPEC §3)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sparse_core.methods import regan
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from run_readers import read_metrics, read_stats  # noqa: E402
from patch_checks import assert_applies_with_standard_tools, assert_progress_lines_match_rows
from sparse_core.patching import apply_to_copy

ROOT = Path(__file__).resolve().parents[2]
PATCH = ROOT / "patches" / "stylegan2_ada.patch"
TINY = ["--data", "digits", "--device", "cpu", "--cbase", "256", "--cmax", "32", "--map", "2", "--batch", "4",
        "--mbstd-group", "2", "--workers", "0", "--grid", "2x2", "--tick", "0.004", "--img-snap", "0"]


@pytest.fixture(scope="module")
def patched(tmp_path_factory):
    return apply_to_copy(PATCH, ROOT / "vendor" / "stylegan2_ada", tmp_path_factory.mktemp("work") / "sg2")


def env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


def train(tree, outdir, *flags, check=True):
    r = subprocess.run([sys.executable, str(tree / "train.py"), "--outdir", str(outdir), *TINY, *flags],
                       capture_output=True, text=True, env=env())
    if check and r.returncode != 0:
        raise AssertionError(r.stdout[-3000:] + r.stderr[-3000:])
    return r


def run_dir(outdir):
    return sorted(p for p in Path(outdir).iterdir() if p.is_dir())[-1]


def stats(outdir):
    return read_stats(run_dir(outdir))  # upstream's {num, mean, std} rows, flattened to the means


def test_patch_is_small_and_applies_with_gnu_patch(tmp_path):
    assert_applies_with_standard_tools(PATCH, "stylegan2_ada", tmp_path, max_changed=60)


def test_regan_phases_masks_on_G_and_G_ema_torgb_excluded(patched, tmp_path):
    run = train(patched, tmp_path, "--kimg", "0.032", "--snap", "100", "--metrics", "none", "--sparse", "regan",
                "--interval", "3", "--warmup", "2")
    rows = stats(tmp_path)
    assert run_dir(tmp_path).name.endswith("-regan")            # the run folder names the method
    assert_progress_lines_match_rows(run.stdout, rows)          # phase, sparsity, FLOPs on every tick line
    # one iteration (batch 4) per tick of 0.004 kimg; row k = after k iterations = phase of iteration k
    assert [r["sparse/phase"] for r in rows] == [regan.phase_at(k, 2, 3) for k in range(1, 9)]
    for r in rows:
        assert r["sparse/G/sparsity"] == pytest.approx(0.3 if r["sparse/phase"] == "sparse" else 0, abs=2e-3)
        assert r["sparse/D/sparsity"] == 0
        assert not any("torgb" in k for k in r if "/kept/" in k)
        assert any("mapping" in k for k in r if "/kept/" in k) and any(".conv1.weight" in k for k in r)
    snap = torch.load(sorted(run_dir(tmp_path).glob("network-snapshot-*.pt"))[-1], weights_only=True)
    assert snap["sparse"]["phase"] == rows[-1]["sparse/phase"] == "sparse"
    for name in ("G", "G_ema"):
        sd = snap[name]
        masks = {k[: -len("_mask")]: v for k, v in sd.items() if k.endswith("_mask")}
        assert masks and all(torch.count_nonzero(sd[k][m == 0]) == 0 for k, m in masks.items())
    exported = torch.load(run_dir(tmp_path) / "G_sparse.pt", weights_only=True)
    assert set(exported["G_ema"]) == {k for k in snap["G_ema"] if not k.endswith("_mask")}
    gen = subprocess.run([sys.executable, str(ROOT / "vendor" / "stylegan2_ada" / "generate.py"), "--network",
                          str(run_dir(tmp_path) / "G_sparse.pt"), "--seeds", "0", "--outdir", str(tmp_path / "img"),
                          "--device", "cpu"], capture_output=True, text=True, env=env())
    assert gen.returncode == 0, gen.stderr[-2000:]
    assert (tmp_path / "img" / "seed0000.png").exists()


def test_rggan_with_metric_fed_and_resume_continues(patched, tmp_path):
    flags = ["--sparse", "rggan", "--rg-lambda", "1e-2", "--metrics", "fid_digits", "--metric-gen", "32"]
    train(patched, tmp_path / "a", "--kimg", "0.016", "--snap", "1", *flags)
    rows = stats(tmp_path / "a")
    assert run_dir(tmp_path / "a").name.endswith("-rggan")
    assert all(r["sparse/phase"] in ("sparse", "dense") and "flops/train_total" in r for r in rows)
    assert rows[-1]["sparse/D/sparsity"] > 0          # λ large enough for thresholds to bite within 4 steps
    metrics = [json.loads(l)["primary"] for l in (run_dir(tmp_path / "a") / "metric-fid_digits.jsonl").read_text().splitlines()]
    snaps = sorted(run_dir(tmp_path / "a").glob("network-snapshot-*.pt"))
    last = torch.load(snaps[-1], weights_only=True)
    # the snapshot is written before its own metric is computed: it holds every earlier value
    assert last["sparse"]["metric_history"] == pytest.approx(metrics[:-1])
    assert last["sparse"]["iteration"] == 4
    train(patched, tmp_path / "b", "--kimg", "0.024", "--snap", "1", "--resume", str(snaps[-1]), *flags)
    resumed = torch.load(sorted(run_dir(tmp_path / "b").glob("network-snapshot-*.pt"))[-1], weights_only=True)
    assert resumed["sparse"]["iteration"] == 6
    assert resumed["sparse"]["metric_history"][: len(metrics) - 1] == pytest.approx(metrics[:-1])
    assert resumed["sparse"]["flops"]["total"] > last["sparse"]["flops"]["total"]


def test_run_folder_names_the_method(patched, tmp_path):
    """--dry-run prints the run folder: the unmodified tree's name, `-<method>` appended when --sparse is set."""
    def folders(tree, *methods):   # one process per tree, its dry runs in-process
        argvs = [["--outdir", str(tmp_path / "x"), *TINY, "--kimg", "0.004", "--dry-run", *m] for m in methods]
        code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import train\n"
                "for argv in json.loads(sys.argv[2]):\n    train.main.main(args=argv, standalone_mode=False)\n")
        r = subprocess.run([sys.executable, "-c", code, str(tree), json.dumps(argvs)], capture_output=True,
                           text=True, env=env())
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        return [line.split()[-1] for line in r.stdout.splitlines() if line.startswith("Run directory:")]
    base = folders(ROOT / "vendor" / "stylegan2_ada", [])
    assert len(base) == 1 and Path(base[0]).name.startswith("00000-digits-")
    got = folders(patched, ["--sparse", "none"], ["--sparse", "regan"], ["--sparse", "rggan"])
    assert got == [base[0], base[0] + "-regan", base[0] + "-rggan"]
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("flags, flag", [(["--sparse", "regan", "--interval", "0"], "interval"),
                                         (["--sparse", "regan", "--sparse-exclude", "("], "--sparse-exclude"),
                                         (["--sparse", "rggan", "--rg-lambda", "nan"], "lambda"),
                                         (["--sparse", "regan", "--mbstd-group", "3"], "--mbstd-group")])
def test_bad_flags_fail_cleanly(patched, tmp_path, flags, flag):
    r = train(patched, tmp_path / "x", "--kimg", "0.004", *flags, check=False)
    text = r.stdout + r.stderr  # dnnlib.Logger tees stderr
    errors = [line for line in text.splitlines() if line.startswith("Error:")]
    assert r.returncode == 2 and len(errors) == 1 and flag in errors[0], text[-2000:]
    assert "Traceback" not in text and not (tmp_path / "x").exists()


@pytest.mark.parametrize("method", ["regan", "rggan"])
def test_two_process_ddp_keeps_masks_identical(patched, tmp_path, method):
    worker = Path(__file__).with_name("sg2p_ddp_worker.py")
    r = subprocess.run([sys.executable, str(worker), str(patched), str(tmp_path), method], capture_output=True,
                       text=True, env=env(), timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    a, b = (torch.load(tmp_path / f"rank{k}.pt", weights_only=True) for k in (0, 1))
    for net in ("G", "D", "G_ema"):
        assert a[net], net
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), (net, k)
    if method == "regan":   # 6 iterations, warm-up 1, interval 2: ends inside a sparse phase
        zeros = sum(int((v == 0).sum()) for v in a["G"].values())
        assert zeros / sum(v.numel() for v in a["G"].values()) == pytest.approx(0.3, abs=0.01)


@pytest.mark.parametrize("flags", [["--sparse", "regan", "--interval", "3", "--warmup", "1", "--regrow", "random"],
                                   ["--sparse", "rggan", "--rg-lambda", "1e-2"]], ids=["regan", "rggan"])
def test_resume_is_bit_exact(patched, tmp_path, flags):
    """10 iterations straight == 5 + --resume + 5 (Re-GAN: the resume falls inside a dense phase, the next
    prune with random regrowth comes after it), every snapshot tensor incl. sparse state, every stats row."""
    worker = ROOT / "tests" / "stylegan2_ada" / "sg2_resume_worker.py"
    r = subprocess.run([sys.executable, str(worker), str(patched), str(tmp_path), "10", *flags], capture_output=True,
                       text=True, env=env(), timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["snapshot"] is None and result["stats"] is None and result["num_rows"] == [10, 10], result
    rows = read_stats(run_dir(tmp_path / "straight"))
    assert {r["sparse/phase"] for r in rows} == ({"dense", "sparse"} if flags[1] == "regan" else {"sparse"})
    assert max(r["sparse/G/sparsity"] for r in rows) > 0
    if flags[1] == "regan":  # the saved sparse state must fit the flags of the resuming run: refused up front
        half = sorted(run_dir(tmp_path / "half").glob("network-snapshot-*.pt"))[-1]
        out = tmp_path / "other"
        r = train(patched, out, "--kimg", "0.04", "--cmax", "16", "--resume", str(half), *flags, "--sparsity", "0.5",
                  check=False)
        text = r.stdout + r.stderr  # dnnlib.Logger tees stderr into stdout
        assert r.returncode == 2 and "--resume" in text and "sparsity: saved 0.3, given 0.5" in text, text[-2000:]
        assert "Traceback" not in text
        assert not out.exists()


def test_rggan_starts_from_an_nvlabs_pickle(patched, tmp_path):
    """Fine-tuning / transfer: --resume of an NVlabs pkl gives weights only; counters, sparse state from zero."""
    sys.path.insert(0, str(ROOT / "tests" / "stylegan2_ada"))
    import sg2_helpers
    pkl, _, _, _ = sg2_helpers.nvlabs_pickle(tmp_path)
    train(patched, tmp_path / "run", "--kimg", "0.008", "--snap", "100", "--metrics", "none", "--resume", str(pkl),
          "--sparse", "rggan", "--rg-lambda", "1e-2")
    rows = stats(tmp_path / "run")
    assert [r["progress/kimg"] for r in rows] == pytest.approx([0.004, 0.008]) and rows[-1]["sparse/D/sparsity"] > 0
    snap = torch.load(sorted(run_dir(tmp_path / "run").glob("network-snapshot-*.pt"))[-1], weights_only=True)
    assert snap["sparse"]["iteration"] == 2 and snap["cur_nimg"] == 8
    assert json.loads((run_dir(tmp_path / "run") / "training_options.json").read_text())["ada_kimg"] == 100
    assert not (tmp_path / "MARKER").exists()
