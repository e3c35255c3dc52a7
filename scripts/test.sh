#!/usr/bin/env bash
# README command 2: set up (idempotent) and run the whole test suite on the CPU.
# Includes compiling the C++ extension and compiling + linking the CUDA sources (not running them).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup_env.sh
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# Two worker processes (pytest-xdist): the suite is CPU-bound and single-threaded per test, so both cores
# are used; PYTEST_WORKERS=0 runs it in this process (e.g. for -x / --pdb).
exec .venv/bin/python -m pytest -q -n "${PYTEST_WORKERS:-2}" "$@"
