"""Atomic torch.save: a temporary file in the target folder renamed over the target (no half-written files).
The object is serialised in memory first, so a failed write (full disk, read-only folder) is an OSError naming
the FINAL file and its cause (torch.save onto a file would say only 'unexpected pos ...')."""
import io
import os
import tempfile

import torch


def _write_file(tmp: str, data, target: str) -> None:
    """Write `data` to the temporary file `tmp` (the future `target`) and flush it to the disk."""
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def save_atomic(obj, path: str, prefix: str = ".tmp-") -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=prefix, suffix=".pt")
        os.close(fd)
        _write_file(tmp, buffer.getbuffer(), path)
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(error, OSError):
            failed = OSError(error.errno, error.strerror or str(error), path)
            failed.during_write = True
            raise failed from None
        raise
