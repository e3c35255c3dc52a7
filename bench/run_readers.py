"""Read a run folder's stats and metrics into one shape, whatever vendor wrote them.

    read_stats(run_dir)   -> [flat dict per tick]                 (stats.jsonl)
    read_metrics(run_dir) -> {name: [{"kimg", "value", ...}]}      (metric-<name>.jsonl)

Formats understood:
- SNGAN (and the other vendors that use vendor.common.runlog): flat stats rows with lower-case
  `progress/kimg`, `timing/total_sec`; metric lines `{"metric", "value", "step", "kimg"}`.
- StyleGAN2-ADA: stats values may be upstream's `{"num", "mean", "std"}` records (flattened to the
  mean, with `<key>/num` and `<key>/std` kept next to it) and upstream's capitalised `Progress/...`,
  `Timing/...`, `Resources/...` names (also given under the lower-case names the reports use);
  metric lines `{"results": {key: value, ...}, "metric", "snapshot_pkl", ...}` without kimg, which
  comes from the snapshot name (`network-snapshot-<kimg>.*`) or, failing that, from the stats row
  that logged `Metrics/<key>`.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

_SNAPSHOT_KIMG = re.compile(r"(\d+(?:\.\d+)?)(?=\.[A-Za-z]+$)")  # 000012.pt, or 000000.016.pt (kimg.images)


def read_jsonl(path: Path) -> list[dict]:
    """Every JSON object line of `path` ([] when it does not exist); a torn last line is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # a write cut short by a kill: the rows before it still count
                break
            raise ValueError(f"{path}: line {i + 1} is not JSON")
    return rows


def _flatten_row(row: dict) -> dict:
    flat = {}
    for key, value in row.items():
        if isinstance(value, dict) and "mean" in value:
            flat[key] = value["mean"]
            for part in ("num", "std"):
                if part in value:
                    flat[f"{key}/{part}"] = value[part]
        else:
            flat[key] = value
    # upstream StyleGAN2-ADA capitalises the section names; the reports read the lower-case ones
    for key in list(flat):
        head, sep, rest = key.partition("/")
        if sep and head in ("Progress", "Timing", "Resources"):
            flat.setdefault(f"{head.lower()}/{rest}", flat[key])
    return flat


def is_derived(key: str, row: dict) -> bool:
    """True for the `<key>/num` and `<key>/std` entries _flatten_row adds next to a flattened `<key>` (they are
    sample counts and spreads, not series of their own)."""
    head, sep, tail = key.rpartition("/")
    return bool(sep) and tail in ("num", "std") and head in row


def series_keys(row: dict, prefix: str) -> list[str]:
    """The keys of `row` under `prefix` that are series of their own (no `/num` or `/std` companions), sorted."""
    return sorted(k for k in row if k.startswith(prefix) and not is_derived(k, row))


def read_stats(run_dir) -> list[dict]:
    """One flat dict per stats.jsonl row of `run_dir`."""
    return [_flatten_row(row) for row in read_jsonl(Path(run_dir) / "stats.jsonl")]


def _kimg_from_snapshot(name) -> float | None:
    if not name:
        return None
    match = _SNAPSHOT_KIMG.search(str(name))
    return float(match.group(1)) if match else None


def _metric_rows(name: str, lines: list[dict], stats: list[dict]) -> list[dict]:
    rows = []
    for line in lines:
        if "value" in line:  # runlog format: already one value with its kimg
            rows.append(dict(line))
            continue
        results = line.get("results") or {}
        if not results:
            continue
        key = name if name in results else next(iter(results))
        kimg = line.get("kimg")
        if kimg is None:
            kimg = _kimg_from_snapshot(line.get("snapshot_pkl"))
        if kimg is None:  # no snapshot name: the stats row that logged this value says when
            kimg = next((s.get("progress/kimg") for s in stats
                         if s.get(f"Metrics/{key}") == results[key]), None)
        row = {k: v for k, v in line.items() if k != "results"}
        row.update({"metric": name, "value": results[key], "kimg": kimg, "results": dict(results)})
        rows.append(row)
    return rows


def read_metrics(run_dir) -> dict[str, list[dict]]:
    """{metric name: [{"kimg", "value", ...} in file order]} for every metric-<name>.jsonl."""
    run_dir = Path(run_dir)
    stats = None
    out = {}
    for path in sorted(run_dir.glob("metric-*.jsonl")):
        name = path.stem[len("metric-"):]
        lines = read_jsonl(path)
        if stats is None and any("value" not in line for line in lines):
            stats = read_stats(run_dir)
        out[name] = _metric_rows(name, lines, stats or [])
    return out
