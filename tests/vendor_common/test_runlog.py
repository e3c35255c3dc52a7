"""vendor.common.runlog: stats lines, atomic snapshots, safe loading, image grids, progress lines."""
import json
import os
import re

import numpy as np
import psutil
import pytest
import torch
from PIL import Image

from vendor.common.runlog import (ProgressLine, SnapshotError, StatsWriter, format_duration,
                                  load_snapshot, max_rss_gb, read_jsonl, save_image_grid,
                                  save_snapshot)


def test_stats_writer_appends_one_json_object_per_line(tmp_path):
    writer = StatsWriter(str(tmp_path / "run"))
    writer.write({"progress/kimg": 1.5, "Loss/G": torch.tensor(0.25), "n": np.int64(3)})
    writer.write({"progress/kimg": 3.0, "bad": float("nan"), "vec": torch.tensor([1.0, 2.0])})
    lines = (tmp_path / "run" / "stats.jsonl").read_text().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first == {"progress/kimg": 1.5, "Loss/G": 0.25, "n": 3}
    assert second == {"progress/kimg": 3.0, "bad": None, "vec": [1.0, 2.0]}
    assert read_jsonl(writer.path) == [first, second]


def test_stats_writer_rejects_objects(tmp_path):
    writer = StatsWriter(str(tmp_path))
    with pytest.raises(TypeError, match="object"):
        writer.write({"x": object()})


def test_snapshot_round_trip(tmp_path):
    path = str(tmp_path / "snap.pt")
    state = {"net": {"w": torch.arange(6.0).view(2, 3)}, "step": 7, "betas": (0.0, 0.9),
             "rng": torch.get_rng_state()}
    save_snapshot(state, path)
    loaded = load_snapshot(path)
    assert torch.equal(loaded["net"]["w"], state["net"]["w"])
    assert loaded["step"] == 7 and tuple(loaded["betas"]) == (0.0, 0.9)
    assert torch.equal(loaded["rng"], state["rng"])
    assert os.listdir(tmp_path) == ["snap.pt"]  # no temporary file left behind


def test_failed_save_leaves_previous_file_and_no_temporaries(tmp_path):
    path = tmp_path / "last.pt"
    save_snapshot({"step": 1}, str(path))
    before = path.read_bytes()
    with pytest.raises(Exception):
        save_snapshot({"step": 2, "fn": lambda: 0}, str(path))  # lambdas cannot be pickled
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["last.pt"]
    with pytest.raises(Exception):
        save_snapshot({"fn": lambda: 0}, str(tmp_path / "new.pt"))
    assert os.listdir(tmp_path) == ["last.pt"]  # a failed first save creates nothing


def test_corrupt_and_missing_snapshots_raise_snapshot_error(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00\x01 not a checkpoint")
    with pytest.raises(SnapshotError, match="garbage.pt"):
        load_snapshot(str(garbage))
    save_snapshot({"w": torch.ones(1000)}, str(tmp_path / "ok.pt"))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((tmp_path / "ok.pt").read_bytes()[:300])
    with pytest.raises(SnapshotError, match="truncated.pt"):
        load_snapshot(str(truncated))
    with pytest.raises(SnapshotError, match="absent.pt"):
        load_snapshot(str(tmp_path / "absent.pt"))


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_loading_never_runs_code_from_the_file(tmp_path):
    marker = str(tmp_path / "pwned")
    path = tmp_path / "evil.pt"
    torch.save({"x": _Exploit(marker)}, str(path))  # plain torch.save: not through our writer
    with pytest.raises(SnapshotError, match="evil.pt"):
        load_snapshot(str(path))
    assert not os.path.exists(marker)


def test_image_grid_layout_and_value_mapping(tmp_path):
    # four 2x2 RGB images with constant values; grid of 3 columns x 2 rows (two cells empty)
    values = [-1.0, 0.0, 1.0, 0.5]
    images = torch.stack([torch.full((3, 2, 2), v) for v in values])
    path = str(tmp_path / "grid.png")
    save_image_grid(images, path, grid=(3, 2))
    with Image.open(path) as image:
        assert image.mode == "RGB" and image.size == (6, 4)  # width = 3 cols * 2, height = 2 rows * 2
        pixels = np.asarray(image)
    # upstream mapping: x * 127.5 + 128, clamped to [0, 255], truncated
    expected = [0, 128, 255, int(0.5 * 127.5 + 128)]
    cells = [(0, 0), (0, 1), (0, 2), (1, 0)]
    for (row, col), value in zip(cells, expected):
        assert (pixels[row * 2:(row + 1) * 2, col * 2:(col + 1) * 2] == value).all()
    assert (pixels[2:4, 2:6] == 0).all()  # empty cells stay black


def test_image_grid_greyscale_default_grid_and_errors(tmp_path):
    images = np.zeros((5, 1, 4, 4), dtype=np.float32)
    path = str(tmp_path / "g.png")
    save_image_grid(images, path)
    with Image.open(path) as image:
        assert image.mode == "L" and image.size == (12, 8)  # ceil(sqrt 5) = 3 columns, 2 rows
    with pytest.raises(ValueError, match="cannot hold"):
        save_image_grid(images, str(tmp_path / "small.png"), grid=(2, 2))
    with pytest.raises(ValueError, match="1|3"):
        save_image_grid(np.zeros((2, 2, 4, 4)), str(tmp_path / "c2.png"))
    assert sorted(os.listdir(tmp_path)) == ["g.png"]


@pytest.mark.parametrize("seconds,text", [(0, "0s"), (59.4, "59s"), (62, "1m 02s"),
                                          (3723, "1h 02m 03s"), (2 * 86400 + 3 * 3600 + 240, "2d 03h 04m")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_progress_line_with_a_fake_clock():
    now = [1000.0]
    progress = ProgressLine(clock=lambda: now[0])
    now[0] += 41.8
    progress.tick(2, 6.4)
    now[0] += 20.1
    line = progress.tick(3, 12.8, loss_G=0.1234567, phase="sparse")
    # time since start 61.9 s; this tick 20.1 s over 6.4 kimg
    assert progress.total_sec == pytest.approx(61.9)
    assert progress.sec_per_kimg == pytest.approx(20.1 / 6.4)
    assert re.fullmatch(r"tick 3  kimg 12\.8  time 1m 02s  sec/tick 20\.1  sec/kimg 3\.14  "
                        r"maxrss \d+\.\d GiB  loss_G=0\.1235  phase=sparse", line), line


def test_progress_line_after_resume_counts_previous_time():
    now = [0.0]
    progress = ProgressLine(elapsed_before=100.0, clock=lambda: now[0])
    progress.start_from(10.0)
    now[0] = 5.0
    progress.tick(4, 12.0)
    assert progress.total_sec == pytest.approx(105.0)
    assert progress.sec_per_kimg == pytest.approx(5.0 / 2.0)


def test_max_rss_is_at_least_current_rss():
    current = psutil.Process().memory_info().rss / 2 ** 30
    assert max_rss_gb() >= current * 0.99 > 0


def test_stale_temporaries_of_killed_writes_are_removed_and_nothing_else(tmp_path):
    from vendor.common.runlog import remove_stale_tmp, save_snapshot
    import tempfile

    # what a write killed between mkstemp and os.replace leaves: the same name atomic_write would use
    handle, stale = tempfile.mkstemp(prefix=".last.pt.", suffix=".tmp", dir=tmp_path)
    os.close(handle)
    (tmp_path / ".tmp-abcd1234.pt").write_bytes(b"x")   # sparse_core's export temporary
    keep = [".hidden", "notes.tmp", ".last.pt.tmp", "last.pt"]
    for name in keep:
        (tmp_path / name).write_bytes(b"keep")
    save_snapshot({"a": torch.zeros(1)}, str(tmp_path / "snap.pt"))
    removed = remove_stale_tmp(str(tmp_path))
    assert sorted(os.path.basename(p) for p in removed) == sorted([os.path.basename(stale), ".tmp-abcd1234.pt"])
    assert sorted(os.listdir(tmp_path)) == sorted(keep + ["snap.pt"])


def test_prepare_run_dir_fresh_refuses_old_logs_and_resume_drops_later_rows(tmp_path):
    from vendor.common.runlog import RunDirError, append_jsonl, prepare_run_dir, read_jsonl

    run = tmp_path / "run"
    prepare_run_dir(str(run))  # a new folder is fine
    for step in (1, 2, 3, 4):
        append_jsonl(str(run / "stats.jsonl"), {"progress/step": step})
        append_jsonl(str(run / "metric-fid.jsonl"), {"value": 1.0, "step": step})
    with open(run / "stats.jsonl", "a") as f:
        f.write('{"progress/st')  # a row torn by a kill
    with pytest.raises(RunDirError, match="already holds a run"):
        prepare_run_dir(str(run))
    prepare_run_dir(str(run), resume_step=2)
    assert [r["progress/step"] for r in read_jsonl(str(run / "stats.jsonl"))] == [1, 2]
    assert [r["step"] for r in read_jsonl(str(run / "metric-fid.jsonl"))] == [1, 2]
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="not a folder"):
        prepare_run_dir(str(tmp_path / "file"))


def test_progress_line_eta_from_this_process_rate():
    now = [0.0]
    progress = ProgressLine(elapsed_before=50.0, clock=lambda: now[0], total=100)  # 100 steps in all
    progress.start_from(1.0, done=20)      # resumed at step 20
    now[0] = 30.0
    line = progress.tick(1, 1.5, done=30)  # 10 steps in 30 s: 70 steps left take 210 s
    assert progress.eta_sec == pytest.approx(210.0)
    assert "  eta 3m 30s  " in line and line.startswith("tick 1  kimg 1.5  time 1m 20s  eta 3m 30s  sec/tick")
    now[0] = 90.0
    progress.tick(2, 2.0, done=100)
    assert progress.eta_sec == 0.0
    fresh = ProgressLine(clock=lambda: 0.0, total=4.0)  # kimg by default; nothing done yet: unknown
    assert "  eta ?  " in fresh.tick(0, 0.0)


def test_flags_record_appends_one_line_per_start(tmp_path):
    import argparse

    from vendor.common.runlog import read_jsonl, record_flags

    args = argparse.Namespace(lr=2e-4, betas=[0.0, 0.9], device="cpu", where=tmp_path, _internal={1})
    record_flags(str(tmp_path), args)
    record_flags(str(tmp_path), argparse.Namespace(lr=1e-4))
    rows = read_jsonl(str(tmp_path / "flags.jsonl"))
    assert [r["flags"] for r in rows] == [{"betas": [0.0, 0.9], "device": "cpu", "lr": 2e-4, "where": str(tmp_path)},
                                          {"lr": 1e-4}]
