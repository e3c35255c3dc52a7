"""The dynamic-sparse-training methods through a patched vendor loop (SNGAN): `--sparse rigl` with the flags the
registry generates trains at fixed per-layer counts, changes its masks at the update iterations, and resumes from
a snapshot taken with an update pending bit-exactly."""
from pathlib import Path

import pytest
import torch

from patch_checks import read_stats, run_train
from sparse_core.patching import apply_to_copy

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--data", "digits", "--data-ratio", "0.1", "--ch", "8", "--batch_size", "4", "--G_batch_size", "4",
        "--n_dis", "2", "--tick_steps", "1", "--sample_step", "0", "--eval_step", "0", "--device", "cpu"]
RIGL = ["--sparse", "rigl", "--density-G", "0.5", "--density-D", "0.4", "--update-frequency", "2",
        "--death-rate", "0.5", "--total_steps", "8"]


@pytest.fixture(scope="module")
def patched(tmp_path_factory):
    return apply_to_copy(ROOT / "patches" / "sngan.patch", ROOT / "vendor" / "sngan",
                         tmp_path_factory.mktemp("work") / "sngan")


def _masks(path):
    return {k: t for k, t in torch.load(path, weights_only=True)["sparse"]["tensors"].items()}


def test_sngan_rigl_trains_updates_and_resumes(patched, tmp_path):
    run_train(patched, [*TINY, *RIGL, "--snapshot_steps", "2"], tmp_path / "full")
    rows = read_stats(tmp_path / "full")
    assert len(rows) == 8 and all(r["sparse/method"] == "rigl" and r["sparse/phase"] == "sparse" for r in rows)
    for n, d in (("G", 0.5), ("D", 0.4)):
        assert len({r[f"sparse/{n}/sparsity"] for r in rows}) == 1            # counts fixed through the updates
        assert rows[0][f"sparse/{n}/sparsity"] == pytest.approx(1 - d, abs=2e-3)
    assert rows[-1]["flops/train_total"] < rows[-1]["flops/train_dense_equiv"]   # ERK: FLOPs above the density
    snaps = [_masks(tmp_path / "full" / f"snapshot-{k}.pt") for k in (2, 4, 6, 8)]
    # T_end = 0.75 · 8 = 6 (from the run length): the update due at 2 runs in step 3, the one at 4 in step 5
    for (a, b), changes in zip(zip(snaps, snaps[1:]), (True, True, False)):
        assert any(not torch.equal(a[k], b[k]) for k in a) == changes
        assert all(int(a[k].sum()) == int(b[k].sum()) for k in a)
    state = torch.load(tmp_path / "full" / "snapshot-4.pt", weights_only=True)["sparse"]
    assert state["method_state"] == {"pending": {"G": 4, "D": 4}, "update_end": 6}
    run_train(patched, [*TINY, *RIGL, "--resume", str(tmp_path / "full" / "snapshot-4.pt")], tmp_path / "half")
    half = read_stats(tmp_path / "half")
    assert [r["Loss/G"] for r in half] == [r["Loss/G"] for r in rows[4:]]
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "half" / "last.pt", weights_only=True)
    assert all(torch.equal(a["net_G"][k], b["net_G"][k]) for k in a["net_G"])
    assert all(torch.equal(a["sparse"]["tensors"][k], b["sparse"]["tensors"][k]) for k in a["sparse"]["tensors"])
