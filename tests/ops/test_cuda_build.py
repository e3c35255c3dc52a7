"""The CUDA sources must compile and link (CI has nvcc but no GPU: nothing here runs a kernel).

Runs when nvcc exists at /usr/local/cuda and CI=true or SPARSE_CORE_TEST_CUDA_BUILD=1. In CI a
missing nvcc is a failure, not a skip.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sparse_core.ops import loader

NVCC = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / "nvcc"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REQUESTED = IN_CI or os.environ.get("SPARSE_CORE_TEST_CUDA_BUILD") == "1"
REPO = Path(loader.__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not REQUESTED,
                                reason="CUDA compile test runs with CI=true or SPARSE_CORE_TEST_CUDA_BUILD=1")


def run_build(env_overrides: dict, timeout: int = 420) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    env.update(env_overrides)
    return subprocess.run([sys.executable, "-m", "sparse_core.ops.build", "--cuda"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_nvcc_is_present():
    assert NVCC.exists(), f"CUDA compile test requested but nvcc is missing at {NVCC} (set CUDA_HOME)"


def test_cuda_sources_compile_and_link():
    if not NVCC.exists():
        pytest.fail(f"nvcc missing at {NVCC}")
    result = run_build({})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    cuda_rows = [line for line in result.stdout.splitlines() if line.startswith("threshold_backward")]
    assert cuda_rows and ("compiled+linked" in cuda_rows[0] or cuda_rows[0].split()[-1] == "native"), output
    assert any(Path(loader.cache_root()).glob("ext-cuda-*/*.so")), output


def test_broken_cuda_source_fails_loudly(tmp_path):
    if not NVCC.exists():
        pytest.fail(f"nvcc missing at {NVCC}")
    src = tmp_path / "src"
    shutil.copytree(loader.source_dir(), src)
    # keep the host-side binding trivial so the test only pays for nvcc rejecting the kernel file
    (src / "sparse_ops_cuda.cpp").write_text("int sparse_core_placeholder = 0;\n")
    (src / "sparse_ops_cuda_kernels.cu").write_text("__global__ void k() { this_is_not_cuda; }\n")
    # Same cache as the real build: the (unchanged) CPU extension is reused, the broken CUDA one has
    # its own hash directory, which the loader removes after the failure.
    result = run_build({loader.SOURCE_ENV: str(src)})
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "building the cuda extension" in output and "this_is_not_cuda" in output, output
    broken_tag = loader.build_hash("cuda", src)
    assert not (loader.cache_root() / f"ext-{broken_tag}").exists(), "a failed build left its directory behind"
