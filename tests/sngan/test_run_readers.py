"""bench/run_readers.py: SNGAN's and StyleGAN2-ADA's stats / metric formats read into one shape."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from run_readers import read_metrics, read_stats  # noqa: E402


def _write(path, rows, tail=""):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)


def test_sngan_format(tmp_path):
    _write(tmp_path / "stats.jsonl", [{"progress/kimg": 0.5, "Loss/G": 1.0}, {"progress/kimg": 1.0, "Loss/G": 0.5}])
    _write(tmp_path / "metric-fid_digits.jsonl",
           [{"metric": "fid_digits", "value": 9.0, "step": 10, "kimg": 0.5}], tail='{"metric": "fid_di')
    assert [r["progress/kimg"] for r in read_stats(tmp_path)] == [0.5, 1.0]
    # the torn last line (a killed write) is skipped, the complete one kept
    assert read_metrics(tmp_path) == {"fid_digits": [{"metric": "fid_digits", "value": 9.0, "step": 10, "kimg": 0.5}]}


def test_stylegan2_format(tmp_path):
    _write(tmp_path / "stats.jsonl", [
        {"Progress/kimg": {"num": 1, "mean": 4.0, "std": 0.0}, "Loss/G/loss": {"num": 8, "mean": 0.7, "std": 0.1},
         "Metrics/kid_digits": 0.25, "timestamp": 1.0}])
    _write(tmp_path / "metric-fid_digits.jsonl", [
        {"results": {"fid_digits": 12.5}, "metric": "fid_digits", "total_time": 1.0,
         "snapshot_pkl": "network-snapshot-000004.pt", "timestamp": 2.0}])
    _write(tmp_path / "metric-kid_digits.jsonl", [
        {"results": {"kid_digits": 0.25}, "metric": "kid_digits", "snapshot_pkl": None}])
    stats = read_stats(tmp_path)
    assert stats[0]["Loss/G/loss"] == 0.7 and stats[0]["Loss/G/loss/std"] == 0.1 and stats[0]["Loss/G/loss/num"] == 8
    assert stats[0]["progress/kimg"] == 4.0 == stats[0]["Progress/kimg"]
    metrics = read_metrics(tmp_path)
    assert metrics["fid_digits"][0]["value"] == 12.5 and metrics["fid_digits"][0]["kimg"] == 4.0
    # a smoke run's snapshot name carries the images: kimg 0.016, not 16
    _write(tmp_path / "metric-fid_digits.jsonl", [
        {"results": {"fid_digits": 12.5}, "metric": "fid_digits", "snapshot_pkl": "network-snapshot-000000.016.pt"}])
    assert read_metrics(tmp_path)["fid_digits"][0]["kimg"] == 0.016
    # no snapshot name: kimg from the stats row that logged the same value
    assert metrics["kid_digits"][0]["value"] == 0.25 and metrics["kid_digits"][0]["kimg"] == 4.0
