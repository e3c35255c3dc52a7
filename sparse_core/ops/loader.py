"""Builds and loads the native extension (sparse_core/ops/csrc/) on first use, cached by a hash of its sources.

Two extensions exist: the CPU one (C++ only, always attempted) and the CUDA one (C++ binding +
.cu kernels, attempted only when a GPU is present, or on request with `--cuda` for CI). Each is
a shared library that registers torch operators under a namespace derived from the hash, so a
rebuilt extension can never clash with an older one already loaded in the process.

Environment:
  SPARSE_CORE_OPS      ref | ext | auto (default auto): force the reference, force the extension
                       (a failed build is then an error), or use the extension where it built.
  SPARSE_CORE_EXT_DIR  cache root for build outputs (default ~/.cache/sparse-core).
  SPARSE_CORE_EXT_SRC  directory with the extension sources (default: csrc/ next to this file, which
                       ships inside the package, so a non-editable install builds from its own copy).

Command line: `python -m sparse_core.ops.build [--cuda]` (main() here) builds ahead of time and
prints which ops are native on which device.
"""
from __future__ import annotations

import argparse
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
CUDA_FLAGS = ["-O3", "--use_fast_math"]
OPS = ("threshold_forward", "threshold_backward", "modconv_weights")


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
    return Path(__file__).resolve().parent / "csrc"


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


def build(kind: str, verbose: bool = False) -> NativeOps:
    """Compile (or reuse the cached build of) one extension kind and load it. Raises ExtensionBuildError."""
    if kind not in SOURCES:
        raise ValueError(f"unknown extension kind {kind!r}; expected one of {sorted(SOURCES)}")
    cpp_extension = _import_cpp_extension()

    cuda_home = None
    if kind == "cuda":
        cuda_home = _cuda_home()
        if cuda_home is None or not (Path(cuda_home) / "bin" / "nvcc").exists():
            raise ExtensionBuildError("building the cuda extension needs nvcc: set CUDA_HOME (e.g. /usr/local/cuda)")
    src = source_dir()
    tag = build_hash(kind, src)
    namespace = "sparse_core_" + tag.replace("-", "_")
    build_dir = cache_root() / f"ext-{tag}"
    sources, headers = _source_paths(kind, src)
    fresh = not any(build_dir.glob("*.so"))
    # Compile a snapshot of the sources kept inside the hash-keyed directory: identical sources found
    # elsewhere (a copy, another checkout) then give identical build commands, so torch's loader
    # reuses the binary instead of rebuilding it, and edits made during a build cannot leak in.
    snapshot = build_dir / "src"
    try:
        snapshot.mkdir(parents=True, exist_ok=True)
        for path in sources + headers:
            target = snapshot / path.name
            if not target.exists() or target.read_bytes() != path.read_bytes():
                shutil.copyfile(path, target)
    except OSError as exc:
        raise ExtensionBuildError(f"cannot prepare the build directory {build_dir} (set {CACHE_ENV}): {exc}") from exc
    sources = [snapshot / p.name for p in sources]
    if fresh:
        print(f"[sparse_core] building the {kind} extension in {build_dir} (first use; about a minute)...",
              file=sys.stderr, flush=True)
    started = time.time()
    kwargs = dict(
        name=namespace,
        sources=[str(p) for p in sources],
        extra_include_paths=[str(snapshot)],
        extra_cflags=CXX_FLAGS + [f"-DSPARSE_CORE_NS={namespace}"],
        extra_ldflags=["-fopenmp"],
        build_directory=str(build_dir),
        is_python_module=False,
        verbose=verbose,
    )
    if kind == "cuda":
        cpp_extension.CUDA_HOME = cuda_home  # read by torch's loader when it writes the nvcc build rules
        kwargs.update(with_cuda=True, extra_cuda_cflags=CUDA_FLAGS + [f"-DSPARSE_CORE_NS={namespace}"])
    previous_archs = os.environ.get("TORCH_CUDA_ARCH_LIST")
    os.environ["TORCH_CUDA_ARCH_LIST"] = _cuda_arch_list()
    try:
        path = cpp_extension.load(**kwargs)
    except OSError as exc:  # compiled and linked, but the shared library would not load here
        raise ExtensionLoadError(f"the {kind} extension built in {build_dir} but could not be loaded: {exc}") from exc
    except Exception as exc:  # compiler / linker failure: leave no half-built directory behind
        shutil.rmtree(build_dir, ignore_errors=True)
        raise ExtensionBuildError(f"building the {kind} extension from {src} failed:\n{exc}") from exc
    finally:
        if previous_archs is None:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
        else:
            os.environ["TORCH_CUDA_ARCH_LIST"] = previous_archs
    if fresh:
        print(f"[sparse_core] {kind} extension ready after {time.time() - started:.0f} s", file=sys.stderr, flush=True)
    library_path = path if isinstance(path, str) else str(build_dir / f"{namespace}.so")
    return NativeOps(kind, namespace, library_path, getattr(torch.ops, namespace))


# Per-process state: the loaded extension or the build error, per kind; and which failures were warned.
_loaded: dict[str, NativeOps | ExtensionBuildError] = {}
_warned: set[str] = set()


def reset() -> None:
    """Forget loaded/failed extensions (tests use this after changing the environment)."""
    _loaded.clear()
    _warned.clear()


def load(kind: str) -> NativeOps:
    """The extension of this kind, building it on first use; raises ExtensionBuildError on failure."""
    state = _loaded.get(kind)
    if state is None:
        try:
            state = build(kind)
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


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sparse_core.ops.build",
                                     description="Build the sparse_core native extension ahead of time.")
    parser.add_argument("--cuda", action="store_true",
                        help="also compile and link the CUDA sources, even without a GPU (CI); fails loudly on errors")
    parser.add_argument("--verbose", action="store_true", help="show the compiler commands")
    args = parser.parse_args(argv)

    status: dict[str, str] = {}
    exit_code = 0
    kinds = ["cpu"] + (["cuda"] if args.cuda or torch.cuda.is_available() else [])
    for kind in kinds:
        try:
            ext = build(kind, verbose=args.verbose)
            status[kind] = "native"
            print(f"{kind}: built {ext.library_path}")
        except ExtensionBuildError as exc:
            message = str(exc)
            if kind == "cuda" and isinstance(exc, ExtensionLoadError) and not torch.cuda.is_available():
                status[kind] = "compiled+linked (not loadable here)"
                print(f"{kind}: {message}")
            else:
                status[kind] = "reference (build failed)"
                print(message, file=sys.stderr)
                exit_code = 1
    if "cuda" not in status:
        status["cuda"] = "reference (no GPU; not built)"
    elif status["cuda"] == "native" and not torch.cuda.is_available():
        status["cuda"] = "compiled+linked (no GPU to run it)"
    dtypes = {"cpu": "fp32, fp64", "cuda": "fp16, bf16, fp32, fp64"}
    rows = [("op", "cpu", "cuda")]
    for op in OPS:
        rows.append((op, status["cpu"], status["cuda"]))
    rows.append(("dtypes", dtypes["cpu"], dtypes["cuda"]))
    print(_table(rows))
    return exit_code
