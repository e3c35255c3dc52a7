"""`python -m sparse_core.ops.build [--cuda] [--no-cpu] [--check]`: build the native extension ahead of time and
print which ops run natively (the self-check's verdicts). The build logic lives in sparse_core.ops.loader; this
package is the command (a package's __main__ avoids runpy's double-import warning for a module of an imported
package), kept out of loader so that loader never imports the ops package that imports it.
"""
from __future__ import annotations

import argparse
import sys

import torch

from ... import ops
from ..loader import OPS, ExtensionBuildError, ExtensionLoadError, build, load

__all__ = ["main"]


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
    parser.add_argument("--no-cpu", action="store_true",
                        help="skip the CPU extension (a GPU machine's runs use only the CUDA one)")
    parser.add_argument("--verbose", action="store_true", help="show the compiler commands")
    parser.add_argument("--check", action="store_true",
                        help="then run the numeric self-check of every op family on every device that built, per "
                             "dtype and under autocast / TF32, and print the verdicts (exit 1 if any fails)")
    args = parser.parse_args(argv)

    status: dict[str, str] = {}
    exit_code = 0
    kinds = ([] if args.no_cpu else ["cpu"]) + (["cuda"] if args.cuda or torch.cuda.is_available() else [])
    if not kinds:
        parser.error("--no-cpu without a GPU (or --cuda) leaves nothing to build")
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
    if "cpu" not in status:
        status["cpu"] = "not built (--no-cpu)"
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
    if args.check:
        exit_code = max(exit_code, _print_verdicts(status))
    return exit_code


def _precision_settings(device_type: str):
    """(label, context manager factory) per precision setting the self-check verdicts are given for."""
    import contextlib

    @contextlib.contextmanager
    def matmul(precision, tf32):
        old = torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32
        torch.set_float32_matmul_precision(precision)
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(old[0])
            torch.backends.cuda.matmul.allow_tf32 = old[1]

    settings = [("plain", contextlib.nullcontext),
                ("autocast bf16", lambda: torch.autocast(device_type, dtype=torch.bfloat16))]
    if device_type == "cuda":
        settings += [("autocast fp16", lambda: torch.autocast(device_type, dtype=torch.float16)),
                     ("TF32", lambda: matmul("high", True))]
    return settings


def _print_verdicts(status: dict[str, str]) -> int:
    """The self-check's verdict per (device, dtype, precision setting, op family): which ops run natively."""
    rows, failed = [("device", "dtype", "setting", "family", "verdict")], 0
    for kind in ("cpu", "cuda"):
        if status.get(kind) != "native" or (kind == "cuda" and not torch.cuda.is_available()):
            continue
        ext, device = load(kind), torch.device(kind)
        for dtype in ops.NATIVE_DTYPES[kind]:
            for label, setting in _precision_settings(kind):
                if label != "plain" and dtype != torch.float32:
                    continue  # autocast and TF32 change what float32 work does; other dtypes are the plain case
                with setting():
                    tol = ops.self_check_tolerance(kind, dtype)
                    for family in ops.FAMILIES:
                        problem = ops.self_check(ext, device, families=(family,), dtype=dtype)
                        failed |= bool(problem)
                        verdict = f"native (tolerance {tol:g})" if not problem else f"REFERENCE: {problem}"
                        rows.append((str(device), str(dtype).replace("torch.", ""), label, family, verdict))
    if len(rows) == 1:
        print("self-check: no native extension loaded on any device")
        return 1
    print(_table(rows))
    return int(failed)
