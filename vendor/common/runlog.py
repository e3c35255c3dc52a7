"""Run-directory output shared by the vendor trees: stats.jsonl, snapshots, image grids, progress lines.

Snapshots and images are written atomically (temporary file in the same folder, then os.replace),
so a crash or a full disk never leaves a half-written file under the final name. Snapshots are
read with torch.load(weights_only=True): a checkpoint can hold tensors and plain containers only,
and loading one never runs code.
"""
from __future__ import annotations

import glob
import io
import json
import math
import numbers
import os
import re
import tempfile
import time

import numpy as np
import torch

from vendor.common.runguard import write_failed
from vendor.common.runlock import LOCK_FILE, RunDirLocked, holds, lock_run_dir, release_run_dir

STATS_FILE = "stats.jsonl"


class SnapshotError(RuntimeError):
    """A snapshot file is missing, corrupt, or holds something other than tensors and containers."""


class RunDirError(RuntimeError):
    """A run folder cannot be used as asked (e.g. a fresh run into a folder holding another run)."""


# ------------------------------------------------------------------------------------------------
# stats.jsonl


def _json_value(value):
    """Plain JSON for the numbers a training loop produces (tensors, numpy scalars, nan/inf)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        value = value.item() if value.numel() == 1 else value.tolist()
    elif isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no nan/inf; null keeps the line parseable by any reader
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if value is None or isinstance(value, (str, bool, numbers.Number)):
        return value
    raise TypeError(f"stats value of type {type(value).__name__} is not JSON-serialisable")


def append_jsonl(path: str, record: dict) -> None:
    """Append one JSON object as one line and flush it to the OS (readable while training runs). A failed
    write (full disk, read-only folder) raises an OSError naming `path` (runguard words it)."""
    line = json.dumps(_json_value(record), sort_keys=False)
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
    except OSError as error:
        raise write_failed(path, error) from None


def tensorboard_available() -> bool:
    """Whether the optional `tensorboard` package is installed (`pip install -e .[tensorboard]`)."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


class StatsWriter:
    """Appends one JSON object per tick to `<run_dir>/stats.jsonl`. With `tensorboard=True` every number of the
    row (the sparse/* and flops/* series a patch adds included) also goes to TensorBoard events in `run_dir`
    when the tensorboard package is installed, as upstream StyleGAN2-ADA does; without the package the run
    goes on with stats.jsonl alone. The events' step is the images shown to D (progress/kimg x 1000), so runs
    of every vendor share one x axis; a row without progress/kimg takes the row count."""

    def __init__(self, run_dir: str, file_name: str = STATS_FILE, tensorboard: bool = False):
        os.makedirs(run_dir, exist_ok=True)
        self.path = os.path.join(run_dir, file_name)
        self.events = None
        self._rows = 0
        if tensorboard and tensorboard_available():
            import weakref

            from torch.utils.tensorboard import SummaryWriter

            self.events = SummaryWriter(run_dir)
            weakref.finalize(self, self.events.close)

    def write(self, stats: dict) -> None:
        append_jsonl(self.path, stats)
        self._rows += 1
        if self.events is None:
            return
        kimg = stats.get("progress/kimg")
        step = int(round(kimg * 1000)) if isinstance(kimg, numbers.Real) and math.isfinite(kimg) else self._rows
        for key, value in stats.items():
            value = _json_value(value) if isinstance(value, (torch.Tensor, np.generic)) else value
            if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
                self.events.add_scalar(key, value, global_step=step)
        self.events.flush()


FLAGS_FILE = "flags.jsonl"


def record_flags(run_dir: str, args, file_name: str = FLAGS_FILE) -> str:
    """Append the run's resolved flags (every value after parsing and the start-up checks: defaults, derived
    values, a patch's sparse-training flags) as one JSON object {"time", "flags"} to <run_dir>/flags.jsonl; each
    start adds one (a resumed run's line follows the first run's). Values JSON cannot hold are written as text."""
    def plain(value):
        try:
            return _json_value(value)
        except TypeError:
            return str(value)

    flags = {key: plain(value) for key, value in sorted(vars(args).items()) if not key.startswith("_")}
    path = os.path.join(run_dir, file_name)
    append_jsonl(path, {"time": time.time(), "flags": flags})
    return path


def read_jsonl(path: str) -> list[dict]:
    with open(path, "r", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


# ------------------------------------------------------------------------------------------------
# atomic writes, snapshots


def atomic_write(path: str, write_fn) -> None:
    """Call write_fn(tmp_path) for a temporary file `.<name>.XXXXXXXX.tmp` next to `path`, then rename
    it over `path`. On any failure the temporary file is removed and `path` is left as it was; a
    process killed mid-write leaves the temporary file, which remove_stale_tmp() clears on the next start.
    An OSError (full disk, read-only folder, ...) is raised again naming `path` with its cause."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        handle, tmp_path = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                            dir=folder)
    except OSError as error:
        raise write_failed(path, error) from None
    os.close(handle)
    try:
        write_fn(tmp_path)
        # mkstemp creates the file private (0600); give the final file the usual umask-based mode
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        with open(tmp_path, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp_path, path)
    except BaseException as error:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        if isinstance(error, OSError):
            raise write_failed(path, error) from None
        raise


def write_bytes(path: str, data: bytes) -> None:
    """Write `data` to `path` through Python's file layer, so a full disk is an OSError with its cause
    (torch.save onto a file reports it as 'unexpected pos ...')."""
    with open(path, "wb") as handle:
        handle.write(data)


def save_snapshot(obj, path: str) -> None:
    """torch.save `obj` (tensors and plain containers) to `path` atomically: serialised in memory first,
    then written, so a failed write names the file and the cause."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, lambda tmp: write_bytes(tmp, buffer.getbuffer()))


def load_snapshot(path: str, map_location="cpu"):
    """Load a snapshot with weights_only=True (through vendor.common.safeload, the one safe-load path);
    a bad file raises SnapshotError naming it."""
    from vendor.common.safeload import CheckpointError, load_checkpoint
    if not os.path.isfile(path):
        raise SnapshotError(f"{path}: snapshot file not found")
    try:
        return load_checkpoint(path, map_location=map_location)
    except CheckpointError as error:  # names the file and the problem, never advises weights_only=False
        raise SnapshotError(str(error)) from None


# ------------------------------------------------------------------------------------------------
# run folders: stale temporaries, fresh runs, resumed runs

# Temporaries of atomic_write (`.<name>.<mkstemp 8 chars>.tmp`, e.g. `.last.pt.k2j4h5a8.tmp`,
# `.all_5.pth.*.tmp`, `.network-snapshot-000000.pt.*.tmp`) and of sparse_core's writes (`.tmp-<8 chars>.pt`,
# `.tmp-ticket-<8 chars>.pt`): left only by a process killed mid-write.
_STALE_TMP = re.compile(r"^\.(.+\.[A-Za-z0-9_]{8}\.tmp|tmp-(ticket-)?[A-Za-z0-9_]{8}\.pt)$")
RUN_LOGS = (STATS_FILE, "metric-*.jsonl")  # the append-only logs of a run folder


def remove_stale_tmp(run_dir: str) -> list[str]:
    """Delete the temporaries killed writes left in `run_dir` and its sub-folders (models/, Model/, ...;
    a sub-folder holding its own run lock is another run's and is skipped). Call only while no writer runs
    there (prepare_run_dir holds the folder's lock): any temporary found is stale, whatever its age.
    Returns the removed paths."""
    removed = []
    if not os.path.isdir(run_dir):
        return removed
    for folder, subfolders, files in os.walk(run_dir):
        subfolders[:] = sorted(d for d in subfolders
                               if not os.path.exists(os.path.join(folder, d, LOCK_FILE))
                               and not os.path.islink(os.path.join(folder, d)))
        for name in sorted(files):
            path = os.path.join(folder, name)
            if _STALE_TMP.match(name) and os.path.isfile(path) and not os.path.islink(path):
                os.remove(path)
                removed.append(path)
    return removed


def remove_stale_tmp_if_idle(folder: str) -> list[str]:
    """remove_stale_tmp for a folder this run reads from but does not write to (e.g. the folder of the
    snapshot it resumes): only while no live run holds that folder's lock (then it takes the lock for the
    duration); a locked folder is left alone. Returns the removed paths."""
    if not os.path.isdir(folder):
        return []
    held_before = holds(folder)
    try:
        lock_run_dir(folder)
    except (RunDirLocked, OSError):
        return []
    try:
        return remove_stale_tmp(folder)
    finally:
        if not held_before:
            release_run_dir(folder)


def run_logs(run_dir: str) -> list[str]:
    return sorted(p for pattern in RUN_LOGS for p in glob.glob(os.path.join(glob.escape(run_dir), pattern)))


def truncate_jsonl(path: str, keep) -> int:
    """Rewrite `path` (atomically) with only the rows for which keep(row) is true; a torn last line
    (a write cut short by a kill) is dropped. Returns how many rows were dropped."""
    with open(path, "r", encoding="utf-8") as handle:
        lines = [line for line in handle if line.strip()]
    kept = []
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise RunDirError(f"{path}: line {i + 1} is not JSON")
        if keep(row):
            kept.append(line if line.endswith("\n") else line + "\n")
    if len(kept) != len(lines):
        def write(tmp):
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.writelines(kept)
        atomic_write(path, write)
    return len(lines) - len(kept)


def _row_step(row, step_keys):
    """The step a log row belongs to: the first of step_keys holding a number (StyleGAN2-ADA's rows
    hold {num, mean, std} dicts: their mean)."""
    for key in step_keys:
        value = row.get(key)
        if isinstance(value, dict):
            value = value.get("mean")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    return None


def prepare_run_dir(run_dir: str, resume_step: int | float | None = None,
                    step_keys: tuple[str, ...] = ("progress/step", "step"),
                    refuse_existing: bool = True, resume_hint: str | None = None) -> list[str]:
    """Make `run_dir` ready for a run that is about to write there, before it writes anything else.

    The folder is locked for this process (runlock: a second run into it is refused by name, RunDirError).
    Fresh run (resume_step None): refused if the folder already holds a run's logs (stats.jsonl,
    metric-*.jsonl), so two runs never interleave in one file. Resumed run: rows logged after
    `resume_step` (by the run that was killed after its last snapshot) are dropped, so the continued
    run never logs a step twice and loses none. Either way stale temporaries of killed writes are removed
    (the lock says no writer is left that could own them); returns their paths."""
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise RunDirError(f"{run_dir} exists and is not a folder")
    os.makedirs(run_dir, exist_ok=True)
    try:
        lock_run_dir(run_dir)
    except RunDirLocked as error:
        raise RunDirError(str(error)) from None
    existing = run_logs(run_dir)
    if resume_step is None and existing and refuse_existing:
        release_run_dir(run_dir)
        hint = resume_hint or f"--resume {os.path.join(run_dir, 'last.pt')}"
        raise RunDirError(f"{run_dir} already holds a run ({os.path.basename(existing[0])}); resume it with "
                          f"{hint} or choose a new folder")
    removed = remove_stale_tmp(run_dir)
    if resume_step is None:
        return removed

    def keep(row):
        step = _row_step(row, step_keys)
        return step is None or step <= resume_step

    for path in existing:
        truncate_jsonl(path, keep)
    return removed


# ------------------------------------------------------------------------------------------------
# image grids


def images_to_uint8(images) -> np.ndarray:
    """[-1, 1] float images (tensor or array) -> uint8 [N, C, H, W] with x*127.5 + 128, clamped."""
    if isinstance(images, torch.Tensor):
        images = images.detach().to("cpu", torch.float64).numpy()
    images = np.asarray(images, dtype=np.float64)
    return np.clip(np.floor(images * 127.5 + 128.0), 0, 255).astype(np.uint8)


def save_image_grid(images, path: str, grid: tuple[int, int] | None = None) -> None:
    """Tile [N, C, H, W] images in [-1, 1] into a (cols, rows) PNG; empty cells stay black."""
    pixels = images_to_uint8(images)
    if pixels.ndim != 4 or pixels.shape[1] not in (1, 3):
        raise ValueError(f"save_image_grid: images must be [N, 1|3, H, W], got {pixels.shape}")
    count, channels, height, width = pixels.shape
    if grid is None:
        cols = max(1, math.ceil(math.sqrt(count)))
        grid = (cols, max(1, math.ceil(count / cols)))
    cols, rows = int(grid[0]), int(grid[1])
    if cols < 1 or rows < 1 or count > cols * rows:
        raise ValueError(f"save_image_grid: grid {grid} cannot hold {count} images")
    canvas = np.zeros((rows * height, cols * width, channels), dtype=np.uint8)
    for index in range(count):
        row, col = divmod(index, cols)
        canvas[row * height:(row + 1) * height, col * width:(col + 1) * width] = \
            pixels[index].transpose(1, 2, 0)
    from PIL import Image

    image = Image.fromarray(canvas[:, :, 0] if channels == 1 else canvas, "L" if channels == 1 else "RGB")
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


# ------------------------------------------------------------------------------------------------
# progress line


def format_kimg(kimg: float) -> str:
    """kimg with the digits it needs: one decimal when that is exact (12.8), else three (0.016: 16 images, exact
    for any whole image count), so short runs do not print `kimg 0.0` on every tick."""
    tenths = kimg * 10
    return f"{kimg:.1f}" if abs(tenths - round(tenths)) < 1e-6 else f"{kimg:.3f}"


def format_duration(seconds: float) -> str:
    """12s, 1m 02s, 1h 02m 03s, 2d 03h 04m."""
    total = int(round(seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m {total % 60:02d}s"
    if total < 86400:
        return f"{total // 3600}h {(total // 60) % 60:02d}m {total % 60:02d}s"
    return f"{total // 86400}d {(total // 3600) % 24:02d}h {(total // 60) % 60:02d}m"


_peak_rss_bytes = 0


def max_rss_gb() -> float:
    """Peak resident memory of this process in GiB: the larger of the kernel's ru_maxrss (where
    available) and the highest current RSS psutil has reported to this function."""
    global _peak_rss_bytes
    import psutil

    _peak_rss_bytes = max(_peak_rss_bytes, psutil.Process().memory_info().rss)
    try:
        import resource

        # Linux reports ru_maxrss in KiB
        _peak_rss_bytes = max(_peak_rss_bytes, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    except (ImportError, OSError):
        pass
    return _peak_rss_bytes / 2 ** 30


class ProgressLine:
    """Formats the one-line per-tick report and keeps the timing numbers for the stats record:
    `tick 3  kimg 12.8  time 1m 02s  eta 4m 10s  sec/tick 20.1  sec/kimg 1.57  maxrss 1.2 GiB  loss_G=0.12`.
    `start_time` lets a resumed run keep counting from its previous total. With `total` (the run's length in
    the units of tick()'s `done`: kimg by default, or steps / iterations) every line shows the ETA: the work
    left at the mean rate of this process so far (since construction, so a resumed run's rate is its own)."""

    def __init__(self, start_time: float | None = None, elapsed_before: float = 0.0, clock=time.time,
                 total: float | None = None):
        self._clock = clock
        self._start = clock() if start_time is None else start_time
        self._elapsed_before = float(elapsed_before)
        self._last_time = self._clock()
        self._last_kimg = None
        self._rate_start, self._done_start = self._last_time, 0.0
        self.total = total
        self.total_sec = self._elapsed_before
        self.sec_per_tick = 0.0
        self.sec_per_kimg = 0.0
        self.max_rss_gb = 0.0
        self.eta_sec = None

    def tick(self, tick: int, kimg: float, done: float | None = None, **extra) -> str:
        """Update timing for a tick ending at `kimg` (and `done` units of `total`, default kimg) and return the
        formatted line."""
        now = self._clock()
        self.total_sec = self._elapsed_before + (now - self._start)
        self.sec_per_tick = now - self._last_time
        kimg_done = kimg - self._last_kimg if self._last_kimg is not None else kimg
        self.sec_per_kimg = self.sec_per_tick / kimg_done if kimg_done > 0 else 0.0
        self.max_rss_gb = max_rss_gb()
        self._last_time, self._last_kimg = now, kimg
        done = kimg if done is None else done
        if self.total is not None and done > self._done_start:
            self.eta_sec = max(self.total - done, 0.0) * (now - self._rate_start) / (done - self._done_start)
        return self.format(tick, kimg, **extra)

    def start_from(self, kimg: float, done: float | None = None) -> None:
        """Make the next tick measure sec/kimg from `kimg` and the ETA's rate from `done` (default kimg), e.g.
        after resuming."""
        self._last_kimg = kimg
        self._done_start = kimg if done is None else done

    def format(self, tick: int, kimg: float, **extra) -> str:
        parts = [
            f"tick {tick}",
            f"kimg {format_kimg(kimg)}",
            f"time {format_duration(self.total_sec)}",
            *([f"eta {'?' if self.eta_sec is None else format_duration(self.eta_sec)}"] if self.total is not None
              else []),
            f"sec/tick {self.sec_per_tick:.1f}",
            f"sec/kimg {self.sec_per_kimg:.2f}",
            f"maxrss {self.max_rss_gb:.1f} GiB",
        ]
        for key, value in extra.items():
            parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
        return "  ".join(parts)
