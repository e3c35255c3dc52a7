"""StyleGAN2-ADA snapshot and grid names never collide (issue 21, item 3): upstream's whole-kimg names where two files
of a run can never share a kimg, kimg with the images as decimals otherwise; the names sort in training order.
The reference is a hand simulation of the loop's tick and snapshot points (tick 0 is one batch, a tick ends at the
first batch at or past kimg_per_tick, a file every `snap` ticks and at the end), not the loop's own code."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sg2_helpers  # noqa: E402,F401  (puts the tree on sys.path)
from training.training_loop import SNAPSHOT_FORMAT, progress_label, whole_kimg_names  # noqa: E402
from vendor.common.runlog import format_kimg  # noqa: E402


def snapshot_points(batch, total_kimg, kimg_per_tick, snap):
    """cur_nimg of every snapshot a fresh run writes, by hand."""
    nimg, tick, tick_start, points = 0, 0, 0, []
    while True:
        nimg += batch
        done = nimg >= total_kimg * 1000
        if not done and tick != 0 and nimg < tick_start + kimg_per_tick * 1000:
            continue
        if done or tick % snap == 0:
            points.append(nimg)
        if done:
            return points
        tick, tick_start = tick + 1, nimg


@pytest.mark.parametrize("batch,total,tick,snap", [
    (8, 1, 0.2, 5),        # the README's CPU smoke run: whole kimg names are unique
    (4, 0.012, 0.004, 2),  # fractional --kimg
    (4, 0.016, 0.004, 1),  # a snapshot every tick of 4 images
    (32, 3, 0.25, 2),      # --snap x --tick = 0.5 kimg
    (64, 10, 4, 50),       # upstream's defaults (tick 4 kimg): tick 0 and the end
    (12, 2, 0.1, 10),      # ticks that do not end on whole kimg
])
def test_names_are_unique_and_sort_in_training_order(batch, total, tick, snap):
    points = snapshot_points(batch, total, tick, snap)
    whole = whole_kimg_names(total, tick, snap)
    names = [SNAPSHOT_FORMAT.format(kimg=progress_label(n, whole)) for n in points]
    assert len(set(names)) == len(names), names
    assert sorted(names) == names
    if whole:  # upstream's form
        assert names[-1] == f"network-snapshot-{points[-1] // 1000:06d}.pt"
    else:  # the label is the exact image count
        assert [float(name[len("network-snapshot-"):-len(".pt")]) * 1000 for name in names] == \
            pytest.approx(points)


def test_the_rule_and_the_labels():
    assert whole_kimg_names(1, 0.2, 5) and whole_kimg_names(100, 4, 50)
    assert not whole_kimg_names(0.5, 4, 50)      # fractional --kimg
    assert not whole_kimg_names(2, 0.2, 4)       # 0.8 kimg between files
    assert progress_label(12345, True) == "000012" and progress_label(12345, False) == "000012.345"
    assert progress_label(16, False) == "000000.016"


@pytest.mark.parametrize("kimg,text", [(12.8, "12.8"), (0.0, "0.0"), (0.016, "0.016"), (1.5, "1.5"),
                                       (4.032, "4.032"), (100.0, "100.0")])
def test_kimg_is_printed_with_the_digits_it_needs(kimg, text):
    assert format_kimg(kimg) == text
