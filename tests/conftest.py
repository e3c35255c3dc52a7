"""Test-wide settings.

One intra-op thread: the tests use tiny tensors, and on a small shared machine torch's default thread pool
spends most of its time spinning (measured: 1.06 s vs 0.03 s per tiny GAN step with 2 threads vs 1 under load).
Subprocesses started by tests inherit OMP_NUM_THREADS.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("SPARSE_TEST_THREADS", "1"))

import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


import sys  # noqa: E402

sys.path.append(os.path.dirname(os.path.abspath(__file__)))  # tests/upstream_facts.py, tests/source_scan.py (last: shadows nothing)

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_sg2_training_stats():
    """StyleGAN2-ADA's training_stats keeps process-wide accumulators (upstream's design: one run per process).
    Tests that run train.py in this process start from them as a fresh process has them, whatever ran before in
    this worker (a NaN summed in stays; init_multiprocessing refuses a second call after a collection)."""
    stats = sys.modules.get("torch_utils.training_stats")
    if stats is not None:
        stats._counters.clear()
        stats._cumulative.clear()
        stats._sync_called = False
    yield
