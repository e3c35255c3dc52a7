"""Side-by-side comparison of an unmodified vendor tree and its patched copy.

    # train baseline / Re- / RG- with the same seed and settings, then build the table and plots
    python bench/compare.py run --vendor sngan --out runs/cmp --variants baseline,regan,rggan -- \
        --data digits --data-ratio 0.1 --ch 32 --total_steps 300
    # (re)build only the table and plots from existing run folders
    python bench/compare.py report --out runs/cmp baseline=runs/cmp/baseline regan=runs/cmp/regan ...

Variants: `baseline` runs vendor/<vendor>/train.py as committed; any other name runs the patched copy
(made with `sparse-core apply`, all or nothing) with `--sparse <name>`; `name:extra flags` adds flags to one
variant only, e.g. `regan-ri:--sparse regan --regrow random`.

The table (comparison.md): final and best metric, KID when logged, the share of recognisable samples when
`confident_digits` is logged (final samples the digits classifier assigns a class with p >= 0.9), #real
images, training FLOPs (a baseline run has no sparse_core, so its FLOPs are the dense-equivalent count of a
patched run of the same settings, per kimg), saving vs dense, wall time: the whole run and seconds per kimg
after the first tick (the first tick carries start-up and cold caches, which depend on run order), final
sparsity of G and D.
Plots: `metric_vs_kimg.png` (metric vs kimg for every run, each sparse run's sparse phases shaded from the
stats rows where its phase changes), `metric_vs_flops.png` (final metric vs training FLOPs, one point per
run, the papers' Figure 1 view, with each run's evaluations along the way), `kept_fraction.png` (kept
fraction of every masked layer over time, one panel per sparse run and network, legend outside) and
`samples_side_by_side.png` (each run's last trained sample grid, by the step / kimg in its name).
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_readers import read_metrics, read_stats, series_keys  # noqa: E402

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


def variant_error(variants: list[str]) -> str | None:
    """Why `variants` cannot run (None: they can): a plain name must be `baseline` or a registered sparse_core
    method (any set of them runs side by side), and names must be unique (each is a run folder)."""
    sys.path.insert(0, str(ROOT))
    from sparse_core import methods

    names = [v.partition(":")[0] for v in variants]
    if not names or any(not n for n in names):
        return f"--variants has an empty name in {','.join(variants)!r}"
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        return f"--variants names {', '.join(dup)} more than once (each variant is one run folder)"
    unknown = [v for v in variants if ":" not in v and v != "baseline" and v not in methods.names()]
    if unknown:
        return (f"--variants: {', '.join(unknown)} is neither `baseline` nor a sparse_core method "
                f"({', '.join(methods.names())}); give `name:flags` for a variant with its own flags")
    return None


def run_variants(vendor: str, out: Path, variants: list[str], common: list[str], python: str = sys.executable,
                 env: dict | None = None) -> dict[str, Path]:
    spec = VENDORS[vendor]
    error = variant_error(variants)
    if error:   # before any training: a typo in the last variant must not cost the runs before it
        raise SystemExit(f"[compare] {error}")
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


def default_metric(metrics: dict) -> str | None:
    """The table's metric when none is named: the run's FID-type metric if it logged one (the recognisable share
    and KID have columns of their own), else its first other metric, else its first."""
    names = sorted(metrics)
    return next((n for n in names if n.startswith("fid")), None) or \
        next((n for n in names if n != "confident_digits"), None) or next(iter(names), None)


def summarize(name: str, run_dir: Path, metric: str | None) -> dict:
    d = find_run_dir(run_dir)
    stats = read_stats(d)
    if not stats:
        raise ValueError(f"{d}/stats.jsonl is empty")
    last = stats[-1]
    metrics = read_metrics(d)
    mname = metric or default_metric(metrics)
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
        "sec_per_kimg": seconds_per_kimg_after_first_tick(stats),
        "flops": last.get("flops/train_total"),
        "flops_dense": last.get("flops/train_dense_equiv"),
        "G_sparsity": last.get("sparse/G/sparsity"),
        "D_sparsity": last.get("sparse/D/sparsity"),
        "phase": last.get("sparse/phase", "dense (baseline)"),
    }


def seconds_per_kimg_after_first_tick(stats: list[dict]) -> float | None:
    """Wall seconds per kimg from the first stats row to the last: the first tick (start-up, cold caches,
    first-call compilation) is left out, so runs compare whatever order they ran in. None with fewer than two
    rows that carry both `timing/total_sec` and `progress/kimg`."""
    rows = [(r["timing/total_sec"], r["progress/kimg"]) for r in stats
            if r.get("timing/total_sec") is not None and r.get("progress/kimg") is not None]
    if len(rows) < 2 or rows[-1][1] <= rows[0][1]:
        return None
    return (rows[-1][0] - rows[0][0]) / (rows[-1][1] - rows[0][1])


def _fmt(x, spec):
    return "–" if x is None else format(x, spec)


def charge_dense_flops(rows: list[dict]) -> None:
    """A baseline has no sparse_core counters: charge it the dense FLOPs per kimg of a patched run."""
    per_kimg = next((r["flops_dense"] / r["kimg"] for r in rows if r.get("flops_dense") and r.get("kimg")), None)
    for r in rows:
        r.setdefault("dense_flops_per_kimg", per_kimg)
        if r["flops"] is None and per_kimg and r["kimg"]:
            r["flops"] = r["flops_dense"] = per_kimg * r["kimg"]
            r["flops_note"] = " (dense count)"


TABLE_NOTES = ("s/kimg after 1st tick: wall seconds per kimg from the end of the first tick to the end of the run "
               "(stats.jsonl `timing/total_sec`; the first tick, with start-up and cold caches that depend on run "
               "order, is left out; evaluations and sample grids after it are included); wall time (s): the whole "
               "run, first tick included.")


def table(rows: list[dict]) -> str:
    charge_dense_flops(rows)
    mname = next((r["metric_name"] for r in rows if r["metric_name"]), "metric")
    judged = any("judge" in r for r in rows)  # report(judge=...) was asked for the column
    judge_head = " near a real digit (NN judge) |" if judged else ""
    out = [f"| run | final {mname} | best {mname} | KID | recognisable (p ≥ 0.9) |{judge_head} #RI (kimg) "
           "| train FLOPs | saving vs dense | s/kimg after 1st tick | wall time (s) | G sparsity | D sparsity "
           "| last phase |",
           "|---|---|---|---|---|" + ("---|" if judged else "") + "---|---|---|---|---|---|---|---|"]
    for r in rows:
        saving = (1 - r["flops"] / r["flops_dense"]) if r["flops"] and r["flops_dense"] else None
        judge = f" {_fmt(r.get('judge'), '.1%')} |" if judged else ""
        out.append(f"| {r['name']} | {_fmt(r['final'], '.3f')} | {_fmt(r['best'], '.3f')} | {_fmt(r['kid'], '.4f')} "
                   f"| {_fmt(r['confident'], '.1%')} |{judge} {_fmt(r['kimg'], '.1f')} "
                   f"| {_fmt(r['flops'], '.3e')}{r.get('flops_note', '')} "
                   f"| {_fmt(saving, '.1%')} | {_fmt(r.get('sec_per_kimg'), '.2f')} | {_fmt(r['seconds'], '.0f')} "
                   f"| {_fmt(r['G_sparsity'], '.3f')} | {_fmt(r['D_sparsity'], '.3f')} | {r['phase']} |")
    return "\n".join(out + ["", TABLE_NOTES])


def phase_changes(stats: list[dict]) -> list[tuple[float, str]]:
    """(kimg, phase) at every stats row whose `sparse/phase` differs from the row before it (the first row
    with a phase counts as a change): a row reports the phase in force from its own step on, so a change is
    placed at the step of the row that first reports it. Exact when the run writes a row where the phase
    changes; with rows at ticks only, a change shows at the first tick after it."""
    changes, current = [], None
    for row in stats:
        kimg, phase = row.get("progress/kimg"), row.get("sparse/phase")
        if kimg is None or phase is None or phase == current:
            continue
        changes.append((float(kimg), phase))
        current = phase
    return changes


def sparse_spans(stats: list[dict]) -> list[tuple[float, float]]:
    """kimg intervals a run spent in its sparse phase: from each change into `sparse` to the next change out of
    it, or to the run's last row (phase_changes() says where a change is placed)."""
    ends = [float(r["progress/kimg"]) for r in stats if r.get("progress/kimg") is not None]
    spans, start = [], None
    for kimg, phase in phase_changes(stats):
        if phase == "sparse" and start is None:
            start = kimg
        elif phase != "sparse" and start is not None:
            spans.append((start, kimg))
            start = None
    if start is not None and ends and ends[-1] > start:
        spans.append((start, ends[-1]))
    return spans


_GRID_NAMES = (  # (glob, regex giving the step / kimg) of each vendor's sample grids; fakes_init.png never matches
    ("samples-*.png", re.compile(r"samples-(\d+)\.png")),            # SNGAN / ProGAN / AutoGAN: samples-<step>.png
    ("fakes*.png", re.compile(r"fakes(\d+(?:\.\d+)?)\.png")),        # StyleGAN2-ADA: fakes<kimg>[.<images>].png
    ("images/*.png", re.compile(r"(\d+)(?:-[^/]*)?\.png")),          # FastGAN: images/<iteration>[-suffix].png
)


def last_grid(run_dir: Path) -> Path | None:
    """The last trained sample grid of a run: the highest step / kimg in its name (numerically, not by name),
    never StyleGAN2-ADA's `fakes_init.png` (the untrained samples) nor FastGAN's rec_* reconstructions."""
    for pattern, rx in _GRID_NAMES:
        found = [(float(m.group(1)), p.name, p) for p in Path(run_dir).glob(pattern) if (m := rx.fullmatch(p.name))]
        if found:
            return max(found)[2]
    return None


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


def kept_series(stats: list[dict]) -> dict[str, list[str]]:
    """{network: [stats keys of its layers' kept fractions]}: `sparse/<net>/kept/<layer>` of the last row,
    without the `/num` and `/std` companions a StyleGAN2-ADA record adds."""
    if not stats:
        return {}
    out: dict[str, list[str]] = {}
    for key in series_keys(stats[-1], "sparse/"):
        parts = key.split("/")
        if len(parts) >= 4 and parts[2] == "kept":
            out.setdefault(parts[1], []).append(key)
    return out


def flops_at(row: dict, kimg_points: list[float]) -> list[float] | None:
    """Training FLOPs spent by each kimg in `kimg_points` (linear between stats rows; a baseline: the dense count
    per kimg)."""
    import numpy as np
    pts = [(s["progress/kimg"], s["flops/train_total"]) for s in row["stats"]
           if s.get("progress/kimg") is not None and s.get("flops/train_total") is not None]
    if pts:
        xs, ys = zip(*([(0.0, 0.0)] + pts))
        return [float(v) for v in np.interp(kimg_points, xs, ys)]
    if row.get("dense_flops_per_kimg"):
        return [k * row["dense_flops_per_kimg"] for k in kimg_points]
    return None


def quality_vs_flops(rows: list[dict]) -> dict:
    """{row name: (FLOPs spent by each evaluation, [(kimg, value)])} of every run with a final metric and FLOPs:
    the lines and end points of `metric_vs_flops.png` (one per run, whatever its method)."""
    out = {}
    for r in rows:
        points = [(m["kimg"], m["value"]) for m in r["metric"] if m.get("kimg") is not None]
        flops = flops_at(r, [k for k, _ in points]) if points else None
        if flops and r["final"] is not None:
            out[r["name"]] = (flops, points)
    return out


def _shade_sparse(ax, stats: list[dict], color, label: str | None = None) -> None:
    for i, (start, end) in enumerate(sparse_spans(stats)):
        ax.axvspan(start, end, color=color, alpha=0.12, lw=0, label=label if i == 0 else None)


def plots(rows: list[dict], out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    charge_dense_flops(rows)
    made = []
    mname = next((r["metric_name"] for r in rows if r["metric_name"]), "metric")
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for r in rows:
        points = [(m["kimg"], m["value"]) for m in r["metric"] if m.get("kimg") is not None]
        if not points:
            continue
        (line,) = ax.plot(*zip(*points), marker="o", label=r["name"])
        _shade_sparse(ax, r["stats"], line.get_color(), f"{r['name']}: sparse phase")
    ax.set_xlabel("kimg (real images shown to D)")
    ax.set_ylabel(mname)
    ax.set_title("quality vs real images shown" + (" (lower is better)" if mname.startswith(("fid", "kid")) else ""))
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    fig.tight_layout()
    made.append(out / "metric_vs_kimg.png")
    fig.savefig(made[-1], dpi=120)
    plt.close(fig)

    # the papers' Figure 1 view: final quality against the training compute that bought it
    fig, ax = plt.subplots(figsize=(7.5, 4))
    plotted = False
    by_name = {r["name"]: r for r in rows}
    for name, (flops, points) in quality_vs_flops(rows).items():
        r = by_name[name]
        (line,) = ax.plot(flops, [v for _, v in points], lw=1, alpha=0.4)
        ax.scatter([flops[-1]], [points[-1][1]], s=60, color=line.get_color(), zorder=3,
                   label=f"{r['name']}{' (dense count)' if r.get('flops_note') else ''}")
        ax.annotate(r["name"], (flops[-1], points[-1][1]), textcoords="offset points", xytext=(6, 4), fontsize=8)
        plotted = True
    if plotted:
        ax.set_xlabel("training FLOPs (forward + backward, G and D)")
        ax.set_ylabel(mname)
        ax.set_title(f"final {mname} vs training FLOPs (dots; lines: the evaluations along each run)"
                     + (", lower-left is better" if mname.startswith(("fid", "kid")) else ""), fontsize=9)
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
        fig.tight_layout()
        made.append(out / "metric_vs_flops.png")
        fig.savefig(made[-1], dpi=120)
    plt.close(fig)

    panels = [(r, net, keys) for r in rows for net, keys in kept_series(r["stats"]).items()]
    if panels:
        fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.8 * len(panels)), squeeze=False)
        for ax, (r, net, keys) in zip(axes[:, 0], panels):
            rows_k = [s for s in r["stats"] if s.get("progress/kimg") is not None]
            kimg = [s["progress/kimg"] for s in rows_k]
            _shade_sparse(ax, r["stats"], "grey", "sparse phase")
            for k in keys:  # a row's value holds from its step to the next row's: drawn as steps
                ax.plot(kimg, [s.get(k) for s in rows_k], drawstyle="steps-post", lw=1,
                        label=k.split("/kept/", 1)[1])
            ax.set_title(f"{r['name']}: {net}, kept fraction per layer", fontsize=9)
            ax.set_xlabel("kimg")
            ax.set_ylim(0, 1.05)
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=6,
                      ncol=1 if len(keys) <= 12 else 2, frameon=False)
        fig.tight_layout()
        made.append(out / "kept_fraction.png")
        fig.savefig(made[-1], dpi=120)
        plt.close(fig)
    return made


def report(dirs: dict[str, Path], out: Path, metric: str | None = None, title: str = "Comparison",
           preamble: str = "", judge=None) -> str:
    """Write comparison.md and the PNGs into `out`. judge(grid_png) -> share or None, when given, fills the
    "near a real digit" column from each run's last sample grid (bench/judge.py)."""
    rows = [summarize(n, d, metric) for n, d in dirs.items()]
    if judge is not None:
        for r in rows:
            grid = last_grid(r["dir"])
            try:
                r["judge"] = judge(grid) if grid is not None else None
            except (OSError, ValueError) as error:  # the trained runs' report is still written; the cell says –
                print(f"[compare] {r['name']}: no judge value for {grid}: {error}", file=sys.stderr, flush=True)
                r["judge"] = None
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
    r = sub.add_parser("run", help="train the variants, then write the report",
                       description="Train each variant (same flags after `--`), then write comparison.md and the "
                                   "plots into --out. Flags after `--` go to every variant's train.py.")
    r.add_argument("--vendor", choices=sorted(VENDORS), required=True, help="which vendor tree to train")
    r.add_argument("--out", required=True,
                   help="output folder: one run folder per variant, the patched copy under work/, the report")
    r.add_argument("--variants", default="baseline,regan,rggan",
                   help="comma-separated variants: `baseline` (the unmodified tree), any registered method name "
                        "(the patched copy with --sparse NAME: regan, rggan, ticket, static, set, rigl, ...), or "
                        "`name:flags` for a variant with its own flags (default: baseline,regan,rggan)")
    r.add_argument("--metric", default=None,
                   help="the metric of the table and plots (default: the run's fid* metric, else its first "
                        "metric-<name>.jsonl other than confident_digits)")
    p = sub.add_parser("report", help="write the report from existing run folders",
                       description="Write comparison.md and the plots into --out from existing run folders.")
    p.add_argument("--out", required=True, help="folder for comparison.md and the plots")
    p.add_argument("--metric", default=None,
                   help="the metric of the table and plots (default: the run's fid* metric, else its first "
                        "metric-<name>.jsonl other than confident_digits)")
    p.add_argument("runs", nargs="+", help="name=run_dir, one per run (a StyleGAN2-ADA / FastGAN output folder "
                                           "is searched for its stats.jsonl)")
    args = ap.parse_args(argv)
    # absolute: the training subprocesses run in the vendor tree's folder, not in the caller's
    out = Path(args.out).resolve()
    if args.cmd == "run":
        error = variant_error(args.variants.split(","))
        if error:
            ap.error(error)
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
