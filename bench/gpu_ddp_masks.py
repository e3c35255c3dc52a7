"""Two NCCL processes, Re-GAN on G and D: after pruning, every rank must hold the same masks (run by
bench/gpu_check.sh on machines with two or more GPUs; a file, so that spawned workers can import it).

    python bench/gpu_ddp_masks.py WORK_DIR                 # NCCL, one rank per GPU
    python bench/gpu_ddp_masks.py WORK_DIR --device cpu    # gloo on the CPU (a smoke test of the same steps)
"""
import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import sparse_core as sc  # noqa: E402


def run(rank: int, work: str, device_type: str) -> None:
    if device_type == "cuda":
        torch.cuda.set_device(rank)
    device = torch.device(device_type, rank) if device_type == "cuda" else torch.device("cpu")
    backend = "nccl" if device_type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=f"file://{work}/.ddp-rendezvous", rank=rank, world_size=2)
    torch.manual_seed(rank)   # different weights per rank: only the controller's broadcast makes masks agree
    G = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 16)).to(device)
    D = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1)).to(device)
    ctrl = sc.prepare(sc.ReGANConfig(sparsity=0.3, interval=2, warmup=1, target="both"), G=G, D=D)
    G, D = nn.parallel.DistributedDataParallel(G), nn.parallel.DistributedDataParallel(D)
    opt = torch.optim.Adam(list(G.parameters()) + list(D.parameters()), 1e-3)
    for _ in range(2):   # a warm-up iteration, then one in the sparse phase
        loss = D(G(torch.randn(8, 16, device=device))).mean()
        opt.zero_grad()
        loss.backward()
        ctrl.before_step("G")
        ctrl.before_step("D")
        opt.step()
        ctrl.after_step("G")
        ctrl.after_step("D")
        ctrl.advance(8)
    masks = torch.cat([b.flatten().float() for n, b in list(G.named_buffers()) + list(D.named_buffers())
                       if "mask" in n])
    gathered = [torch.empty_like(masks) for _ in range(2)]
    dist.all_gather(gathered, masks)
    assert masks.numel() > 0, "no mask buffers found"
    assert torch.equal(gathered[0], gathered[1]), "ranks hold different masks"
    assert masks.mean() < 1, "nothing was pruned"
    if rank == 0:
        print(f"DDP ({backend}, 2 ranks): {masks.numel()} mask entries identical on every rank, "
              f"density {float(masks.mean()):.3f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    argv = sys.argv[1:]
    device_type = "cuda"
    if argv[-2:] == ["--device", "cpu"]:
        device_type, argv = "cpu", argv[:-2]
    if len(argv) != 1 or not os.path.isdir(argv[0]):
        print("usage: python bench/gpu_ddp_masks.py WORK_DIR [--device cpu]  (WORK_DIR: an existing folder)",
              file=sys.stderr)
        sys.exit(2)
    if device_type == "cuda" and torch.cuda.device_count() < 2:
        print("gpu_ddp_masks: needs two CUDA GPUs (or --device cpu)", file=sys.stderr)
        sys.exit(2)
    mp.spawn(run, args=(os.path.abspath(argv[0]), device_type), nprocs=2)
