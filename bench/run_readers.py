"""Read a run folder's stats.jsonl and metric-*.jsonl into one plain shape, whichever vendor wrote them.

    read_stats(run_dir)   -> [ {key: number or string}, ... ]   one flat row per tick
    read_metrics(run_dir) -> {metric name: [ {"kimg", "value", ...}, ... ]}

Vendors write two stats layouts: flat values (SNGAN and the other trees) and StyleGAN2-ADA's upstream
`{num, mean, std}` per key (a flat row keeps the mean). Metric lines are `{"metric", "value", "kimg", ...}`
(SNGAN and the other trees) or upstream StyleGAN2-ADA's `{"metric", "results": {key: value}, "snapshot_pkl",
...}` (the first result is the value; `kimg` when the line carries it, else the snapshot's kimg).
`run_dir` is the folder holding stats.jsonl (StyleGAN2-ADA nests it one level down; see compare.find_run_dir).
"""
from __future__ import annotations

import json
import re
from pathlib import Path


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _flat(value):
    # upstream StyleGAN2-ADA: {"num": n, "mean": m, "std": s} per key
    if isinstance(value, dict) and "mean" in value and set(value) <= {"num", "mean", "std"}:
        return value["mean"]
    return value


def read_stats(run_dir) -> list[dict]:
    return [{k: _flat(v) for k, v in row.items()} for row in _read_jsonl(Path(run_dir) / "stats.jsonl")]


def _metric_row(line: dict) -> dict:
    if "value" in line:
        return dict(line)
    results = line.get("results") or {}
    row = dict(line, value=next(iter(results.values()), None))
    if "kimg" not in row:
        match = re.search(r"(\d+)", str(line.get("snapshot_pkl") or ""))
        row["kimg"] = float(match.group(1)) if match else None
    return row


def read_metrics(run_dir) -> dict[str, list[dict]]:
    out = {}
    for path in sorted(Path(run_dir).glob("metric-*.jsonl")):
        out[path.stem[len("metric-"):]] = [_metric_row(line) for line in _read_jsonl(path)]
    return out
