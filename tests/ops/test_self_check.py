"""The one-time numeric self-check that guards the native kernels (the CUDA ones cannot run in CI)."""
import dataclasses

import pytest
import torch

import sparse_core.ops as ops
from sparse_core.ops import loader


class _Skewed:
    """Real CPU kernels, but threshold_forward off by 1% (a stand-in for a broken kernel)."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def threshold_forward(self, w, t, channel_dim):
        return self._real.threshold_forward(w, t, channel_dim) * 1.01


@pytest.fixture
def cpu_ext():
    return loader.load("cpu")


def test_real_kernels_pass(cpu_ext):
    assert ops.self_check(cpu_ext, torch.device("cpu")) == ""


def test_a_wrong_kernel_is_caught_and_falls_back(cpu_ext, monkeypatch):
    broken = dataclasses.replace(cpu_ext, ops=_Skewed(cpu_ext.ops))
    assert ops.self_check(broken, torch.device("cpu")).startswith("threshold_masked_weight: forward differs")
    monkeypatch.setattr(loader, "try_load", lambda kind: broken)
    monkeypatch.setattr(ops, "_verified", {})
    monkeypatch.setenv(loader.MODE_ENV, "auto")
    w, t = torch.randn(4, 3, 3, 3), torch.full((4,), 0.3)
    with pytest.warns(RuntimeWarning, match="disagree with the reference"):
        out = ops.threshold_masked_weight(w, t)
    assert torch.equal(out, ops.reference.threshold_masked_weight(w, t))   # the reference answered
    monkeypatch.setattr(loader, "load", lambda kind: broken)
    monkeypatch.setattr(ops, "_verified", {})
    monkeypatch.setenv(loader.MODE_ENV, "ext")
    with pytest.raises(RuntimeError, match="self-check failed"):
        ops.threshold_masked_weight(w, t)
