"""sparse_core's overhead per training step, measured side by side in one run (SPEC §7).

Three copies of the same small DCGAN-style GAN (32×32) train with: no sparse_core (baseline), Re-GAN inside a
sparse phase (gradient + weight masking around every optimizer step), and RG-GAN (threshold-masked forward,
frozen pruned weights, reset rule, regulariser). Repetitions are interleaved (baseline, Re-GAN, RG-GAN,
baseline, ...) so drift in machine load hits all three alike; medians are reported with their ratios to the
baseline. Goal: ≤ 1.05× on the CPU, ≤ 1.02× on a GPU.

    python bench/overhead.py [--device cpu] [--reps 15] [--steps 5] [--out bench/results/overhead-cpu.md]
"""
from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time

import torch
from torch import nn

import sparse_core as sc


def make_gan(ch: int, z_dim: int, seed: int):
    torch.manual_seed(seed)
    G = nn.Sequential(
        nn.Unflatten(1, (z_dim, 1, 1)),
        nn.ConvTranspose2d(z_dim, ch * 4, 4, 1, 0), nn.BatchNorm2d(ch * 4), nn.ReLU(),
        nn.ConvTranspose2d(ch * 4, ch * 2, 4, 2, 1), nn.BatchNorm2d(ch * 2), nn.ReLU(),
        nn.ConvTranspose2d(ch * 2, ch, 4, 2, 1), nn.BatchNorm2d(ch), nn.ReLU(),
        nn.ConvTranspose2d(ch, 3, 4, 2, 1), nn.Tanh())
    D = nn.Sequential(
        nn.Conv2d(3, ch, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(ch, ch * 2, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(ch * 2, ch * 4, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(ch * 4 * 16, 1))
    return G, D


class Runner:
    """One GAN + optimizers (+ controller) and its hinge-loss training step."""

    def __init__(self, mode: str, args, device):
        self.mode = mode
        self.G, self.D = (m.to(device) for m in make_gan(args.ch, args.z_dim, seed=0))
        self.ctrl = None
        if mode == "regan":
            self.ctrl = sc.prepare(sc.ReGANConfig(sparsity=0.3, interval=10 ** 9, warmup=0, target="both"),
                                   G=self.G, D=self.D)
        elif mode == "rggan":
            self.ctrl = sc.prepare(sc.RGGANConfig(), G=self.G, D=self.D)
        self.opt_G = torch.optim.Adam(self.G.parameters(), 2e-4, betas=(0.0, 0.9))
        self.opt_D = torch.optim.Adam(self.D.parameters(), 2e-4, betas=(0.0, 0.9))
        if self.ctrl:
            self.ctrl.bind(opt_G=self.opt_G, opt_D=self.opt_D)
        self.batch, self.z_dim, self.device = args.batch, args.z_dim, device
        self.real = torch.rand(args.batch, 3, 32, 32, device=device) * 2 - 1

    def _reg(self, net):
        return self.ctrl.regularizer(net) if self.ctrl else 0.0

    def _step(self, net, opt):
        if self.ctrl:
            self.ctrl.optimizer_step(net, opt)
        else:
            opt.step()

    def step(self):
        z = torch.randn(self.batch, self.z_dim, device=self.device)
        loss_D = (torch.relu(1 - self.D(self.real)).mean() + torch.relu(1 + self.D(self.G(z).detach())).mean()
                  + self._reg("D"))
        self.opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        self._step("D", self.opt_D)
        loss_G = -self.D(self.G(z)).mean() + self._reg("G")
        self.opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        self._step("G", self.opt_G)
        if self.ctrl:
            self.ctrl.advance(self.batch)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--steps", type=int, default=5, help="training steps per timed repetition")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--ch", type=int, default=64)
    ap.add_argument("--z-dim", dest="z_dim", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: leave torch's default)")
    ap.add_argument("--out", default=None, help="markdown file to write the result to")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    modes = ["baseline", "regan", "rggan"]
    runners = {m: Runner(m, args, device) for m in modes}
    for r in runners.values():            # warm-up: allocator, kernels, first-call costs
        for _ in range(3):
            r.step()
    times = {m: [] for m in modes}
    for rep in range(args.reps):
        for m in modes:
            sync(device)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                runners[m].step()
            sync(device)
            times[m].append((time.perf_counter() - t0) / args.steps)
        print(f"rep {rep + 1}/{args.reps}: " + "  ".join(f"{m} {times[m][-1] * 1e3:.1f} ms" for m in modes), flush=True)
    med = {m: statistics.median(v) for m, v in times.items()}
    rows = [f"| {m} | {med[m] * 1e3:.2f} | {min(times[m]) * 1e3:.2f} | {med[m] / med['baseline']:.3f}× |" for m in modes]
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    report = "\n".join([
        f"# sparse_core overhead per training step ({device.type})",
        "",
        f"- command: `python bench/overhead.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        f"- device: {dev_name}; torch {torch.__version__}; threads {torch.get_num_threads()}; "
        f"date {datetime.date.today().isoformat()}",
        f"- model: DCGAN-style G/D 32×32, ch {args.ch}, batch {args.batch}; {args.reps} interleaved repetitions "
        f"of {args.steps} steps; Re-GAN in a sparse phase (ρ 0.3, G and D), RG-GAN (G and D)",
        "",
        "| mode | median ms/step | min ms/step | ratio to baseline (median) |",
        "|---|---|---|---|",
        *rows,
        "",
    ])
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
    return med


if __name__ == "__main__":
    main()
