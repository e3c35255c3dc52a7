"""bench/judge.py, the nearest-real-digit judge: its space and distances against float64 brute force, its verdict
on held-out real digits (high), noise and blank cells (0), and grids cut into their cells in order."""
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import judge  # noqa: E402


def test_space_is_grey_block_means_at_8x8():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
    got = judge.to_space(x)
    want = np.empty((2, 64))
    for n in range(2):  # independent: loops over the 4x4 blocks of the channel mean
        grey = x[n].astype(np.float64).mean(axis=0)
        for i in range(8):
            for j in range(8):
                want[n, i * 8 + j] = grey[4 * i:4 * i + 4, 4 * j:4 * j + 4].mean() / 255.0
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="multiple of 8"):
        judge.to_space(np.zeros((1, 3, 30, 30), np.uint8))


def test_nearest_distances_match_brute_force():
    rng = np.random.default_rng(1)
    a, b = rng.random((7, 64)), rng.random((11, 64))
    brute = np.array([min(np.sqrt(((p - q) ** 2).sum()) for q in b) for p in a])
    np.testing.assert_allclose(judge.nearest_distances(a, b), brute, rtol=1e-9)
    loo = np.array([min(np.sqrt(((b[i] - b[j]) ** 2).sum()) for j in range(len(b)) if j != i) for i in range(len(b))])
    np.testing.assert_allclose(judge.nearest_distances(b, b, exclude_self=True), loo, rtol=1e-9)


@pytest.fixture(scope="module")
def digits32():
    sys.path.insert(0, str(ROOT))
    from vendor.common.datasets import load_dataset
    return load_dataset("digits", resolution=32).images_uint8()


def test_held_out_real_digits_pass_noise_and_blank_cells_do_not(digits32):
    order = np.random.default_rng(0).permutation(len(digits32))
    reference, held_out = digits32[order[:1437]], digits32[order[1437:]]
    j = judge.Judge(reference)
    # the threshold is the 90th percentile of the reference's leave-one-out distances (brute force here)
    space = judge.to_space(reference)
    loo = [np.sqrt(np.delete(((space - s) ** 2).sum(1), i).min()) for i, s in enumerate(space)]
    assert j.threshold == pytest.approx(float(np.quantile(loo, 0.9)), rel=1e-9)
    real = j.share(held_out)
    assert 0.8 <= real <= 0.97, real       # by construction about 0.9
    noise = np.random.default_rng(2).integers(0, 256, (200, 3, 32, 32), dtype=np.uint8)
    assert j.share(noise) == 0.0
    assert j.share(np.zeros((4, 3, 32, 32), np.uint8)) == 0.0    # an empty (black) grid cell is not a digit
    # blurred digits sit further from real ones than real ones do from each other
    blurred = held_out.astype(np.float64)
    blurred = (blurred + np.roll(blurred, 3, axis=3) + np.roll(blurred, -3, axis=3)) / 3
    assert j.share(blurred.round().astype(np.uint8)) < real


def test_grid_cells_in_row_order_and_cli(tmp_path, digits32, capsys):
    cells = digits32[:6]
    grid = np.zeros((2 * 32, 3 * 32, 3), np.uint8)
    for k in range(6):  # 3 columns, 2 rows, as save_image_grid lays them out
        r, c = divmod(k, 3)
        grid[r * 32:(r + 1) * 32, c * 32:(c + 1) * 32] = cells[k].transpose(1, 2, 0)
    path = tmp_path / "samples-10.png"
    Image.fromarray(grid).save(path)
    np.testing.assert_array_equal(judge.grid_tiles(path, 32), cells)
    assert judge.judge_grid(path) == 1.0     # real digits are in the reference: distance 0
    assert judge.main([str(path)]) == 0
    assert "100.0% of 6 samples" in capsys.readouterr().out
    Image.fromarray(grid[:, :90]).save(tmp_path / "odd.png")
    assert judge.main([str(path), str(tmp_path / "odd.png")]) == 2
    err = capsys.readouterr().err
    assert "odd.png" in err and "32 px cells" in err
