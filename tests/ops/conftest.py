"""Fixtures for the ops tests: the compiled CPU extension and a clean loader state per test."""
import pytest
import torch

from sparse_core.ops import loader


@pytest.fixture(autouse=True)
def clean_ops_environment(monkeypatch):
    """Each test starts from the default dispatch mode and leaves no loader state behind."""
    for name in (loader.MODE_ENV, loader.SOURCE_ENV):
        monkeypatch.delenv(name, raising=False)
    loader.reset()
    yield
    loader.reset()


@pytest.fixture
def cpu_ext():
    """The compiled CPU extension (built once, then reused from the cache). A build failure is a test failure."""
    return loader.load("cpu")


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(1234)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64 (the plain norm of a - b when b is zero)."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    denom = b.norm().item()
    return (a - b).norm().item() / denom if denom > 0 else (a - b).norm().item()


def boundary_safe_weights(shape, thresholds, generator, channel_dim=0, margin=0.02):
    """Weights whose |w| - t avoids 0, +-0.4 and +-1 by `margin`, so finite differences are valid
    (the step and the estimator's kinks are not crossed by gradcheck's perturbations)."""
    w = torch.randn(shape, generator=generator, dtype=torch.float64) * 0.8
    view = [1] * len(shape)
    view[channel_dim] = -1
    x = w.abs() - thresholds.reshape(view)
    for edge in (0.0, 0.4, -0.4, 1.0, -1.0):
        near = (x - edge).abs() < margin
        w = torch.where(near, w + torch.sign(w) * 2 * margin, w)
        x = w.abs() - thresholds.reshape(view)
    return w


# Helpers reach the test modules as fixtures: no test module imports another (import-mode agnostic).
@pytest.fixture
def rel_err():
    return relative_error


@pytest.fixture
def safe_weights():
    return boundary_safe_weights
