"""sparse_core's overhead per training step, measured side by side in one run (SPEC §7).

`--model sngan` (the default) times the real SNGAN step: the vendor's own networks and losses (vendor/sngan,
CLI defaults: ch 256, n_dis 5, G batch 2× the D batch, Adam (0, 0.9), LambdaLR) run as its train.py runs them,
unmodified (baseline) next to its patched twin, which makes exactly the calls patches/sngan.patch adds
(controller_from_flags with the CLI defaults, bind, measure_flops with run-time FLOP counting, observe_real,
regularizer, optimizer_step, advance). `--model toy` keeps the small DCGAN-style GAN used before.

Copies of the same GAN train with: no sparse_core (baseline), Re-GAN inside a sparse phase (gradient + weight
masking around every optimizer step), RG-GAN (threshold-masked forward, frozen pruned weights, reset rule,
regulariser), and any other registered method named in `--methods` (each at its CLI defaults; the dynamic-
sparse-training methods' mask updates, every ΔT iterations, are timed apart and amortised over ΔT; ADAPT's
balance ratio, measured every 10th iteration, runs inside the timed steps: time it with `--steps` a multiple of
10, so that every repetition holds the same number of measurements). Repetitions
are interleaved (baseline, Re-GAN, RG-GAN, baseline, ...) so drift in machine load hits all alike; medians are
reported with their ratios to the baseline. Goal: ≤ 1.05× on the CPU, ≤ 1.02× on a GPU.

    python bench/overhead.py [--model sngan|toy] [--device cpu] [--reps 15] [--steps 5] [--batch 4] [--out FILE]
                             [--methods regan,rggan,static,set,rigl]
    python bench/overhead.py --reset-parts [--device cpu] [--reps 15]

`--reset-parts` times RG-GAN's per-forward weight work alone, over the vendor SNGAN generator's weights at the CLI
defaults: the reset rule as separate reference ops followed by the threshold op (before issue 20) against the
reset fused into the native threshold pass (`reset_density=`), interleaved, in CPU time (or wall time on a GPU).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from types import SimpleNamespace

import torch
from torch import nn

import sparse_core as sc
import sparse_core.ops as ops


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


RUN_LENGTH = 10 ** 6   # the run length a method is told (T_end of the dynamic-sparse-training methods)


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
        elif mode != "baseline":    # any other registered method at its defaults
            self.ctrl = sc.prepare(sc.methods.get(mode).config_cls(), G=self.G, D=self.D)
            self.ctrl.check_run_length(RUN_LENGTH, warn=False)
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
        if self.ctrl:
            self.ctrl.observe_real(self.real)   # D's real batch (ADAPT's balance ratio scores it)
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


class SNGANRunner:
    """The vendor SNGAN (CIFAR-10 ResNet G/D at the CLI defaults) and its train.py step, with or without the
    patch's controller calls."""

    def __init__(self, mode: str, args, device):
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
        sys.path.insert(0, os.path.join(root, "vendor", "sngan"))
        from losses import hinge_loss_D, hinge_loss_G
        from models import ResDiscriminator32, ResGenerator32
        import sparse_core.integration as sparse

        self.hinge_D, self.hinge_G = hinge_loss_D, hinge_loss_G
        self.mode, self.device, self.batch = mode, device, args.batch
        self.amp = {"none": None, "bf16": torch.bfloat16}[args.amp]   # mixed precision of the forwards (GPU runs)
        self.G_batch, self.n_dis, self.z_dim = 2 * args.batch, 5, 128
        torch.manual_seed(0)
        self.G = ResGenerator32(self.z_dim, ch=256, img_channels=3).to(device)
        self.D = ResDiscriminator32(ch=128, img_channels=3).to(device)
        # the CLI defaults of every method's flags; Re-GAN held inside a sparse phase, Re-GAN / RG-GAN on G
        flags = {f.dest: f.default for f in sparse.all_flags()}
        flags.update(sparse=mode if mode != "baseline" else "none", sparsity=0.3, interval=10 ** 9, warmup=0,
                     prune_target="G" if mode in ("regan", "rggan") else None, rg_lambda=5e-12)
        self.ctrl = sparse.controller_from_flags(SimpleNamespace(**flags), self.G, self.D, run_length=RUN_LENGTH) \
            if mode != "baseline" else None
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=(0.0, 0.9))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.0, 0.9))
        self.sched_G = torch.optim.lr_scheduler.LambdaLR(self.opt_G, lambda step: 1 - step / 10 ** 6)
        self.sched_D = torch.optim.lr_scheduler.LambdaLR(self.opt_D, lambda step: 1 - step / 10 ** 6)
        if self.ctrl is not None:
            self.ctrl.bind(opt_G=self.opt_G, opt_D=self.opt_D, sched_G=[self.sched_G], sched_D=[self.sched_D])
            z = torch.randn(2, self.z_dim, device=device)
            self.ctrl.measure_flops("G", lambda: self.G(z), batch=2)
            self.ctrl.measure_flops("D", lambda: self.D(torch.zeros(2, 3, 32, 32, device=device)), batch=2)
        self.real = torch.rand(args.batch, 3, 32, 32, device=device) * 2 - 1

    def step(self):
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            self._step()

    def _step(self):
        ctrl = self.ctrl
        for _ in range(self.n_dis):
            with torch.no_grad():
                fake = self.G(torch.randn(self.batch, self.z_dim, device=self.device))
            if ctrl:
                ctrl.observe_real(self.real)   # the patch's hook where the loop reads D's real batch
            logits = self.D(torch.cat([self.real, fake]))
            logits_real, logits_fake = torch.split(logits, [len(self.real), len(fake)])
            loss_D = self.hinge_D(logits_real, logits_fake) + (ctrl.regularizer("D") if ctrl else 0)
            self.opt_D.zero_grad(set_to_none=True)
            loss_D.backward()
            ctrl.optimizer_step("D", self.opt_D) if ctrl else self.opt_D.step()
        fake = self.G(torch.randn(self.G_batch, self.z_dim, device=self.device))
        loss_G = self.hinge_G(self.D(fake)) + (ctrl.regularizer("G") if ctrl else 0)
        self.opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        ctrl.optimizer_step("G", self.opt_G) if ctrl else self.opt_G.step()
        self.sched_G.step()
        self.sched_D.step()
        if ctrl:
            ctrl.advance(self.n_dis * self.batch)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def update_cost(runner, device, reps: int) -> tuple[float, int] | None:
    """(median CPU ms of one mask update of every targeted network, iterations between updates) for a method
    whose masks change on a schedule (the DST methods: prune + regrow, run inside a before_step every ΔT
    iterations, so not inside the few timed steps); None for the others. Needs the gradients of the last step
    (RigL grows by them)."""
    from sparse_core.methods.dst import DST

    strategy = getattr(runner.ctrl, "strategy", None)
    if not isinstance(strategy, DST) or not strategy.dynamic:
        return None
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    samples = []
    for _ in range(reps):
        sync(device)
        t0 = clock()
        for n in runner.ctrl.targets:
            strategy.update(n, strategy.config.update_frequency)
        sync(device)
        samples.append((clock() - t0) * 1e3)
    return statistics.median(samples), strategy.config.update_frequency


def reset_parts(args, device, argv) -> str:
    """Per-forward RG-GAN weight work over SNGAN G's weights: separate reset ops + threshold op vs the fused op."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    sys.path.insert(0, os.path.join(root, "vendor", "sngan"))
    from models import ResGenerator32
    from sparse_core.ops import reference

    torch.manual_seed(0)
    G = ResGenerator32(128, ch=256, img_channels=3).to(device)
    weights = [(p.detach(), torch.full((p.shape[0],), 0.02, device=device)) for n, p in G.named_parameters()
               if n.endswith("weight") and p.dim() >= 2]

    def separate():
        for w, t in weights:
            reference.reset_collapsed_thresholds(w, t, 0, 0.01)
            ops.threshold_masked_weight(w, t, 0)

    def fused():
        for w, t in weights:
            ops.threshold_masked_weight(w, t, 0, reset_density=0.01)

    clock = time.perf_counter if device.type == "cuda" else time.process_time
    samples = {"separate": [], "fused": []}
    for rep in range(args.warmup + args.reps):
        for name, fn in (("separate", separate), ("fused", fused)):
            sync(device)
            t0 = clock()
            fn()
            sync(device)
            if rep >= args.warmup:
                samples[name].append((clock() - t0) * 1e3)
    med = {k: statistics.median(v) for k, v in samples.items()}
    n = sum(w.numel() for w, _ in weights)
    report = "\n".join([
        f"- command: `python bench/overhead.py {' '.join(argv)}`",
        f"- device: {device}; torch {torch.__version__}; threads {torch.get_num_threads()}; "
        f"{datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- {len(weights)} weights of SNGAN's G ({n / 1e6:.2f} M entries), backend "
        f"{ops.backend_for(weights[0][0])}; {args.reps} interleaved repetitions after {args.warmup} warm-up, "
        f"{'wall' if device.type == 'cuda' else 'CPU'} time per pass over all of them",
        "",
        "| variant | median ms | min | max |",
        "|---|---|---|---|",
        *(f"| {k} | {med[k]:.2f} | {min(v):.2f} | {max(v):.2f} |" for k, v in samples.items()),
        "",
        f"fused / separate = {med['fused'] / med['separate']:.3f}",
        "",
    ])
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
    return report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=("sngan", "toy"), default="sngan", help="networks to train and time")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    help="torch device to train on")
    ap.add_argument("--reps", type=int, default=15, help="timed repetitions per mode")
    ap.add_argument("--steps", type=int, default=5, help="training steps per timed repetition")
    ap.add_argument("--batch", type=int, default=32, help="D batch (sngan: G batch is twice this)")
    ap.add_argument("--ch", type=int, default=64, help="sngan: G width (D gets half)")
    ap.add_argument("--z-dim", dest="z_dim", type=int, default=128, help="latent size of G's input")
    ap.add_argument("--amp", choices=("none", "bf16"), default="none",
                    help="sngan: run the forwards under torch.autocast in bfloat16 (weights and optimizers stay fp32)")
    ap.add_argument("--tf32", action="store_true",
                    help="allow TF32 in float32 matmuls and convolutions (float32 matmul precision 'high')")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per mode before timing")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: leave torch's default)")
    ap.add_argument("--out", default=None, help="markdown file to write the result to")
    ap.add_argument("--reset-parts", action="store_true",
                    help="time only RG-GAN's reset + threshold work over SNGAN G's weights, separate vs fused")
    ap.add_argument("--methods", default="regan,rggan",
                    help="comma-separated registered methods timed next to the baseline, each at its CLI defaults "
                         "(default: regan,rggan; e.g. regan,rggan,static,set,rigl)")
    args = ap.parse_args(argv)
    chosen = [m for m in args.methods.split(",") if m]
    bad = [m for m in chosen if m not in sc.methods.names() or m in ("none", "ticket")]
    if bad or not chosen or len(set(chosen)) != len(chosen):
        ap.error(f"--methods: {args.methods!r} must name distinct registered methods other than none / ticket "
                 f"(a ticket needs its file), from {', '.join(sc.methods.names())}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.tf32:
        torch.set_float32_matmul_precision("high")
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    device = torch.device(args.device)
    if args.reset_parts:
        return reset_parts(args, device, argv if argv is not None else sys.argv[1:])
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    modes = ["baseline", *chosen]
    make = SNGANRunner if args.model == "sngan" else Runner
    runners = {m: make(m, args, device) for m in modes}
    for r in runners.values():            # warm-up: allocator, kernels, first-call costs
        for _ in range(args.warmup):
            r.step()
    times = {m: [] for m in modes}
    # CPU time of this process per step: on a shared machine it moves far less with other jobs' load than
    # wall time does (with one intra-op thread it is the step's own work); on a GPU only wall time means anything.
    cpu_times = {m: [] for m in modes}
    calls: dict[str, dict[str, list[int]]] = {m: {} for m in modes}
    for rep in range(args.reps):
        for m in modes:
            calls_before = ops.backend_counts()
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                runners[m].step()
            sync(device)
            times[m].append((time.perf_counter() - t0) / args.steps)
            cpu_times[m].append((time.process_time() - c0) / args.steps)
            for family, (n, r) in ops.backend_counts().items():   # this mode's own op calls
                n0, r0 = calls_before[family]
                calls[m][family] = [a + b for a, b in zip(calls[m].get(family, [0, 0]), (n - n0, r - r0))]
        print(f"rep {rep + 1}/{args.reps}: " + "  ".join(f"{m} {times[m][-1] * 1e3:.1f} ms (cpu {cpu_times[m][-1] * 1e3:.1f})"
                                                       for m in modes), flush=True)
    med = {m: statistics.median(v) for m, v in times.items()}
    # spread of the baseline against itself: how far apart two halves of its repetitions are
    base = times["baseline"]
    half = len(base) // 2
    noise = (statistics.median(base[half:]) / statistics.median(base[:half])) if half else float("nan")
    cmed = {m: statistics.median(v) for m, v in cpu_times.items()}
    cbase = cpu_times["baseline"]
    cnoise = (statistics.median(cbase[half:]) / statistics.median(cbase[:half])) if half else float("nan")
    updates = {m: update_cost(runners[m], device, max(3, args.reps)) for m in modes}

    def amortised(m):   # CPU ms per step with the mask updates spread over the iterations between them
        return cmed[m] * 1e3 + (updates[m][0] / updates[m][1] if updates[m] else 0.0)

    rows = [f"| {m} | {med[m] * 1e3:.2f} | {min(times[m]) * 1e3:.2f} | {max(times[m]) * 1e3:.2f} | "
            f"{med[m] / med['baseline']:.3f}× | {cmed[m] * 1e3:.2f} | {min(cpu_times[m]) * 1e3:.2f} | "
            f"{max(cpu_times[m]) * 1e3:.2f} | {cmed[m] / cmed['baseline']:.3f}× | "
            + (f"{updates[m][0]:.1f} ms every {updates[m][1]} | {amortised(m) / (cmed['baseline'] * 1e3):.3f}× |"
               if updates[m] else "– | – |") for m in modes]
    backends = {m: {f: f"{n}/{n + r} native" for f, (n, r) in c.items() if n + r} or "no sparse_core op calls"
                for m, c in calls.items()}
    model = (f"vendor SNGAN (ResGenerator32 ch 256, ResDiscriminator32 ch 128, n_dis 5), D batch {args.batch}, "
             f"G batch {2 * args.batch}, autocast {args.amp}, TF32 {'on' if args.tf32 else 'off'}" if args.model == "sngan" else
             f"DCGAN-style G/D 32×32, ch {args.ch}, batch {args.batch}")
    described = {"regan": "Re-GAN at the CLI defaults inside a sparse phase (ρ 0.3, G)" if args.model == "sngan"
                 else "Re-GAN in a sparse phase (ρ 0.3, G and D)",
                 "rggan": "RG-GAN at the CLI defaults (G and D)" if args.model == "sngan" else "RG-GAN (G and D)"}
    methods = ", ".join(described.get(m, f"{m} at its defaults ({sc.methods.get(m).config_cls().target})")
                        for m in chosen)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    report = "\n".join([
        f"# sparse_core overhead per training step ({device.type})",
        "",
        f"- command: `python bench/overhead.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        f"- device: {dev_name}; torch {torch.__version__}; threads {torch.get_num_threads()}; "
        f"date {datetime.date.today().isoformat()}",
        f"- date/time: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; "
        f"load average before/after: {load_before} / {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- model: {model}; {args.reps} interleaved repetitions of {args.steps} steps after {args.warmup} warm-up "
        f"steps; {methods}",
        f"- sparse_core op calls in the timed steps, and how many the native kernels served: {backends}",
        f"- noise: baseline's second-half median / first-half median = {noise:.3f} (wall), {cnoise:.3f} (CPU time)",
        "",
        "| mode | wall median ms/step | wall min | wall max | wall ratio (median) | CPU-time median ms/step | "
        "CPU min | CPU max | CPU-time ratio (median) | mask update (CPU, every ΔT iterations) | CPU-time ratio with "
        "updates amortised |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Mask updates of the dynamic methods run once every ΔT iterations (not inside the timed steps): timed apart "
        "(both networks, median of the repetitions) and spread over ΔT in the last column.",
        "",
    ])
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
    return med


if __name__ == "__main__":
    main()
