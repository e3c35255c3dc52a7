"""Atomic torch.save: a temporary file in the target folder renamed over the target (no half-written files)."""
from __future__ import annotations

import os
import tempfile

import torch


def save_atomic(obj, path: str, prefix: str = ".tmp-") -> None:
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=prefix, suffix=".pt")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
