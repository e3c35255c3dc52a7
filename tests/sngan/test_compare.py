"""bench/compare.py end to end: relative and absolute --out, called from a folder other than the repository,
for every vendor in VENDORS (a tiny baseline + one patched run each), and the report's table / PNGs."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import compare  # noqa: E402

# the smallest run of each vendor that logs a metric; a vendor added to VENDORS needs a line here
TINY = {
    "sngan": ["--data", "digits", "--data-ratio", "0.1", "--ch", "8", "--batch_size", "4", "--G_batch_size", "4",
              "--n_dis", "1", "--total_steps", "4", "--tick_steps", "1", "--sample_step", "2", "--eval_step", "2",
              "--num_images", "20", "--extra_metrics", "confident_digits", "--device", "cpu"],
    "stylegan2_ada": ["--data=digits", "--device=cpu", "--cbase=256", "--cmax=32", "--map=2", "--batch=4",
                      "--mbstd-group=2", "--workers=0", "--grid=2x2", "--tick=0.004", "--img-snap=1",
                      "--kimg=0.008", "--snap=1", "--metrics=fid_digits", "--metric-gen=20"],
    "autogan": ["--data", "digits", "--data-ratio", "0.02", "--gf_dim", "8", "--df_dim", "8", "-gen_bs", "4",
                "-dis_bs", "4", "--n_critic", "1", "--max_iter", "4", "--print_freq", "1", "--val_freq", "1",
                "--num_eval_imgs", "20"],
    "progan": ["--data", "digits", "--data-ratio", "0.02", "--ch", "8", "--z_dim", "8", "--max_res", "8",
               "--epoch", "1", "--batch_sizes", "16,16", "--tick_steps", "1", "--sample_step", "2", "--eval_step", "2",
               "--metric", "fid_digits", "--num_images", "20", "--device", "cpu"],
    "fastgan": ["--path", "digits", "--data-ratio", "0.005", "--im_size", "256", "--batch_size", "2", "--ngf", "8",
                "--ndf", "8", "--nz", "16", "--lpips_untrained", "--lpips_width_div", "16", "--device", "cpu",
                "--tick", "1", "--save_interval", "1", "--iter", "2", "--metrics", "fid_digits", "--eval_interval", "1",
                "--num_images", "8"],
}


def test_every_vendor_has_a_tiny_run():
    assert set(compare.VENDORS) <= set(TINY), f"add tiny flags for {set(compare.VENDORS) - set(TINY)} here"


# Every vendor with a relative --out (the case that used to break: the runs' cwd is the vendor tree) and a
# patched variant; an absolute --out once (the vendor makes no difference to it), baseline only.
CASES = [(vendor, False) for vendor in sorted(TINY)] + [("sngan", True)]


@pytest.mark.parametrize("vendor,absolute", CASES)
def test_run_and_report_with_relative_and_absolute_out(tmp_path, vendor, absolute):
    if vendor not in compare.VENDORS:
        pytest.fail(f"{vendor} is not in compare.VENDORS")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    out = (tmp_path / "cmp") if absolute else Path("cmp")
    variants = "baseline,regan:--sparse regan --sparsity 0.3 --interval 1 --warmup 1" if vendor == "sngan" \
        else "baseline,regan:--sparse=regan --sparsity=0.3 --interval=1 --warmup=1"
    if absolute:
        variants = "baseline"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "compare.py"), "run", "--vendor", vendor, "--out",
                        str(out), "--variants", variants, "--", *TINY[vendor]],
                       cwd=cwd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    where = out if absolute else cwd / out
    text = (where / "comparison.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| baseline") or line.startswith("| regan")]
    assert len(rows) == len(variants.split(",")), text
    assert all(row.split("|")[2].strip() not in ("", "–") for row in rows), text  # a final metric value per run
    for name in ("metric_vs_kimg.png", "samples_side_by_side.png"):
        assert (where / name).stat().st_size > 0, name
    if vendor == "sngan":
        assert "recognisable" in text and (where / "baseline" / "stats.jsonl").is_file()
    if absolute:
        return
    # a second run into the same --out is refused before any training
    r2 = subprocess.run([sys.executable, str(ROOT / "bench" / "compare.py"), "run", "--vendor", vendor, "--out",
                         str(out), "--variants", "baseline", "--", *TINY[vendor]], cwd=cwd, capture_output=True,
                        text=True)
    if not compare.VENDORS[vendor]["nested"]:
        assert r2.returncode != 0 and "already holds runs" in r2.stderr


def test_sparse_spans_and_side_by_side(tmp_path):
    stats = [{"progress/kimg": k, "sparse/phase": p} for k, p in
             [(1, "warmup"), (2, "sparse"), (3, "sparse"), (4, "dense"), (5, "sparse")]]
    assert compare.sparse_spans(stats) == [(2, 4)]  # from the row that enters "sparse" to the row that leaves it
    from PIL import Image
    rows = []
    for name, size in (("a", 20), ("b", 30)):
        d = tmp_path / name
        d.mkdir()
        Image.new("RGB", (size, size), "red").save(d / "samples-10.png")
        Image.new("RGB", (size, size), "blue").save(d / "samples-9.png")
        rows.append({"name": name, "dir": d})
    path = compare.side_by_side(rows, tmp_path / "both.png")
    both = Image.open(path)
    assert both.size == (20 + 8 + 30, 30 + 16)
    assert both.getpixel((5, 16 + 5)) == (255, 0, 0)  # the last grid (step 10), not step 9
