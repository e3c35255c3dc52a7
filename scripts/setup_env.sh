#!/usr/bin/env bash
# Idempotent environment set-up: a project-local virtualenv with the pinned torch and the package in
# editable mode. Both README commands call it first, so a fresh clone needs nothing installed by hand.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
stamp="$venv/.setup-stamp"
want="torch==2.14.1 $(sha1sum "$root/setup.py" | cut -c1-12)"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing torch==2.14.1 and the project into $venv (about 2 minutes the first time)"
  "$venv/bin/pip" install -q --disable-pip-version-check torch==2.14.1 2>&1 | grep -v "is ignored: it is neither" || true
  "$venv/bin/pip" install -q --disable-pip-version-check -e "$root[test]" 2>&1 | grep -v "is ignored: it is neither" || true
  "$venv/bin/python" -c "import torch, sparse_core" >/dev/null
  echo "$want" > "$stamp"
fi
