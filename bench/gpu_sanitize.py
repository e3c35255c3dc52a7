"""A small workload for compute-sanitizer (run by bench/gpu_check.sh): every native CUDA kernel once, forward and
backward, at odd sizes that exercise the tails of the grid-stride loops and warp reductions.

    compute-sanitizer --tool memcheck  python bench/gpu_sanitize.py all
    compute-sanitizer --tool racecheck python bench/gpu_sanitize.py modconv-weights
    python bench/gpu_sanitize.py all --device cpu     # the same workload on the CPU build (a smoke test)

Run it with PYTORCH_NO_CUDA_MEMORY_CACHING=1, or out-of-bounds accesses inside PyTorch's cached blocks go unseen.
Exits 1 if a kernel did not serve its call (a sanitizer run over the reference would prove nothing).
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import sparse_core.ops as ops  # noqa: E402


def dtypes(device, *wanted):
    """The wanted dtypes that have native kernels on this device (the CPU build: fp32 / fp64 only)."""
    return [d for d in wanted if d in ops.NATIVE_DTYPES[device.type]]


def threshold(device) -> None:
    for dtype in dtypes(device, torch.float32, torch.bfloat16):
        for shape, dim in (((37, 19, 3, 3), 0), ((19, 37, 3, 3), 1), ((33, 65), 0)):
            w = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
            t = torch.full((shape[dim],), 0.3, device=device, requires_grad=True)
            out = ops.threshold_masked_weight(w, t, dim, reset_density=0.01)
            out.square().sum().backward()
            t.data.fill_(50.0)   # the collapsing branch of the reset kernel
            ops.threshold_masked_weight(w, t, dim, reset_density=0.01).sum().backward()


def modconv(device) -> None:
    for dtype in dtypes(device, torch.float32, torch.float16):
        w = torch.randn(33, 47, 3, 3, device=device, dtype=dtype, requires_grad=True)
        styles = (torch.rand(5, 47, device=device, dtype=dtype) + 0.5).requires_grad_()
        mask = (torch.rand(w.shape, device=device) > 0.3).to(dtype)
        x = torch.randn(5, 47, 6, 6, device=device, dtype=dtype)
        for fused in (False, True):
            ops.modulated_conv2d(x, w, styles, mask, padding=1, fused=fused).float().square().sum().backward()
            per_sample, dcoefs = ops.modulation(w, styles, fused=fused)
            (per_sample if fused else dcoefs).float().sum().backward()


def modconv_weights(device) -> None:
    """The modulated-conv weight kernel alone, forward, no convolution: racecheck then instruments little besides
    this kernel (cuDNN's convolutions use shared memory too, and are not ours to check)."""
    from sparse_core.ops import loader, native

    ext = loader.load(device.type)
    with torch.no_grad():
        for dtype in dtypes(device, torch.float32, torch.float16):
            w = torch.randn(33, 47, 3, 3, device=device, dtype=dtype)
            styles = torch.rand(5, 47, device=device, dtype=dtype) + 0.5
            mask = (torch.rand(w.shape, device=device) > 0.3).to(dtype)
            native.ModconvWeights.apply(ext, w, mask, styles, 1e-8)
            native.ModconvDemod.apply(ext, w, styles, 1e-8)
            for demodulate in (True, False):
                native.ModconvFusedWeights.apply(ext, w, mask, styles, demodulate, 1e-8)
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> int:
    args = sys.argv[1:]
    device = torch.device("cuda")
    if args[-2:-1] == ["--device"]:
        device, args = torch.device(args[-1]), args[:-2]
    which = args[0] if args else "all"
    workloads = ("all", "threshold", "modconv", "modconv-weights")
    if len(args) > 1 or which not in workloads or device.type not in ops.NATIVE_DTYPES:
        print(f"usage: python bench/gpu_sanitize.py [{'|'.join(workloads)}] [--device cuda|cpu]", file=sys.stderr)
        return 2
    before = ops.backend_counts()
    if which in ("all", "threshold"):
        threshold(device)
    if which in ("all", "modconv"):
        modconv(device)
    if which == "modconv-weights":
        modconv_weights(device)   # the kernels called directly (loader.load raises if they are not built)
        print("modulated-conv weight kernels: called directly")
        return 0
    if device.type == "cuda":
        torch.cuda.synchronize()
    shares = ops.native_shares(before)
    print(f"native share per op family under the sanitizer: {shares}")
    return 0 if shares and all(v == 1.0 for v in shares.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
