"""Side-by-side comparison of an unmodified vendor tree and its patched copy.

    # train baseline / Re- / RG- with the same seed and settings, then build the table and plots
    python bench/compare.py run --vendor sngan --out runs/cmp --variants baseline,regan,rggan -- \
        --data digits --data-ratio 0.1 --ch 32 --total_steps 300
    # (re)build only the table and plots from existing run folders
    python bench/compare.py report --out runs/cmp baseline=runs/cmp/baseline regan=runs/cmp/regan ...

Variants: `baseline` runs vendor/<vendor>/train.py as committed; any other name runs the patched copy
(made with `sparse-core apply`, all or nothing) with `--sparse <name>`; `name:extra flags` adds flags to one
variant only, e.g. `regan-ri:--sparse regan --regrow random`.

The table: final and best metric, KID when logged, the share of recognisable samples when
`confident_digits` is logged (final samples the digits classifier assigns a class with p >= 0.9), #real
images, training FLOPs (a baseline run has no sparse_core, so its FLOPs are the dense-equivalent count of a
patched run of the same settings, per kimg), saving vs dense, wall time, final sparsity of G and D. Plots:
metric vs kimg for every run with each sparse run's sparse phases shaded; per-layer kept fraction over time
for every sparse run; the runs' last sample grids side by side in one PNG (`samples_side_by_side.png`).
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_readers import read_metrics, read_stats  # noqa: E402

VENDORS = {
    # train script relative to the vendor tree, flag that names the run folder, folder created inside it?
    "sngan": {"script": "train.py", "outflag": "--logdir", "nested": False},
    "stylegan2_ada": {"script": "train.py", "outflag": "--outdir", "nested": True},
    "autogan": {"script": "train.py", "outflag": "--logdir", "nested": False},
    "progan": {"script": "train.py", "outflag": "--logdir", "nested": False},
    "fastgan": {"script": "train.py", "outflag": "--output_path", "nested": True},  # <out>/train_results/<name>/
}


def find_run_dir(d: Path) -> Path:
    """The folder holding stats.jsonl (StyleGAN2-ADA nests runs as <outdir>/00000-<desc>/, FastGAN two deep)."""
    if (d / "stats.jsonl").is_file():
        return d
    found = sorted(d.glob("*/stats.jsonl")) or sorted(d.glob("*/*/stats.jsonl"))  # FastGAN: train_results/<name>
    if not found:
        raise FileNotFoundError(f"no stats.jsonl in {d} or its sub-folders")
    return found[-1].parent


def patched_tree(vendor: str, out: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from sparse_core.patching import apply_to_copy
    return apply_to_copy(ROOT / "patches" / f"{vendor}.patch", ROOT / "vendor" / vendor,
                         out / "work" / vendor, force=True)


def run_variants(vendor: str, out: Path, variants: list[str], common: list[str], python: str = sys.executable,
                 env: dict | None = None) -> dict[str, Path]:
    spec = VENDORS[vendor]
    out = Path(out).resolve()  # the subprocess's cwd is the vendor tree: a relative run folder would land there
    tree = None
    dirs = {}
    if not spec["nested"]:  # the train script refuses a fresh run in an old run folder: say so before any training
        old = [str(out / v.partition(":")[0]) for v in variants if (out / v.partition(":")[0] / "stats.jsonl").exists()]
        if old:
            raise SystemExit(f"[compare] --out already holds runs ({', '.join(old)}); choose a new --out or delete them")
    for v in variants:
        name, _, extra = v.partition(":")
        run_dir = out / name
        if name == "baseline":
            script = ROOT / "vendor" / vendor / spec["script"]
            flags = shlex.split(extra)
        else:
            tree = tree or patched_tree(vendor, out)
            script = tree / spec["script"]
            flags = shlex.split(extra) if extra else ["--sparse", name]
        cmd = [python, str(script), *common, *flags, spec["outflag"], str(run_dir)]
        print(f"[compare] {name}: {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
        t0 = time.time()
        proc = subprocess.Popen(cmd, cwd=script.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env)
        for line in proc.stdout:
            print(f"  [{name}] {line}", end="", flush=True)
        if proc.wait() != 0:
            raise SystemExit(f"[compare] {name} failed with exit code {proc.returncode}")
        print(f"[compare] {name} done in {time.time() - t0:.0f} s", flush=True)
        dirs[name] = run_dir
    return dirs


def summarize(name: str, run_dir: Path, metric: str | None) -> dict:
    d = find_run_dir(run_dir)
    stats = read_stats(d)
    if not stats:
        raise ValueError(f"{d}/stats.jsonl is empty")
    last = stats[-1]
    metrics = read_metrics(d)
    mname = metric or next(iter(metrics), None)
    series = metrics.get(mname, [])
    kid_name = mname.replace("fid", "kid") if mname else None
    kid = metrics.get(kid_name, [])
    confident = metrics.get("confident_digits", [])
    return {
        "name": name, "dir": d, "stats": stats, "metric_name": mname, "metric": series,
        "final": series[-1]["value"] if series else None,
        "best": min(r["value"] for r in series) if series else None,
        "kid": kid[-1]["value"] if kid else None,
        "confident": confident[-1]["value"] if confident else None,
        "kimg": last.get("progress/kimg"),
        "seconds": last.get("timing/total_sec"),
        "flops": last.get("flops/train_total"),
        "flops_dense": last.get("flops/train_dense_equiv"),
        "G_sparsity": last.get("sparse/G/sparsity"),
        "D_sparsity": last.get("sparse/D/sparsity"),
        "phase": last.get("sparse/phase", "dense (baseline)"),
    }


def _fmt(x, spec):
    return "–" if x is None else format(x, spec)


def table(rows: list[dict]) -> str:
    # A baseline has no sparse_core counters: charge it the dense FLOPs per kimg of a patched run.
    per_kimg = next((r["flops_dense"] / r["kimg"] for r in rows if r["flops_dense"] and r["kimg"]), None)
    for r in rows:
        if r["flops"] is None and per_kimg and r["kimg"]:
            r["flops"] = r["flops_dense"] = per_kimg * r["kimg"]
            r["flops_note"] = " (dense count)"
    mname = next((r["metric_name"] for r in rows if r["metric_name"]), "metric")
    out = [f"| run | final {mname} | best {mname} | KID | recognisable (p ≥ 0.9) | #RI (kimg) | train FLOPs "
           "| saving vs dense | wall time (s) | G sparsity | D sparsity | last phase |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        saving = (1 - r["flops"] / r["flops_dense"]) if r["flops"] and r["flops_dense"] else None
        out.append(f"| {r['name']} | {_fmt(r['final'], '.3f')} | {_fmt(r['best'], '.3f')} | {_fmt(r['kid'], '.4f')} "
                   f"| {_fmt(r['confident'], '.1%')} | {_fmt(r['kimg'], '.1f')} | {_fmt(r['flops'], '.3e')}{r.get('flops_note', '')} "
                   f"| {_fmt(saving, '.1%')} | {_fmt(r['seconds'], '.0f')} | {_fmt(r['G_sparsity'], '.3f')} "
                   f"| {_fmt(r['D_sparsity'], '.3f')} | {r['phase']} |")
    return "\n".join(out)


def sparse_spans(stats: list[dict]) -> list[tuple[float, float]]:
    """kimg intervals in which a run was in its sparse phase: a tick counts from the previous tick's kimg
    to its own (stats rows report the phase at the end of each tick)."""
    spans, previous = [], 0.0
    for row in stats:
        kimg = row.get("progress/kimg")
        if kimg is None:
            continue
        if row.get("sparse/phase") == "sparse":
            if spans and spans[-1][1] == previous:
                spans[-1] = (spans[-1][0], kimg)
            else:
                spans.append((previous, kimg))
        previous = kimg
    return spans


def _step_of(p: Path) -> int:
    return int(''.join(c for c in p.stem if c.isdigit()) or 0)


def last_grid(run_dir: Path) -> Path | None:
    """The newest sample grid: SNGAN / ProGAN / AutoGAN samples-<step>.png, StyleGAN2 fakes<kimg>.png,
    FastGAN images/<iteration>[-suffix].png (its rec_* reconstructions are not samples)."""
    pngs = sorted(run_dir.glob("samples-*.png"), key=_step_of)
    pngs = pngs or sorted(run_dir.glob("fakes*.png"))
    pngs = pngs or sorted((p for p in run_dir.glob("images/*.png") if p.name[:1].isdigit()), key=_step_of)
    return pngs[-1] if pngs else None


def side_by_side(rows: list[dict], path: Path) -> Path | None:
    """The runs' last sample grids next to each other, each under its run name, in one PNG."""
    from PIL import Image, ImageDraw

    from vendor.common.images import open_image  # the one decoder path (PNG by name, nothing else)

    grids = [(r["name"], open_image(g.read_bytes(), str(g)).convert("RGB"))
             for r in rows if (g := last_grid(r["dir"])) is not None]
    if not grids:
        return None
    label, gap = 16, 8
    height = max(im.height for _, im in grids) + label
    width = sum(im.width for _, im in grids) + gap * (len(grids) - 1)
    canvas = Image.new("RGB", (width, height), "white")
    draw, x = ImageDraw.Draw(canvas), 0
    for name, im in grids:
        canvas.paste(im, (x, label))
        draw.text((x + 2, 2), name, fill="black")
        x += im.width + gap
    canvas.save(path)
    return path


def plots(rows: list[dict], out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    made = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        points = [(m["kimg"], m["value"]) for m in r["metric"] if m.get("kimg") is not None]
        if not points:
            continue
        (line,) = ax.plot(*zip(*points), marker="o", label=r["name"])
        for i, (start, end) in enumerate(sparse_spans(r["stats"])):
            ax.axvspan(start, end, color=line.get_color(), alpha=0.12, lw=0,
                       label=f"{r['name']}: sparse phase" if i == 0 else None)
    ax.set_xlabel("kimg (real images shown to D)")
    ax.set_ylabel(next((r["metric_name"] for r in rows if r["metric_name"]), "metric"))
    ax.set_title("quality vs real images shown (lower is better)")
    ax.legend()
    fig.tight_layout()
    made.append(out / "metric_vs_kimg.png")
    fig.savefig(made[-1], dpi=120)
    plt.close(fig)
    sparse_rows = [r for r in rows if any(k.startswith("sparse/") and "/kept/" in k for k in r["stats"][-1])]
    if sparse_rows:
        fig, axes = plt.subplots(len(sparse_rows), 1, figsize=(7, 3.2 * len(sparse_rows)), squeeze=False)
        for ax, r in zip(axes[:, 0], sparse_rows):
            keys = sorted(k for k in r["stats"][-1] if "/kept/" in k)
            kimg = [s.get("progress/kimg") for s in r["stats"]]
            for k in keys:
                ax.plot(kimg, [s.get(k) for s in r["stats"]], label=k.split("/", 1)[1].replace("kept/", ""), lw=1)
            ax.set_title(f"{r['name']}: kept fraction per layer")
            ax.set_xlabel("kimg")
            ax.set_ylim(0, 1.05)
            ax.legend(fontsize=5, ncol=2, loc="lower left")
        fig.tight_layout()
        made.append(out / "kept_fraction.png")
        fig.savefig(made[-1], dpi=120)
        plt.close(fig)
    return made


def report(dirs: dict[str, Path], out: Path, metric: str | None = None, title: str = "Comparison",
           preamble: str = "") -> str:
    rows = [summarize(n, d, metric) for n, d in dirs.items()]
    out.mkdir(parents=True, exist_ok=True)
    made = plots(rows, out)
    together = side_by_side(rows, out / "samples_side_by_side.png")
    if together is not None:
        made.append(together)
    grids = []
    for r in rows:
        grid = last_grid(r["dir"])
        if grid is not None:
            grids.append(f"- {r['name']}: `{os.path.relpath(grid, out)}`")
    text = "\n".join([f"# {title}", "", preamble, "", table(rows), "", "Plots: " +
                      ", ".join(f"`{p.name}`" for p in made), "", "Last sample grids:", *grids, ""])
    (out / "comparison.md").write_text(text)
    return text


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    common = []
    if "--" in argv:
        i = argv.index("--")
        argv, common = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--vendor", choices=sorted(VENDORS), required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--variants", default="baseline,regan,rggan")
    r.add_argument("--metric", default=None)
    p = sub.add_parser("report")
    p.add_argument("--out", required=True)
    p.add_argument("--metric", default=None)
    p.add_argument("runs", nargs="+", help="name=run_dir")
    args = ap.parse_args(argv)
    # absolute: the training subprocesses run in the vendor tree's folder, not in the caller's
    out = Path(args.out).resolve()
    if args.cmd == "run":
        dirs = run_variants(args.vendor, out, args.variants.split(","), common)
    else:
        dirs = {}
        for item in args.runs:
            name, sep, d = item.partition("=")
            if not sep:
                ap.error(f"runs must be name=dir, got {item!r}")
            dirs[name] = Path(d).resolve()
    print(report(dirs, out, args.metric))


if __name__ == "__main__":
    main()
