#!/usr/bin/env bash
# README command 1: set up (idempotent), then baseline SNGAN vs Re-SNGAN vs RG-SNGAN on the built-in digits.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup_env.sh
exec .venv/bin/python bench/main_job.py "$@"
