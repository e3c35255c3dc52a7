"""Cache directory, content hashes and atomic writes for detectors and reference statistics.

Everything written here goes through a temporary file in the target directory followed by
os.replace, so an interrupted run never leaves a half-written cache entry behind.
"""
import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import MetricError

CACHE_ENV_VAR = "SPARSE_GAN_CACHE"


def resolve_cache_dir(cache_dir=None) -> Path:
    """`cache_dir` if given, else $SPARSE_GAN_CACHE, else ~/.cache/sparse-gan (created on demand)."""
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_ENV_VAR) or os.path.join(os.path.expanduser("~"), ".cache", "sparse-gan")
    path = Path(cache_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise MetricError(f"cache_dir {str(path)!r} cannot be created: {error}") from error
    if not path.is_dir():
        raise MetricError(f"cache_dir {str(path)!r} is not a directory")
    return path


@contextlib.contextmanager
def atomic_output(path: Path, mode: str = "wb"):
    """Open a temporary sibling of `path` for writing; it replaces `path` only if the block succeeds."""
    path = Path(path)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, mode) as stream:
            yield stream
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise


def file_sha256(path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def array_sha256(array: np.ndarray) -> str:
    """Hash of dtype, shape and bytes, so reshaped or retyped data never collides."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}|{array.shape}|".encode())
    digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    with atomic_output(path) as stream:
        np.savez(stream, **arrays)


def load_arrays(path: Path, expected_keys) -> dict[str, np.ndarray]:
    """Load an .npz written by save_arrays; pickled objects are refused (allow_pickle=False)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError) as error:
        raise MetricError(f"cached statistics file {str(path)!r} is unreadable ({error}); delete it to recompute") from error
    missing = set(expected_keys) - set(arrays)
    if missing:
        raise MetricError(f"cached statistics file {str(path)!r} lacks {sorted(missing)}; delete it to recompute")
    return arrays
