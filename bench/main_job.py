"""README command 1: unmodified SNGAN vs Re-SNGAN vs RG-SNGAN on 10% of the built-in digits, on the CPU.

    python bench/main_job.py [--out runs/main] [--steps 400]

Applies patches/sngan.patch to a copy of vendor/sngan (all or nothing), trains the three variants with the
same seed and settings (a narrow CPU preset: G width 32, batch 16), and writes to --out: the three run
folders (stats.jsonl, metric-fid_digits.jsonl / metric-kid_digits.jsonl, sample grids), comparison.md and the
plots. A smoke-scale run: see README for what quality to expect.
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/main")
    ap.add_argument("--steps", type=int, default=280, help="generator steps per run")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    steps = args.steps
    phase = max(steps // 8, 1)          # Re-GAN: warm-up and phases of steps/8 -> W S D S D S D S
    eval_every = max(steps // 8, 1)     # 8 metric points: enough history (5) for augmented regeneration
    common = [
        "--data", "digits", "--data-ratio", "0.1", "--seed", str(args.seed), "--device", "cpu",
        "--ch", "32", "--batch_size", "16", "--G_batch_size", "32", "--total_steps", str(steps),
        "--tick_steps", str(max(steps // 20, 1)), "--sample_step", str(steps // 4), "--eval_step", str(eval_every),
        "--num_images", "500", "--metric", "fid_digits", "--extra_metrics", "kid_digits", "--snapshot_steps", "0",
    ]
    variants = [
        "baseline",
        f"regan:--sparse regan --sparsity 0.3 --interval {phase} --warmup {phase}",
        "rggan:--sparse rggan --rg-lambda 1e-4",
    ]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    t0 = time.time()
    dirs = compare.run_variants("sngan", out, variants, common, env=env)
    preamble = (
        f"Unmodified SNGAN vs patched (Re-GAN, RG-GAN), same seed ({args.seed}) and settings: 10% of sklearn digits "
        f"(180 images, 32×32×3), G width 32, batch 16 (G 32), n_dis 5, {steps} generator steps, CPU. "
        f"Re-GAN: ρ 0.3 on G, warm-up and interval {phase} steps, dense LR ×0.1. RG-GAN: G and D, λ 1e-4 "
        "(raised from the paper's 5e-12 so thresholds move within a smoke-length run), augmented regeneration "
        f"from fid_digits every {eval_every} steps. fid_digits is a NON-STANDARD FID in the feature space of a "
        "small digits classifier, comparable only with itself; at this length differences are noise. "
        f"Total wall time {time.time() - t0:.0f} s."
    )
    text = compare.report(dirs, out, metric="fid_digits", title="Main job: SNGAN on digits (10%)", preamble=preamble)
    print(text)
    print(f"\nwritten: {out}/comparison.md, {out}/metric_vs_kimg.png, {out}/kept_fraction.png, run folders in {out}")


if __name__ == "__main__":
    main()
