"""Test-wide settings.

One intra-op thread: the tests use tiny tensors, and on a small shared machine torch's default thread pool
spends most of its time spinning (measured: 1.06 s vs 0.03 s per tiny GAN step with 2 threads vs 1 under load).
Subprocesses started by tests inherit OMP_NUM_THREADS.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("SPARSE_TEST_THREADS", "1"))

import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
