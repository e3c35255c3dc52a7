"""SPARSE_CORE_OPS forcing, build caching by source hash, and the fallback when a build fails."""
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from sparse_core import ops
from sparse_core.ops import loader
from sparse_core.ops import reference as ref

REAL_SOURCES = loader.source_dir()  # the checkout's cuda/ folder


def op_path(out: torch.Tensor) -> str:
    return "native" if type(out.grad_fn).__name__.startswith("ThresholdMaskedWeight") else "reference"


def thr(w, t=None):
    return ops.threshold_masked_weight(w, torch.zeros(w.shape[0], dtype=w.dtype) if t is None else t)


def test_ref_mode_forces_the_reference(monkeypatch, cpu_ext):
    monkeypatch.setenv(loader.MODE_ENV, "ref")
    w = torch.randn(3, 4, requires_grad=True)
    assert op_path(ops.threshold_masked_weight(w, torch.zeros(3))) == "reference"
    assert ops.backend_for(w) == "reference"


def test_ext_mode_forces_the_extension(monkeypatch, cpu_ext):
    monkeypatch.setenv(loader.MODE_ENV, "ext")
    w = torch.randn(3, 4, requires_grad=True)
    assert op_path(thr(w)) == "native"
    # ext mode cannot silently fall back: fp16 has no CPU kernels, so it is an error naming the reason
    with pytest.raises(RuntimeError, match="no native kernels for torch.float16 on cpu"):
        thr(w.detach().half())


def test_auto_mode_falls_back_per_call_for_unsupported_dtypes(cpu_ext):
    w = torch.randn(3, 4, dtype=torch.bfloat16)
    t = torch.full((3,), 0.2, dtype=torch.bfloat16)
    assert torch.equal(ops.threshold_masked_weight(w, t), ref.threshold_masked_weight(w, t))
    # masks may broadcast (plain masking is always the reference multiply)
    row_mask = torch.tensor([1.0, 0.0, 1.0, 1.0])
    assert torch.equal(ops.masked_weight(w.float(), row_mask), w.float() * row_mask)


def test_invalid_mode_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(loader.MODE_ENV, "fast")
    with pytest.raises(ValueError, match="SPARSE_CORE_OPS='fast' is invalid"):
        thr(torch.ones(2))


def test_build_hash_follows_the_sources(tmp_path):
    copy = tmp_path / "src"
    shutil.copytree(REAL_SOURCES, copy)
    same = loader.build_hash("cpu", copy)
    assert same == loader.build_hash("cpu", REAL_SOURCES)
    (copy / "sparse_ops_common.h").write_text((copy / "sparse_ops_common.h").read_text() + "\n// changed\n")
    assert loader.build_hash("cpu", copy) != same
    assert loader.build_hash("cuda", copy) != loader.build_hash("cpu", copy)


def test_cached_build_is_reused_without_recompiling(cpu_ext):
    library = Path(cpu_ext.library_path)
    stamp = library.stat().st_mtime_ns
    loader.reset()
    again = loader.load("cpu")
    assert again.namespace == cpu_ext.namespace
    assert Path(again.library_path).stat().st_mtime_ns == stamp


@pytest.fixture
def broken_sources(tmp_path, monkeypatch):
    src = tmp_path / "broken_src"
    shutil.copytree(REAL_SOURCES, src)
    (src / "sparse_ops_cpu.cpp").write_text("this is not C++ at all;\n")
    monkeypatch.setenv(loader.SOURCE_ENV, str(src))
    monkeypatch.setenv(loader.CACHE_ENV, str(tmp_path / "cache"))
    loader.reset()
    return src


def test_failed_build_warns_once_and_still_computes_correctly(broken_sources, tmp_path, rng):
    w = torch.randn(6, 5, generator=rng, requires_grad=True)
    mask = (torch.rand(6, 5, generator=rng) > 0.5).float()
    t = torch.rand(6, generator=rng) * 0.5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = ops.threshold_masked_weight(w, t)
        b = ops.modulated_conv2d(torch.randn(1, 5, 4, 4), w.reshape(6, 5, 1, 1), torch.ones(1, 5))
        c = ops.threshold_masked_weight(w, t)
    ours = [c for c in caught if "native cpu extension unavailable" in str(c.message)]
    assert len(ours) == 1, [str(c.message) for c in caught]
    assert "sparse_ops_cpu.cpp" in str(ours[0].message) or "broken_src" in str(ours[0].message)
    assert torch.equal(a, ref.threshold_masked_weight(w, t)) and torch.equal(c, a)
    assert b.shape == (1, 6, 4, 4)
    assert op_path(a) == "reference"
    # nothing half-built is left in the cache
    assert not any((tmp_path / "cache").glob("ext-*/*.so"))


def test_failed_build_with_ext_forced_is_an_error(broken_sources, monkeypatch):
    monkeypatch.setenv(loader.MODE_ENV, "ext")
    with pytest.raises(loader.ExtensionBuildError, match="building the cpu extension from .*broken_src.* failed"):
        thr(torch.ones(2, 2))


def test_missing_sources_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv(loader.SOURCE_ENV, str(tmp_path / "nowhere"))
    monkeypatch.setenv(loader.MODE_ENV, "ext")
    with pytest.raises(loader.ExtensionBuildError, match="sources not found: .*nowhere.*sparse_ops_cpu.cpp"):
        thr(torch.ones(2, 2))


def test_unusable_cache_directory_falls_back_with_a_named_error(tmp_path, monkeypatch):
    not_a_dir = tmp_path / "a_file"
    not_a_dir.write_text("")
    monkeypatch.setenv(loader.CACHE_ENV, str(not_a_dir))
    with pytest.warns(RuntimeWarning, match="cannot prepare the build directory"):
        out = ops.threshold_masked_weight(torch.ones(2, 2), torch.full((2,), 2.0))
    assert torch.equal(out, torch.zeros(2, 2))
    monkeypatch.setenv(loader.MODE_ENV, "ext")
    with pytest.raises(loader.ExtensionBuildError, match=f"set {loader.CACHE_ENV}"):
        thr(torch.ones(2, 2))
