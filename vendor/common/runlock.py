"""One writer per run folder: an exclusive lock on `<run folder>/.lock`, held while a run writes there.

The lock is an flock(2) on the open lock file: the kernel drops it when the process ends, however it ends
(exit, exception, SIGKILL), so a crashed run never leaves a folder locked (its `.lock` file stays, unlocked;
a run that releases its lock removes the file). A second run into a locked
folder is refused by name (RunDirLocked) before it writes anything. Within one process the lock is
re-entrant (a run that resumes in-process into the folder it just wrote keeps it), and `releases_run_dirs`
gives up the locks a function took when it returns, so in-process callers (tests) can hand a folder to a
new process afterwards.
"""
from __future__ import annotations

import errno
import fcntl
import functools
import os

LOCK_FILE = ".lock"

_held: dict[str, tuple[int, int]] = {}  # real path of the folder -> (pid that took it, lock file descriptor)


class RunDirLocked(RuntimeError):
    """Another process holds the run folder's lock."""


def _key(run_dir: str) -> str:
    return os.path.realpath(run_dir)


def holds(run_dir: str) -> bool:
    held = _held.get(_key(run_dir))
    return held is not None and held[0] == os.getpid()


def lock_run_dir(run_dir: str) -> str:
    """Take the exclusive lock of `run_dir` (which must exist); RunDirLocked if another process has it.
    Returns the lock file's path."""
    key = _key(run_dir)
    path = os.path.join(run_dir, LOCK_FILE)
    if holds(run_dir):
        return path
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            os.close(fd)
            raise
        try:
            owner = os.read(fd, 64).decode("ascii", "replace").strip()
        except OSError:
            owner = ""
        os.close(fd)
        raise RunDirLocked(f"{run_dir} is in use by another run (its lock {path} is held"
                           f"{' by pid ' + owner if owner.isdigit() else ''}); wait for it to end or choose "
                           f"another folder") from None
    try:
        same = os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        same = False
    if not same:  # the holder removed the file between our open and our flock: take the new one
        os.close(fd)
        return lock_run_dir(run_dir)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    _held[key] = (os.getpid(), fd)
    return path


def release_run_dir(run_dir: str) -> None:
    """Give up this process's lock of `run_dir` (nothing if it holds none)."""
    key = _key(run_dir)
    held = _held.pop(key, None)
    if held is not None and held[0] == os.getpid():
        try:  # removed while still held (a waiting opener re-checks the path, above), so a finished run leaves none
            os.unlink(os.path.join(key, LOCK_FILE))
        except OSError:
            pass
        os.close(held[1])  # closing the descriptor drops the flock


def releases_run_dirs(fn):
    """Decorator for a run's entry point: the run-folder locks it took are released when it returns or
    raises (a process that ends releases them anyway)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        before = set(k for k, (pid, _) in _held.items() if pid == os.getpid())
        try:
            return fn(*args, **kwargs)
        finally:
            for key in [k for k, (pid, _) in _held.items() if pid == os.getpid() and k not in before]:
                release_run_dir(key)
    return wrapper
