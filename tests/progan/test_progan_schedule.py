"""Per-stage plan, upstream's fade-in alpha (off-by-one start) and the stage sampler."""
import math

import pytest
import torch

from vendor.progan.data import StageBatches
from vendor.progan.schedule import build_plan


def test_official_plan_and_alpha_for_cifar10_10_percent():
    plan = build_plan([4, 8, 16, 32], 5000)
    assert [(s.batch, s.epochs, s.per_epoch) for s in plan] == [(128, 2, 40), (128, 2, 40), (128, 2, 40), (64, 8, 79)]
    last = plan[-1]
    # upstream: alpha = (batch_idx + epoch * L) / (N * L), epoch 1-based
    for epoch in range(1, 9):
        for batch_idx in (0, 37, 78):
            i = (epoch - 1) * 79 + batch_idx
            assert last.alpha(i) == pytest.approx((batch_idx + epoch * 79) / (8 * 79))
    assert last.alpha(0) == pytest.approx(0.125)            # the fade starts at 1/N, not 0
    assert last.alpha(7 * 79 - 1) < 1 <= last.alpha(7 * 79)  # the last epoch alone is unblended
    assert last.alpha(last.iters - 1) > 1


def test_kimg_plan():
    plan = build_plan([4, 8], 1000, mode="kimg", batch=[16, 8], stable_kimg=0.1, fade_kimg=0.04)
    assert plan[0].iters == math.ceil(100 / 16) and plan[0].alpha(0) == 1.0
    assert plan[1].fade_iters == 5 and plan[1].iters == 5 + math.ceil(100 / 8)
    assert [plan[1].alpha(i) for i in range(7)] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.0]


def test_stage_batches_partial_last_batch_and_state():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 2, 2).contiguous()
    b = StageBatches(images, 4, seed=3)
    sizes, seen = [], []
    for _ in range(3):
        idx = b.next_indices()
        sizes.append(len(idx))
        seen += idx.tolist()
    assert sizes == [4, 4, 2] and sorted(seen) == list(range(10))   # one pass, DataLoader-like
    state = b.state_dict()
    a1 = [b.next(torch.device("cpu")) for _ in range(4)]
    b.load_state_dict(state)
    a2 = [b.next(torch.device("cpu")) for _ in range(4)]
    assert all(torch.equal(x, y) for x, y in zip(a1, a2))
    assert float(a1[0].min()) >= -1 and float(a1[0].max()) <= -1 + 9 / 127.5 + 1e-6
    full = StageBatches(images, 4, seed=3, epoch_aligned=False)
    assert [len(full.next_indices()) for _ in range(3)] == [4, 4, 4]
