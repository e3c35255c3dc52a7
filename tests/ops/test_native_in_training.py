"""The native kernels serve real training runs (issue 8 item 6): the patched SNGAN under `--sparse rggan`, run
from its CLI like a user would, reports in stats.jsonl that every threshold-masked forward used the extension."""
import json
import os
import subprocess
import sys
from pathlib import Path

from sparse_core.patching import apply_to_copy

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--data", "digits", "--data-ratio", "0.1", "--ch", "8", "--batch_size", "4", "--G_batch_size", "4",
        "--n_dis", "1", "--tick_steps", "1", "--sample_step", "0", "--eval_step", "0", "--device", "cpu"]


def test_patched_sngan_rggan_training_forwards_are_native(cpu_ext, tmp_path):
    # cpu_ext: built (or found) in $SPARSE_CORE_EXT_DIR, which the run below inherits, so it reuses the build.
    tree = apply_to_copy(ROOT / "patches" / "sngan.patch", ROOT / "vendor" / "sngan", tmp_path / "work" / "sngan")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("SPARSE_CORE_OPS", None)   # the default (auto) mode, as a user runs it
    r = subprocess.run([sys.executable, str(tree / "train.py"), *TINY, "--total_steps", "3", "--sparse", "rggan",
                        "--logdir", str(tmp_path / "run")], capture_output=True, text=True, cwd=tree, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "disagree" not in r.stderr and "unavailable" not in r.stderr, r.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    # share of the run's threshold-masked forwards (G and D, first one under no_grad) served natively
    assert all(row["sparse/native/threshold_masked_weight"] == 1.0 for row in rows)
    assert not any(k.startswith("sparse/native/") and k != "sparse/native/threshold_masked_weight" for k in rows[-1])
