"""GAN tickets (Chen et al. 2021) on any patched vendor: iterative magnitude pruning with rewinding.

    python bench/tickets.py --vendor sngan --out runs/tickets --targets 0.2,0.46 -- <train.py flags>

Round 0 trains G densely (`--sparse ticket` without a file: all-ones mask; the run records G's initial
values). Each later round cuts 20 % (--rate) of the still-unpruned G weights by the magnitude they reached in
the previous round, rewinds every G parameter to its saved initial value and retrains with that fixed mask
(`--sparse ticket --ticket round<r>.ticket.pt`). Rounds continue until the sparsest target is reached
(20 %: 1 round, 46 %: 3 rounds, 48.8 % pruned). A ticket's cost is that of all rounds that produced it,
round 0 included: #real images and training FLOPs are summed over those rounds (from each run's
stats.jsonl, i.e. what the controller counted). A ticket's quality is the final value of --metric (default:
the run's fid* metric, as bench/compare.py picks it) of the round trained with it. Writes tickets.json and
tickets.md into --out.
The flags after `--` go to the vendor's patched train.py unchanged (same seed every round).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402
import run_readers  # noqa: E402

sys.path.insert(0, str(compare.ROOT))
from sparse_core import tickets  # noqa: E402


def _last_stats(run_dir: Path) -> dict:
    rows = run_readers.read_stats(compare.find_run_dir(run_dir))
    if not rows:
        raise SystemExit(f"[tickets] {run_dir}: stats.jsonl is empty")
    return rows[-1]


def _find_ticket(run_dir: Path) -> Path:
    found = sorted(run_dir.rglob("ticket.pt"))
    if not found:
        raise SystemExit(f"[tickets] {run_dir}: the run wrote no ticket.pt (is the tree patched?)")
    return found[-1]


def round_quality(run_dir: Path, metric: str | None) -> dict:
    """{"metric": name, "final_metric": last logged value or None} of one round's run folder."""
    s = compare.summarize(run_dir.name, run_dir, metric)
    if metric and not s["metric"]:
        raise SystemExit(f"[tickets] {run_dir}: --metric {metric}: the run logged no metric-{metric}.jsonl "
                         f"(pass the train.py flags that evaluate it, or leave --metric out)")
    return {"metric": s["metric_name"], "final_metric": s["final"]}


def summary(vendor: str, rate: float, train_flags: list[str], per_round: list[dict], targets: list[float],
            rounds: list[int], metric: str | None) -> tuple[list[dict], list[str]]:
    """One row per target (costs summed over the rounds that produced the ticket, quality of the round trained
    with it) and the lines of tickets.md."""
    rows = []
    for t, n in zip(targets, rounds):
        used = per_round[:n + 1]
        rows.append({"target": t, "rounds": n, "sparsity_G": used[-1]["sparsity_G"], "run": f"round{n}",
                     "real_images_total": sum(u["real_images"] for u in used),
                     "flops_total": sum(u["flops"] for u in used),
                     "metric": used[-1]["metric"], "final_metric": used[-1]["final_metric"]})
    mname = next((u["metric"] for u in per_round if u["metric"]), metric or "metric")
    lines = [f"# GAN tickets on {vendor} (IMP, {rate:.0%} of remaining G weights per round, rewind to init)",
             "", f"train.py flags: `{' '.join(shlex.quote(f) for f in train_flags)}`", "",
             f"| target | rounds | G sparsity | final {mname} (its round) | #RI (all rounds) "
             "| training FLOPs (all rounds) | model |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        quality = "–" if row["final_metric"] is None else f"{row['final_metric']:.3f}"
        lines.append(f"| {row['target']:.0%} | {row['rounds']} | {row['sparsity_G']:.1%} | {quality} | "
                     f"{row['real_images_total']:,} | {row['flops_total']:.3e} | {row['run']}/G_sparse.pt |")
    lines += ["", f"Quality: the final {mname} of the round trained with the ticket (round 0: the dense run; "
              "– when the run logged no metric); lower is better for FID / KID."]
    return rows, lines


def run_round(script: Path, vendor: str, run_dir: Path, flags: list[str], env: dict) -> None:
    cmd = [sys.executable, str(script), *flags, compare.VENDORS[vendor]["outflag"], str(run_dir)]
    print(f"[tickets] {run_dir.name}: {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=script.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    for line in proc.stdout:
        print(f"  [{run_dir.name}] {line}", end="", flush=True)
    if proc.wait() != 0:
        raise SystemExit(f"[tickets] {run_dir.name} failed with exit code {proc.returncode}")
    print(f"[tickets] {run_dir.name} done in {time.time() - t0:.0f} s", flush=True)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    train_flags = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vendor", choices=sorted(compare.VENDORS), required=True, help="which patched vendor tree trains")
    ap.add_argument("--out", required=True, help="output folder (round folders, tickets, tickets.json/.md)")
    ap.add_argument("--targets", default="0.2,0.46", help="comma-separated G sparsities to report (default 0.2,0.46)")
    ap.add_argument("--rate", type=float, default=0.2, help="fraction of the remaining weights pruned per round")
    ap.add_argument("--scope", choices=("layer", "global"), default="layer",
                    help="prune the same fraction of every tensor (layer) or by one global magnitude cut")
    ap.add_argument("--tree", default=None, help="an already patched vendor tree (default: patch a copy)")
    ap.add_argument("--metric", default=None,
                    help="the quality column: final value of this metric-<name>.jsonl of each round (default: the "
                         "run's fid* metric, else its first other than confident_digits)")
    args = ap.parse_args(own)
    try:
        targets = sorted({float(t) for t in args.targets.split(",") if t})
        rounds = [tickets.rounds_for(t, args.rate) for t in targets]
    except (ValueError, tickets.ConfigError) as e:
        ap.error(f"--targets / --rate: {e}")
    if not targets:
        ap.error("--targets: give at least one sparsity")
    if any(f in train_flags for f in ("--sparse", "--ticket", compare.VENDORS[args.vendor]["outflag"])):
        ap.error("the train.py flags after -- must not set --sparse, --ticket or the output folder")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    tree = Path(args.tree).resolve() if args.tree else compare.patched_tree(args.vendor, out)
    script = tree / compare.VENDORS[args.vendor]["script"]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))

    per_round = []
    ticket_file = None
    for r in range(max(rounds) + 1):
        run_dir = out / f"round{r}"
        flags = [*train_flags, "--sparse", "ticket"] + (["--ticket", str(ticket_file)] if ticket_file else [])
        run_round(script, args.vendor, run_dir, flags, env)
        last = _last_stats(run_dir)
        finished = tickets.read_ticket(str(_find_ticket(run_dir)))
        per_round.append({"round": r, "sparsity_G": tickets.ticket_sparsity(finished["masks"]),
                          "real_images": int(last["progress/real_images"]),
                          "flops": float(last["flops/train_total"]),
                          "flops_dense_equiv": float(last["flops/train_dense_equiv"]),
                          "reported_sparsity_G": float(last.get("sparse/G/sparsity", 0.0)),
                          **round_quality(run_dir, args.metric)})
        if r < max(rounds):
            nxt = tickets.next_ticket(finished, args.rate, args.scope)
            ticket_file = out / f"round{r + 1}.ticket.pt"
            tickets.write_ticket(str(ticket_file), init=nxt["init"], masks=nxt["masks"])

    rows, lines = summary(args.vendor, args.rate, train_flags, per_round, targets, rounds, args.metric)
    result = {"vendor": args.vendor, "rate": args.rate, "scope": args.scope, "train_flags": train_flags,
              "rounds": per_round, "tickets": rows}
    (out / "tickets.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "tickets.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
