"""The longer quality experiment: SNGAN baseline vs Re-SNGAN vs RG-SNGAN on digits, 10% and 100% of the data,
several seeds, with the papers' stability measure.

    python bench/quality.py [--seeds 0,1,2] [--ratios 0.1,1.0] [--steps 1400] [--jobs 1] [--out runs/quality]

Settings: the main job's CPU preset (bench/main_job.py `preset`, described by `PRESET_SUMMARY`), at --steps
generator steps (default: the main job's). Reported: mean ± std over seeds of the final and best
fid_digits, the recognisable share (confident_digits) and stability, and the paired per-seed comparison with
the baseline (same seed, same data: variant minus baseline, and on how many seeds the variant is better).

Stability (Re-GAN paper): mean squared difference between consecutive sample grids of the same fixed latents
(pixels in [-1, 1]); lower means the generator's mapping changes less from one sample point to the next.
Writes bench/results/quality-digits.md (mean ± std over seeds) and the per-run comparison tables.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from vendor.common.images import open_image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402
import main_job  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def stability(run_dir: Path) -> float | None:
    grids = sorted(run_dir.glob("samples-*.png"), key=lambda p: int(p.stem.split("-")[1]))
    if len(grids) < 2:
        return None
    arrays = [np.asarray(open_image(p.read_bytes(), str(p)), dtype=np.float64) / 127.5 - 1 for p in grids]
    return float(np.mean([np.mean((a - b) ** 2) for a, b in zip(arrays[:-1], arrays[1:])]))


def one(ratio: float, seed: int, steps: int, out: Path) -> dict:
    # the main job's preset; sample grids 20 times per run for the stability measure (the later flag wins)
    common = main_job.preset(steps, seed, ratio) + ["--sample_step", str(max(steps // 20, 1))]
    variants = main_job.variants(steps)
    d = out / f"ratio{ratio}_seed{seed}"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    dirs = compare.run_variants("sngan", d, variants, common, env=env)
    compare.report(dirs, d, metric="fid_digits", title=f"digits ratio {ratio}, seed {seed}")
    res = {}
    for name, rd in dirs.items():
        s = compare.summarize(name, rd, "fid_digits")
        res[name] = {"final": s["final"], "best": s["best"], "confident": s["confident"],
                     "stability": stability(s["dir"]),
                     "seconds": s["seconds"], "G_sparsity": s["G_sparsity"], "D_sparsity": s["D_sparsity"]}
    return {"ratio": ratio, "seed": seed, "results": res}


def paired_rows(runs: list[dict], ratios, seeds) -> list[str]:
    out = ["| data | run | seed | Δ final fid_digits | Δ best fid_digits | Δ recognisable |", "|---|---|---|---|---|---|"]
    for r in ratios:
        for v in ("regan", "rggan"):
            deltas = {"final": [], "best": [], "confident": []}
            for s in seeds:
                x = next(x for x in runs if x["ratio"] == r and x["seed"] == s)["results"]
                d = {k: (x[v][k] - x["baseline"][k]) if x[v][k] is not None and x["baseline"][k] is not None else None
                     for k in deltas}
                for k in deltas:
                    deltas[k].append(d[k])
                out.append(f"| {r:.0%} | {v} | {s} | {_f(d['final'])} | {_f(d['best'])} | {_f(d['confident'])} |")
            better = sum(1 for d in deltas["final"] if d is not None and d < 0)
            out.append(f"| {r:.0%} | {v} | mean ± std (final fid better on {better} of {len(seeds)} seeds) "
                       f"| {ms(deltas['final'])} | {ms(deltas['best'])} | {ms(deltas['confident'])} |")
    return out


def _f(x):
    return "–" if x is None else f"{x:+.3f}"


def ms(values):
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds: one run per seed, data ratio and method")
    ap.add_argument("--ratios", default="0.1,1.0", help="comma-separated fractions of the digits to train on")
    ap.add_argument("--steps", type=int, default=main_job.DEFAULT_STEPS, help="generator steps per run")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (processes)")
    ap.add_argument("--out", default="runs/quality", help="folder for the runs' folders")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results" / "quality-digits.md"),
                    help="Markdown file the tables are written to")
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    seeds = [int(s) for s in args.seeds.split(",")]
    ratios = [float(r) for r in args.ratios.split(",")]
    t0 = time.time()
    with cf.ProcessPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(one, *zip(*[(r, s, args.steps, out) for r in ratios for s in seeds])))
    rows = ["| data | run | final fid_digits | best fid_digits | recognisable | stability MSE | G sparsity "
            "| D sparsity | wall s |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in ratios:
        for v in ("baseline", "regan", "rggan"):
            got = [x["results"][v] for x in runs if x["ratio"] == r]
            rows.append(f"| {r:.0%} | {v} | {ms([g['final'] for g in got])} | {ms([g['best'] for g in got])} "
                        f"| {ms([g['confident'] for g in got])} "
                        f"| {ms([g['stability'] for g in got])} | {ms([g['G_sparsity'] for g in got])} "
                        f"| {ms([g['D_sparsity'] for g in got])} | {ms([g['seconds'] for g in got])} |")
    paired = paired_rows(runs, ratios, seeds)
    import torch
    text = "\n".join([
        "# Quality experiment: SNGAN vs Re-SNGAN vs RG-SNGAN on digits",
        "",
        f"- command: `python bench/quality.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        f"- device: CPU ({os.cpu_count()} cores), torch {torch.__version__}, date {datetime.date.today().isoformat()}, "
        f"total wall {time.time() - t0:.0f} s",
        f"- settings: the main job's preset ({main_job.PRESET_SUMMARY}), {args.steps} G steps, seeds {seeds}; Re-GAN ρ 0.3 on G, "
        f"warm-up/interval {max(args.steps // 8, 1)}; RG-GAN λ 1e-4 on G and D with augmented regeneration",
        f"- native kernels: SPARSE_CORE_OPS={os.environ.get('SPARSE_CORE_OPS', '(unset: the default dispatch)')}",
        "- fid_digits: NON-STANDARD FID in a small digits classifier's feature space (500 generated vs all 1,797 digits, "
        "whatever the training subset); stability: mean MSE between consecutive sample grids of fixed latents (lower = steadier)",
        "- mean ± std over seeds",
        "",
        *rows,
        "",
        "Paired per seed (variant minus baseline, same seed and data; negative fid / positive recognisable = "
        "variant better):",
        "",
        *paired,
        "",
    ])
    Path(args.results).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
