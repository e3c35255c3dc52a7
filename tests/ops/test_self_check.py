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
    with pytest.warns(RuntimeWarning, match="threshold_masked_weight disagrees with the reference"):
        out = ops.threshold_masked_weight(w, t)
    assert torch.equal(out, ops.reference.threshold_masked_weight(w, t))   # the reference answered
    monkeypatch.setattr(loader, "load", lambda kind: broken)
    monkeypatch.setattr(ops, "_verified", {})
    monkeypatch.setenv(loader.MODE_ENV, "ext")
    with pytest.raises(RuntimeError, match="self-check failed"):
        ops.threshold_masked_weight(w, t)


def _fresh_auto(monkeypatch, ext):
    monkeypatch.setattr(loader, "try_load", lambda kind: ext)
    monkeypatch.setattr(ops, "_verified", {})
    monkeypatch.setenv(loader.MODE_ENV, "auto")


@pytest.mark.parametrize("context", ["no_grad", "inference_mode"])
def test_self_check_passes_whatever_the_callers_grad_mode(cpu_ext, monkeypatch, context):
    """The first threshold-masked forward of a run often happens under no_grad (a FLOP count, a sample grid):
    the check must still run its gradients and keep the native kernel on."""
    _fresh_auto(monkeypatch, cpu_ext)
    w, t = torch.randn(4, 3, 3, 3), torch.full((4,), 0.3)
    guard = torch.no_grad() if context == "no_grad" else torch.inference_mode()
    with guard:
        out = ops.threshold_masked_weight(w, t)
    assert list(ops._verified.values()) == [""] and [k[:3] for k in ops._verified] == [
        ("threshold_masked_weight", "cpu", torch.float32)]
    assert torch.equal(out, ops.reference.threshold_masked_weight(w, t))
    w.requires_grad_()
    assert type(ops.threshold_masked_weight(w, t).grad_fn).__name__ == "ThresholdMaskedWeightBackward"


def test_one_failing_op_falls_back_alone(cpu_ext, monkeypatch):
    broken = dataclasses.replace(cpu_ext, ops=_Skewed(cpu_ext.ops))
    _fresh_auto(monkeypatch, broken)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    before = ops.backend_counts()
    with pytest.warns(RuntimeWarning, match="threshold_masked_weight disagrees"):
        thr = ops.threshold_masked_weight(w, torch.full((4,), 0.3))
    _, dcoefs = ops.modulation(w, torch.rand(2, 3) + 0.5)
    assert type(thr.grad_fn).__name__ != "ThresholdMaskedWeightBackward"   # reference
    assert type(dcoefs.grad_fn).__name__ == "ModconvDemodBackward"          # still native
    assert {k[0]: bool(v) for k, v in ops._verified.items()} == {"threshold_masked_weight": True,
                                                                 "modulated_conv2d": False}
    assert ops.native_shares(before) == {"threshold_masked_weight": 0.0, "modulated_conv2d": 1.0}


def test_backend_counts_count_every_call(cpu_ext, monkeypatch):
    _fresh_auto(monkeypatch, cpu_ext)
    w, t = torch.randn(4, 3), torch.zeros(4)
    before = ops.backend_counts()
    for _ in range(3):
        ops.threshold_masked_weight(w, t)
    ops.threshold_masked_weight(w.half(), t.half())       # no CPU fp16 kernel: the reference serves it
    after = ops.backend_counts()["threshold_masked_weight"]
    assert (after[0] - before["threshold_masked_weight"][0], after[1] - before["threshold_masked_weight"][1]) == (3, 1)
    assert ops.native_shares(before) == {"threshold_masked_weight": 0.75}
