"""The five patched trees (--sparse regan) fail safely too (issue 23, items 2 and 2b): an absurd learning rate stops
the run before any snapshot or sparse export (G_sparse.pt / G_dense.pt) is written from the diverged state, and a
full disk at the sparse export ends with one line naming the file and the cause. One worker process runs all five
(tests/vendor_common/patched_failsafe_worker.py; one torch import instead of ten)."""
import json
import os
import subprocess
import sys
from pathlib import Path

from sparse_core.patching import apply_to_copy

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
VENDORS = ("sngan", "progan", "autogan", "fastgan", "stylegan2_ada")


def test_patched_trees_stop_before_writing_a_diverged_state_and_name_a_failed_export(tmp_path):
    sys.path.insert(0, str(ROOT / "tests" / "fastgan"))
    from fg_helpers import make_folder
    images = make_folder(tmp_path / "images", count=4)
    trees = [f"{v}={apply_to_copy(ROOT / 'patches' / f'{v}.patch', ROOT / 'vendor' / v, tmp_path / 'patched' / v)}"
             for v in VENDORS]
    result = tmp_path / "result.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", SPARSE_CORE_OPS="ref",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(HERE / "patched_failsafe_worker.py"), str(result), str(images),
                           str(tmp_path / "work"), *trees], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    problems = json.loads(result.read_text())
    assert sorted(problems) == sorted(VENDORS)
    assert problems == {v: [] for v in VENDORS}, json.dumps(problems, indent=1)
