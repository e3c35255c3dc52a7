"""What bench/compare.py shows: the last trained grid, layer-only kept fractions, phase shading at the phase-change
steps, time per kimg after the first tick, FID vs FLOPs; all on synthetic run folders (no training)."""
import json
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import compare  # noqa: E402
from run_readers import read_stats  # noqa: E402


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _png(path, colour, size=8):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path)


def test_last_grid_is_the_highest_step_never_the_untrained_fakes_init(tmp_path):
    sg2 = tmp_path / "sg2"
    for name in ("fakes000000.png", "fakes000004.png", "fakes000012.png", "fakes000008.png"):
        _png(sg2 / name, "blue")
    _png(sg2 / "fakes_init.png", "red")        # written first upstream; by name it sorts last
    assert compare.last_grid(sg2).name == "fakes000012.png"
    short = tmp_path / "short"                 # a smoke run's names: kimg with the images as decimals
    for name in ("fakes000000.012.png", "fakes000000.004.png", "fakes000001.000.png", "fakes000000.100.png"):
        _png(short / name, "blue")
    assert compare.last_grid(short).name == "fakes000001.000.png"
    only_init = tmp_path / "init_only"
    _png(only_init / "fakes_init.png", "red")
    assert compare.last_grid(only_init) is None  # untrained samples are never shown as a run's result
    sn = tmp_path / "sn"
    for step in (9, 10, 100, 20):               # by number: 100 > 20 > 10 > 9 (by name "9" would win)
        _png(sn / f"samples-{step}.png", "blue")
    assert compare.last_grid(sn).name == "samples-100.png"
    fg = tmp_path / "fg"
    for name in ("200.png", "1000.png", "rec_5000.png", "300-extra.png"):
        _png(fg / "images" / name, "blue")
    assert compare.last_grid(fg).name == "1000.png"
    # the side-by-side picture is made of exactly those grids
    _png(sg2 / "fakes000012.png", "green")
    path = compare.side_by_side([{"name": "sg2", "dir": sg2}, {"name": "sn", "dir": sn}], tmp_path / "both.png")
    assert Image.open(path).getpixel((2, 16 + 2)) == (0, 128, 0)


def _regan_phase(iteration, warmup, interval):
    """Hand schedule (SPEC: dense warm-up, then sparse / dense blocks of `interval`), written out here."""
    if iteration < warmup:
        return "warmup"
    return ["sparse", "dense"][((iteration - warmup) // interval) % 2]


def test_shading_spans_are_the_phase_change_steps(tmp_path):
    # rows every 5 iterations (ticks) plus a row at every iteration where the phase changes; 16 images each
    warmup, interval, total = 7, 6, 40
    rows, previous = [], None
    for it in range(1, total + 1):
        phase = _regan_phase(it, warmup, interval)
        if it % 5 == 0 or phase != previous or it == total:
            rows.append({"progress/kimg": it * 16 / 1000, "sparse/phase": phase, "sparse/iteration": it,
                         "timing/total_sec": float(it)})
        previous = phase
    _jsonl(tmp_path / "stats.jsonl", rows)
    stats = read_stats(tmp_path)
    # independent: sparse from 7 to 13, 19 to 25, 31 to 37 (iterations), in kimg
    expected = [(a * 16 / 1000, b * 16 / 1000) for a, b in ((7, 13), (19, 25), (31, 37))]
    spans = compare.sparse_spans(stats)
    assert len(spans) == len(expected)
    assert [x for span in spans for x in span] == pytest.approx([x for span in expected for x in span])
    assert [p for _, p in compare.phase_changes(stats)] == ["warmup"] + ["sparse", "dense"] * 3
    # a run that ends in a sparse phase is shaded to its last row
    more = [{"progress/kimg": 0.7, "sparse/phase": "sparse"}, {"progress/kimg": 0.8, "sparse/phase": "sparse"}]
    assert compare.sparse_spans(stats + more)[-1] == pytest.approx((0.7, 0.8))


def test_kept_fraction_series_are_layers_only(tmp_path):
    record = lambda v: {"num": 4, "mean": v, "std": 0.0}  # noqa: E731  (StyleGAN2-ADA's stats format)
    rows = [{"Progress/kimg": record(k), "sparse/phase": "sparse", "sparse/G/sparsity": record(0.3),
             "sparse/G/kept/b4.conv1.weight": record(0.7), "sparse/G/kept/b8.conv0.weight": record(0.7),
             "sparse/D/kept/b32.fromrgb.weight": record(1.0)} for k in (1.0, 2.0)]
    _jsonl(tmp_path / "stats.jsonl", rows)
    stats = read_stats(tmp_path)
    assert "sparse/G/kept/b4.conv1.weight/num" in stats[-1]  # the flattened companions exist ...
    assert compare.kept_series(stats) == {       # ... and are not plotted as layers
        "G": ["sparse/G/kept/b4.conv1.weight", "sparse/G/kept/b8.conv0.weight"],
        "D": ["sparse/D/kept/b32.fromrgb.weight"]}


def _run(d: Path, name, seconds, kimg, flops=None, metric=(), phases=None):
    d.mkdir(parents=True)
    rows = []
    for i, (s, k) in enumerate(zip(seconds, kimg)):
        row = {"progress/kimg": k, "timing/total_sec": s}
        if flops:
            row.update({"flops/train_total": flops[0] * k, "flops/train_dense_equiv": flops[1] * k,
                        "sparse/phase": phases[i], "sparse/G/sparsity": 0.3, "sparse/G/kept/l1.weight": 0.7})
        rows.append(row)
    _jsonl(d / "stats.jsonl", rows)
    _jsonl(d / "metric-fid_digits.jsonl", [{"metric": "fid_digits", "value": v, "kimg": k} for k, v in metric])
    return d


def test_table_time_per_kimg_after_first_tick_and_fid_vs_flops(tmp_path):
    # the first tick is slow (cold start: 40 s for 1 kimg); then 10 s per kimg
    base = _run(tmp_path / "baseline", "baseline", [40.0, 50.0, 60.0], [1.0, 2.0, 3.0],
                metric=[(1.0, 30.0), (3.0, 12.0)])
    sparse = _run(tmp_path / "regan", "regan", [20.0, 35.0, 50.0], [1.0, 2.0, 3.0], flops=(6e9, 1e10),
                  metric=[(1.0, 31.0), (3.0, 14.0)], phases=["warmup", "sparse", "dense"])
    out = tmp_path / "report"
    text = compare.report({"baseline": base, "regan": sparse}, out, metric="fid_digits")
    head, *rows = [line for line in text.splitlines() if line.startswith("| ")]
    cols = [c.strip() for c in head.strip("|").split("|")]
    col = cols.index("s/kimg after 1st tick")
    cells = {r.split("|")[1].strip(): [c.strip() for c in r.strip("|").split("|")] for r in rows}
    assert float(cells["baseline"][col]) == pytest.approx((60 - 40) / (3 - 1))
    assert float(cells["regan"][col]) == pytest.approx((50 - 20) / (3 - 1))
    assert "first tick" in text  # the table says what the column leaves out
    # baseline FLOPs: the patched run's dense count per kimg (1e10) times its own kimg
    flops = cells["baseline"][cols.index("train FLOPs")]
    assert float(flops.split()[0]) == pytest.approx(3e10, rel=1e-3) and "dense count" in flops
    assert (out / "metric_vs_flops.png").stat().st_size > 0
    assert (out / "kept_fraction.png").stat().st_size > 0
    rows_ = [compare.summarize(n, d, "fid_digits") for n, d in (("baseline", base), ("regan", sparse))]
    compare.charge_dense_flops(rows_)
    assert compare.flops_at(rows_[0], [1.0, 3.0]) == pytest.approx([1e10, 3e10])
    assert compare.flops_at(rows_[1], [1.0, 2.5]) == pytest.approx([6e9, 1.5e10])


def test_any_registered_methods_side_by_side(tmp_path):
    # the dynamic-sparse-training methods are variants like Re-GAN: a row each in the table, a point each in
    # FID vs FLOPs (their phase is `sparse` throughout)
    runs = {"baseline": _run(tmp_path / "baseline", "baseline", [40.0, 50.0], [1.0, 2.0], metric=[(2.0, 20.0)])}
    for i, name in enumerate(("regan", "static", "set", "rigl")):
        runs[name] = _run(tmp_path / name, name, [20.0, 30.0], [1.0, 2.0], flops=(3e9 + i, 6e9 + i),
                          metric=[(2.0, 21.0 + i)], phases=["sparse", "sparse"])
    text = compare.report(runs, tmp_path / "report", metric="fid_digits")
    names = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")][1:]
    assert names == list(runs)
    rows = [compare.summarize(n, d, "fid_digits") for n, d in runs.items()]
    compare.charge_dense_flops(rows)
    points = compare.quality_vs_flops(rows)
    assert list(points) == list(runs)
    assert points["rigl"][0][-1] == pytest.approx((3e9 + 3) * 2) and points["rigl"][1][-1] == (2.0, 24.0)
    assert (tmp_path / "report" / "metric_vs_flops.png").stat().st_size > 0


def test_variants_are_checked_before_any_training():
    assert compare.variant_error(["baseline", "regan", "rggan", "static", "set", "rigl", "ri:--sparse regan"]) is None
    assert "rigl2" in compare.variant_error(["baseline", "rigl2"])
    assert "more than once" in compare.variant_error(["rigl", "rigl:--density-G 0.2"])
    with pytest.raises(SystemExit, match="neither `baseline` nor a sparse_core method"):
        compare.run_variants("sngan", Path("unused"), ["baseline", "rgil"], [])
