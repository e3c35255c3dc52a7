"""README command 1: unmodified SNGAN vs Re-SNGAN vs RG-SNGAN on 10% of the built-in digits, on the CPU.

    python bench/main_job.py [--out runs/main] [--steps 1400] [--seed 0]

Patches a copy of vendor/sngan (patches/sngan.patch), trains the three variants with the same seed and a CPU
preset (497 s measured on 2 cores), and writes into --out (replaced if it exists): the three run folders,
comparison.md (final / best fid_digits, the digits classifier's recognisable share, an independent
nearest-real-digit judge's share (bench/judge.py), FLOPs, sparsity, time) and the plots (metric vs kimg with
sparse phases shaded, metric vs FLOPs, kept fraction per layer, the last sample grids side by side).
Preset: SNGAN's ResNet G / SN-ResNet D at G width 32 (D 16), hinge loss, batch 16, n_dis 1, Adam 4e-4
betas (0.5, 0.999), DiffAugment translation, G EMA; how it was chosen: bench/results/main-job-cpu.md.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402
import judge  # noqa: E402

DEFAULT_STEPS = 1400
# what preset() sets, in words, for the reports of the main job and bench/quality.py
PRESET_SUMMARY = ("G width 32 (D 16), batch 16 (G 16), n_dis 1, Adam 4e-4 betas (0.5, 0.999), DiffAugment translation, "
                  "G EMA 0.99 after warm-up (metrics and samples from G_ema)")
NUM_EVALS = 8  # metric points per run: enough history (5) for RG-GAN's augmented regeneration


def tick_steps(steps: int) -> int:
    """Stats rows 40 to 160 times per run, at a step count that divides Re-GAN's phase length (variants():
    steps // 8) where one exists, so a row falls on every phase change and the report shades the phases at their
    exact steps; else every phase // 5 steps."""
    phase = max(steps // 8, 1)
    top = max(phase // 5, 1)
    exact = [d for d in range(max(phase // 20, 1), top + 1) if phase % d == 0]
    return max(exact) if exact else top


def preset(steps: int, seed: int, ratio: float = 0.1) -> list[str]:
    """The SNGAN-on-digits CPU preset shared by the main job and bench/quality.py."""
    every = max(steps // NUM_EVALS, 1)
    return [
        "--data", "digits", "--data-ratio", str(ratio), "--seed", str(seed), "--device", "cpu",
        "--ch", "32", "--batch_size", "16", "--G_batch_size", "16", "--n_dis", "1",
        "--lr_G", "4e-4", "--lr_D", "4e-4", "--betas", "0.5", "0.999", "--diffaug", "translation",
        "--ema_decay", "0.99", "--total_steps", str(steps),
        "--tick_steps", str(tick_steps(steps)), "--sample_step", str(every), "--eval_step", str(every),
        "--num_images", "500", "--metric", "fid_digits", "--extra_metrics", "confident_digits",
        "--snapshot_steps", "0",
    ]


def variants(steps: int) -> list[str]:
    phase = max(steps // 8, 1)  # Re-GAN: warm-up and phases of steps/8 -> W S D S D S D S
    return [
        "baseline",
        f"regan:--sparse regan --sparsity 0.3 --interval {phase} --warmup {phase}",
        "rggan:--sparse rggan --rg-lambda 1e-4",
    ]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/main", help="output folder, replaced if it exists (default runs/main)")
    ap.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"generator steps per run (default {DEFAULT_STEPS})")
    ap.add_argument("--seed", type=int, default=0, help="the seed of all three runs (default 0)")
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error(f"--steps must be >= 1, got {args.steps}")
    out = Path(args.out).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    steps = args.steps
    phase = max(steps // 8, 1)
    every = max(steps // NUM_EVALS, 1)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    t0 = time.time()
    dirs = compare.run_variants("sngan", out, variants(steps), preset(steps, args.seed), env=env)
    preamble = (
        f"Unmodified SNGAN vs patched (Re-GAN, RG-GAN), same seed ({args.seed}) and settings: 10% of sklearn digits "
        f"(180 images, 32×32×3), {PRESET_SUMMARY}, {steps} generator "
        "steps, CPU. "
        f"Re-GAN: ρ 0.3 on G, warm-up and interval {phase} steps, dense LR ×0.1. RG-GAN: G and D, λ 1e-4 "
        "(raised from the paper's 5e-12 so thresholds move within a short run), augmented regeneration "
        f"from G_ema's fid_digits every {every} steps. fid_digits is a NON-STANDARD FID in the feature space of a "
        "small digits classifier, comparable only with itself; 'recognisable' is the share of 500 final samples "
        "that classifier assigns a class with p ≥ 0.9 (all real digits 0.94, 50/50 blends of two digits 0.04, noise 0). "
        "'near a real digit' is an independent judge (bench/judge.py, no classifier): the share of the 64 samples "
        "of the last grid whose nearest real digit, in 8×8 grey pixels, is as close as 90 % of real digits' "
        "nearest other digit (real digits held out of the reference 0.91, uniform noise 0, 50/50 blends of two "
        "different digits 0.31: it reads closeness in pixels, not identity). One seed: differences "
        f"between the runs are not significant. Total wall time {time.time() - t0:.0f} s."
    )
    text = compare.report(dirs, out, metric="fid_digits", title="Main job: SNGAN on digits (10%)", preamble=preamble,
                          judge=judge.judge_grid)
    print(text)
    print(f"\nwritten: {out}/comparison.md, {out}/metric_vs_kimg.png, {out}/metric_vs_flops.png, "
          f"{out}/kept_fraction.png, "
          f"{out}/samples_side_by_side.png, run folders in {out}")


if __name__ == "__main__":
    main()
