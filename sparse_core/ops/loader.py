"""Builds and loads the native extension on first use, cached by a hash of its sources.

The sources live in the checkout's top-level `cuda/` folder; an installed package carries them as
`sparse_core/ops/csrc/` (setup.py maps the folder in at build time), so both a checkout on the import path and
a wheel build from their own copy.

Two extensions exist: the CPU one (C++ only, always attempted) and the CUDA one (C++ binding +
.cu kernels, attempted only when a GPU is present, or on request with `--cuda` for CI). Each is
a shared library that registers torch operators under a namespace derived from the hash, so a
rebuilt extension can never clash with an older one already loaded in the process.

Environment:
  SPARSE_CORE_OPS      ref | ext | auto (default auto): force the reference, force the extension
                       (a failed build is then an error), or use the extension where it built.
  SPARSE_CORE_EXT_DIR  cache root for build outputs (default ~/.cache/sparse-core).
  SPARSE_CORE_EXT_SRC  directory with the extension sources (default: csrc/ next to this file in an installed
                       package, else the checkout's cuda/ folder).

Several processes (DDP ranks) may start together on an empty cache: the build of one hash runs under a file
lock, into a private folder that is renamed into place only when complete, so no process ever loads (or deletes)
another's half-built output.

Command line: `python -m sparse_core.ops.build [--cuda]` (main() here) builds ahead of time and
prints which ops are native on which device.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

MODE_ENV = "SPARSE_CORE_OPS"
CACHE_ENV = "SPARSE_CORE_EXT_DIR"
SOURCE_ENV = "SPARSE_CORE_EXT_SRC"
MODES = ("ref", "ext", "auto")

# Sources per extension kind; headers are hashed too (they change the binary).
SOURCES = {
    "cpu": ["sparse_ops_cpu.cpp"],
    "cuda": ["sparse_ops_cuda.cpp", "sparse_ops_cuda_kernels.cu"],
}
HEADERS = {
    "cpu": ["sparse_ops_common.h", "sparse_ops_checks.h"],
    "cuda": ["sparse_ops_common.h", "sparse_ops_checks.h", "sparse_ops_cuda.h"],
}
DEFAULT_CUDA_ARCHS = "8.0;9.0"  # A100 and H100/H200, the GPUs the benchmarks target
CXX_FLAGS = ["-O3", "-fopenmp"]
# No --use_fast_math: it flushes subnormals to zero, and the keep test |w| - t > 0 must be exact (a weight with
# |w| < 1.2e-38 survives t = 0 in the reference). The kernels are memory-bound: fast math would buy nothing.
CUDA_FLAGS = ["-O3"]
OPS = ("threshold_forward", "threshold_forward_reset", "threshold_backward", "modconv_weights")


class ExtensionBuildError(RuntimeError):
    """The native extension could not be built or loaded."""


class ExtensionLoadError(ExtensionBuildError):
    """It compiled and linked, but the shared library cannot be loaded in this process."""


@dataclass(frozen=True)
class NativeOps:
    """A loaded extension: `ops` is the torch.ops namespace holding its operators."""

    kind: str
    namespace: str
    library_path: str
    ops: object


def ops_mode() -> str:
    """The forced path from SPARSE_CORE_OPS, read on every call so tests and users can flip it."""
    mode = os.environ.get(MODE_ENV, "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"{MODE_ENV}={os.environ.get(MODE_ENV)!r} is invalid; use one of {', '.join(MODES)}")
    return mode


def source_dir() -> Path:
    override = os.environ.get(SOURCE_ENV)
    if override:
        return Path(override)
    here = Path(__file__).resolve().parent
    installed = here / "csrc"            # a wheel / regular install: setup.py maps cuda/ here
    if (installed / SOURCES["cpu"][0]).is_file():
        return installed
    return here.parents[1] / "cuda"      # a checkout (on PYTHONPATH or installed editable)


def cache_root() -> Path:
    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else Path.home() / ".cache" / "sparse-core"


def _cuda_arch_list() -> str:
    return os.environ.get("TORCH_CUDA_ARCH_LIST") or DEFAULT_CUDA_ARCHS


def _source_paths(kind: str, src: Path) -> tuple[list[Path], list[Path]]:
    sources = [src / name for name in SOURCES[kind]]
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise ExtensionBuildError(f"native extension sources not found: {', '.join(missing)}")
    headers = [src / name for name in HEADERS[kind] if (src / name).is_file()]
    return sources, headers


def build_hash(kind: str, src: Path | None = None) -> str:
    """Hash of everything that changes the binary: sources, headers, flags, torch version, archs."""
    src = source_dir() if src is None else src
    sources, headers = _source_paths(kind, src)
    digest = hashlib.sha256()
    for path in sources + headers:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update(torch.__version__.encode())
    digest.update(" ".join(CXX_FLAGS + CUDA_FLAGS).encode())
    if kind == "cuda":
        digest.update(_cuda_arch_list().encode())
        digest.update(str(torch.version.cuda).encode())
    return f"{kind}-{digest.hexdigest()[:16]}"


def _cuda_home() -> str | None:
    """The CUDA toolkit root: $CUDA_HOME/$CUDA_PATH, else /usr/local/cuda, else derived from nvcc on PATH.

    torch's own guess, dirname(dirname(which nvcc)), is wrong when nvcc on PATH is a wrapper
    script such as /usr/local/bin/nvcc.
    """
    explicit = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if explicit:
        return explicit
    candidates = [Path("/usr/local/cuda")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(Path(nvcc).resolve().parent.parent)
    for root in candidates:
        if (root / "bin" / "nvcc").exists() and (root / "include" / "cuda_runtime.h").exists():
            return str(root)
    return None


def _import_cpp_extension():
    """torch.utils.cpp_extension, imported lazily (slow, only needed to build).

    Its import logs "No CUDA runtime is found" on every CPU-only machine; that says nothing
    useful for the CPU build, so the log level is raised for the duration of the import.
    """
    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
    finally:
        log.setLevel(level)
    return cpp_extension


def _compile(kwargs: dict) -> None:
    """Compile and link one extension (torch's cpp_extension + ninja); loads it into this process too."""
    _import_cpp_extension().load(**kwargs)


def _load_library(path: Path) -> None:
    torch.ops.load_library(str(path))


class _BuildLock:
    """An exclusive advisory lock on `path` (fcntl; released when the holder exits, even if it crashes)."""

    def __init__(self, path: Path):
        self.path = path
        self.handle = None

    def __enter__(self):
        import fcntl

        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"[sparse_core] waiting for another process building {self.path.stem}...", file=sys.stderr,
                  flush=True)
            fcntl.flock(self.handle, fcntl.LOCK_EX)
        except OSError as exc:  # a file system without flock (some network mounts): build unlocked, say so
            warnings.warn(f"sparse_core: cannot lock {self.path} ({exc}); building without the lock (set {CACHE_ENV} "
                          "to a local folder if several processes start together)", RuntimeWarning, stacklevel=3)
        return self

    def __exit__(self, *exc):
        import fcntl

        try:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
        except OSError:
            pass
        self.handle.close()
        return False


def build(kind: str, verbose: bool = False) -> NativeOps:
    """Compile (or reuse the cached build of) one extension kind and load it. Raises ExtensionBuildError.

    The output of hash H lives in `ext-H/` and appears there only complete: the compile runs in a private
    `ext-H.partial-<pid>/` under the lock `ext-H.lock`, then that folder is renamed to `ext-H/`. A process that
    waited on the lock finds the finished build and only loads it.
    """
    if kind not in SOURCES:
        raise ValueError(f"unknown extension kind {kind!r}; expected one of {sorted(SOURCES)}")
    cuda_home = None
    if kind == "cuda":
        cuda_home = _cuda_home()
        if cuda_home is None or not (Path(cuda_home) / "bin" / "nvcc").exists():
            raise ExtensionBuildError("building the cuda extension needs nvcc: put it on PATH or set CUDA_HOME")
    src = source_dir()
    tag = build_hash(kind, src)
    namespace = "sparse_core_" + tag.replace("-", "_")
    root = cache_root()
    final_dir = root / f"ext-{tag}"
    library = final_dir / f"{namespace}.so"
    sources, headers = _source_paths(kind, src)
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = _BuildLock(root / f"ext-{tag}.lock")
        lock.__enter__()
    except OSError as exc:
        raise ExtensionBuildError(f"cannot prepare the build directory {final_dir} (set {CACHE_ENV}): {exc}") from exc
    try:
        if not library.is_file():
            _build_into(kind, final_dir, namespace, sources, headers, src, cuda_home, verbose)
        try:
            _load_library(library)
        except OSError as exc:  # compiled and linked, but the shared library would not load here
            raise ExtensionLoadError(f"the {kind} extension built in {final_dir} but could not be loaded: "
                                     f"{exc}") from exc
    finally:
        lock.__exit__(None, None, None)
    return NativeOps(kind, namespace, str(library), getattr(torch.ops, namespace))


def _build_into(kind, final_dir: Path, namespace: str, sources, headers, src: Path, cuda_home, verbose) -> None:
    """Compile in a private folder, then rename it to `final_dir` (called with the build lock held)."""
    partial = final_dir.with_name(f"{final_dir.name}.partial-{os.getpid()}")
    for stale in final_dir.parent.glob(f"{final_dir.name}.partial-*"):  # left by a builder that died (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    shutil.rmtree(final_dir, ignore_errors=True)  # an old layout or a library deleted by hand: start clean
    # Compile a snapshot of the sources: edits made during a build cannot leak in.
    snapshot = partial / "src"
    try:
        snapshot.mkdir(parents=True)
        for path in sources + headers:
            shutil.copyfile(path, snapshot / path.name)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise ExtensionBuildError(f"cannot prepare the build directory {final_dir} (set {CACHE_ENV}): {exc}") from exc
    print(f"[sparse_core] building the {kind} extension in {final_dir} (first use; about a minute)...",
          file=sys.stderr, flush=True)
    started = time.time()
    kwargs = dict(
        name=namespace,
        sources=[str(snapshot / p.name) for p in sources],
        extra_include_paths=[str(snapshot)],
        extra_cflags=CXX_FLAGS + [f"-DSPARSE_CORE_NS={namespace}"],
        extra_ldflags=["-fopenmp"],
        build_directory=str(partial),
        is_python_module=False,
        verbose=verbose,
    )
    if kind == "cuda":
        _import_cpp_extension().CUDA_HOME = cuda_home  # read by torch's loader when it writes the nvcc rules
        kwargs.update(with_cuda=True, extra_cuda_cflags=CUDA_FLAGS + [f"-DSPARSE_CORE_NS={namespace}"])
    previous_archs = os.environ.get("TORCH_CUDA_ARCH_LIST")
    os.environ["TORCH_CUDA_ARCH_LIST"] = _cuda_arch_list()
    try:
        _compile(kwargs)
    except OSError:
        pass  # compiled and linked, but not loadable in this process: the caller's load says so
    except Exception as exc:  # compiler / linker failure: leave no half-built directory behind
        shutil.rmtree(partial, ignore_errors=True)
        raise ExtensionBuildError(f"building the {kind} extension from {src} failed:\n{exc}") from exc
    finally:
        if previous_archs is None:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
        else:
            os.environ["TORCH_CUDA_ARCH_LIST"] = previous_archs
    if not (partial / f"{namespace}.so").is_file():
        shutil.rmtree(partial, ignore_errors=True)
        raise ExtensionBuildError(f"building the {kind} extension from {src} produced no {namespace}.so")
    os.replace(partial, final_dir)
    print(f"[sparse_core] {kind} extension ready after {time.time() - started:.0f} s", file=sys.stderr, flush=True)


# Per-process state: the loaded extension or the build error, per kind; and which failures were warned.
_loaded: dict[str, NativeOps | ExtensionBuildError] = {}
_warned: set[str] = set()


def reset() -> None:
    """Forget loaded/failed extensions (tests use this after changing the environment)."""
    _loaded.clear()
    _warned.clear()


_faked: set[str] = set()  # namespaces whose fake kernels are registered (once per process)


def register_fakes(ext: NativeOps) -> None:
    """Fake (meta) kernels of the extension's operators: output shapes and dtypes without running anything,
    which is what torch.compile (FakeTensor tracing), the meta device and FLOP counters need."""
    if ext.namespace in _faked:
        return
    ns = ext.namespace

    def threshold_forward(w, t, channel_dim):
        return torch.empty_like(w, memory_format=torch.contiguous_format)

    def threshold_forward_reset(w, t, channel_dim, reset_density):
        return torch.empty_like(w, memory_format=torch.contiguous_format), torch.empty_like(t)

    def threshold_backward(grad, w, t, channel_dim, compute_t_grad):
        return torch.empty_like(w, memory_format=torch.contiguous_format), torch.empty_like(t)

    def modconv_weights(w, mask, styles, demodulate, fused, eps):
        batch, (c_out, c_in, kh, kw) = styles.shape[0], w.shape
        if fused:
            out = w.new_empty((batch, c_out, c_in, kh, kw))
        else:
            out = w.new_empty(w.shape if mask is not None else (0,))
        return out, w.new_empty((batch, c_out))

    for name, fn in (("threshold_forward", threshold_forward), ("threshold_forward_reset", threshold_forward_reset),
                     ("threshold_backward", threshold_backward), ("modconv_weights", modconv_weights)):
        torch.library.register_fake(f"{ns}::{name}", fn)
    _faked.add(ns)


def load(kind: str) -> NativeOps:
    """The extension of this kind, building it on first use; raises ExtensionBuildError on failure."""
    state = _loaded.get(kind)
    if state is None:
        try:
            state = build(kind)
            register_fakes(state)
        except ExtensionBuildError as exc:
            state = exc
        _loaded[kind] = state
    if isinstance(state, ExtensionBuildError):
        raise state
    return state


def try_load(kind: str) -> NativeOps | None:
    """Like load(), but a failure warns once per kind and returns None (callers use the reference)."""
    try:
        return load(kind)
    except ExtensionBuildError as exc:
        if kind not in _warned:
            _warned.add(kind)
            first_lines = "\n".join(str(exc).splitlines()[:6])
            warnings.warn(f"sparse_core: native {kind} extension unavailable, using the PyTorch reference ops. "
                          f"Set {MODE_ENV}=ext to make this an error.\n{first_lines}", RuntimeWarning, stacklevel=3)
        return None
