"""fid_digits / kid_digits / confident_digits accept the built-in digits only: colour blobs (made here), grey
non-digit pictures and a re-resized copy of the digits are refused with one message before any generator or
classifier work; the digits as the data loader gives them (any resolution, channels, subset, exported to PNG)
pass; StyleGAN2-ADA's calc_metrics.py exits 2 on blobs."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vendor.common.datasets import ImageDataset, load_dataset
from vendor.common.metrics import MetricError, compute_metric
from vendor.common.metrics.digits_data import check_digits_reference

ROOT = Path(__file__).resolve().parents[2]
DIGITS_METRICS = ("fid_digits", "kid_digits", "confident_digits")


def colour_blobs(n=40, size=32, seed=0) -> np.ndarray:
    """uint8 [n, 3, size, size]: a few soft colour discs on a dark background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.zeros((n, 3, size, size), np.float64)
    for i in range(n):
        for _ in range(3):
            cy, cx, r = rng.uniform(4, size - 4, 2).tolist() + [rng.uniform(3, 8)]
            disc = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
            out[i] += disc[None] * rng.uniform(0, 255, (3, 1, 1))
    return out.clip(0, 255).astype(np.uint8)


class _Counting:
    def __init__(self):
        self.calls = 0

    def __call__(self, n):
        self.calls += 1
        return torch.zeros(n, 3, 32, 32)


@pytest.mark.parametrize("metric", DIGITS_METRICS)
def test_colour_blobs_are_refused_before_any_work(tmp_path, metric):
    blobs = ImageDataset(colour_blobs(), np.zeros(40, np.int64), "blobs", 0)
    sampler = _Counting()
    with pytest.raises(MetricError) as info:
        compute_metric(metric, sampler, blobs, num_gen=20, cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert metric in message and "built-in digits" in message and "'blobs'" in message and "colour" in message
    assert sampler.calls == 0 and not (tmp_path / "cache").exists()  # no generator call, no classifier trained


def test_grey_pictures_that_are_not_digits_and_re_resized_digits_are_refused():
    grey = colour_blobs(10)[:, :1]
    with pytest.raises(MetricError, match="image 0 is not one of scikit-learn's digits"):
        check_digits_reference("fid_digits", ImageDataset(grey, np.zeros(10, np.int64), "greyblobs", 0))
    # the digits resized by another method (nearest instead of the loader's) are not the digits the classifier read
    native = load_dataset("digits", resolution=8).images_uint8()[:20, :1]
    nearest = native.repeat(4, axis=2).repeat(4, axis=3)
    with pytest.raises(MetricError, match="not one of scikit-learn's digits"):
        check_digits_reference("kid_digits", ImageDataset(nearest, np.zeros(20, np.int64), "nearest", 0))
    with pytest.raises(MetricError, match="no dataset"):
        check_digits_reference("confident_digits", None)
    too_many = ImageDataset(np.zeros((1798, 1, 8, 8), np.uint8), np.zeros(1798, np.int64), "big", 0)
    with pytest.raises(MetricError, match="1798 images"):
        check_digits_reference("fid_digits", too_many)


def test_the_built_in_digits_pass_in_every_form_the_vendors_load(tmp_path):
    for kwargs in (dict(resolution=32), dict(resolution=8, channels=1), dict(resolution=64, channels=3, ratio=0.05)):
        check_digits_reference("fid_digits", load_dataset("digits", **kwargs))
    # exported to PNG files and read back as an image folder (lossless): still the digits
    images = load_dataset("digits", resolution=32, ratio=0.01).images_uint8()
    folder = tmp_path / "digits_png"
    folder.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img.transpose(1, 2, 0)).save(folder / f"{i:04d}.png")
    check_digits_reference("fid_digits", load_dataset(str(folder)))
    # one foreign image among digits is named by its index
    mixed = np.concatenate([images[:3], colour_blobs(1)])
    with pytest.raises(MetricError, match="image 3 is in colour"):
        check_digits_reference("fid_digits", ImageDataset(mixed, np.zeros(4, np.int64), "mixed", 0))


def test_calc_metrics_exits_2_on_colour_blobs(tmp_path):
    sys.path.insert(0, str(ROOT / "tests" / "stylegan2_ada"))
    import sg2_helpers
    from training import training_loop
    import dnnlib
    from vendor.common.runlog import save_snapshot

    train = sg2_helpers.load_script("train")
    _, args = train.setup_training_loop_kwargs(data="digits", device="cpu", cbase=256, cmax=32, map_layers=2)
    common = dict(c_dim=0, img_resolution=32, img_channels=3)
    torch.manual_seed(0)
    G = dnnlib.util.construct_class_by_name(**args.G_kwargs, **common)
    D = dnnlib.util.construct_class_by_name(**args.D_kwargs, **common)
    snap = tmp_path / "network-snapshot-000000.pt"
    save_snapshot(dict(G=G.state_dict(), D=D.state_dict(), G_ema=G.state_dict(), cur_nimg=0, cur_tick=0,
                       G_kwargs=training_loop.plain(args.G_kwargs), D_kwargs=training_loop.plain(args.D_kwargs),
                       common_kwargs=common, training_set_kwargs=training_loop.plain(args.training_set_kwargs)),
                  str(snap))
    data = tmp_path / "blobs.zip"
    with zipfile.ZipFile(data, "w") as z:
        for i, img in enumerate(colour_blobs(16)):
            path = tmp_path / f"{i}.png"
            Image.fromarray(img.transpose(1, 2, 0)).save(path)
            z.write(path, f"{i:05d}.png")
    r = subprocess.run([sys.executable, str(ROOT / "vendor" / "stylegan2_ada" / "calc_metrics.py"),
                        "--network", str(snap), "--metrics", "fid_digits", "--data", str(data), "--device", "cpu",
                        "--num-gen", "16", "--metrics-cache", str(tmp_path / "cache")],
                       capture_output=True, text=True, env=sg2_helpers.subprocess_env())
    assert r.returncode == 2, r.stdout + r.stderr
    assert "built-in digits" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "metric-fid_digits.jsonl").exists()
