"""bench/tickets.py's tickets.md: the quality column is the final metric of the round trained with each ticket
(synthetic round folders; the training rounds themselves are tested in tests/sparse_core/test_ticket_cli.py)."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import tickets as driver  # noqa: E402


def _round(d: Path, values):
    d.mkdir(parents=True)
    (d / "stats.jsonl").write_text(json.dumps({"progress/kimg": 1.0}) + "\n")
    (d / "metric-fid_digits.jsonl").write_text(
        "".join(json.dumps({"metric": "fid_digits", "value": v, "kimg": i + 1.0}) + "\n" for i, v in enumerate(values)))


def test_tickets_md_has_the_final_metric_of_each_tickets_round(tmp_path):
    finals = {0: 30.0, 1: 21.5, 2: 19.25, 3: 24.75}
    per_round = []
    for r, final in finals.items():
        _round(tmp_path / f"round{r}", [final + 10.0, final - 5.0, final])  # the final value, not the best
        per_round.append({"round": r, "sparsity_G": 1 - 0.8 ** r, "real_images": 100, "flops": 1e9,
                          **driver.round_quality(tmp_path / f"round{r}", None)})
    rows, lines = driver.summary("sngan", 0.2, ["--seed", "0"], per_round, [0.2, 0.46], [1, 3], None)
    assert [r["final_metric"] for r in rows] == [finals[1], finals[3]]
    table = [line for line in lines if line.startswith("| ")]
    head = [c.strip() for c in table[0].strip("|").split("|")]
    col = head.index("final fid_digits (its round)")
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table[1:]]
    assert [float(c[col]) for c in cells] == pytest.approx([finals[1], finals[3]], abs=5e-4)
    assert [c[head.index("#RI (all rounds)")] for c in cells] == ["200", "400"]
    # a --metric the rounds did not log is refused, naming it
    with pytest.raises(SystemExit, match="--metric kid"):
        driver.round_quality(tmp_path / "round0", "kid")
