"""Lazy datasets (issue 11 item 3): zips and folders are decoded per item, in DataLoader workers, with
the same items as the eager loader; bad images are refused by name; memory does not grow with the data."""
import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sg2_helpers  # noqa: E402

from training.dataset import ImageFolderDataset  # noqa: E402
from vendor.common.datasets import DatasetError, LazyImageDataset, load_dataset  # noqa: E402


def png(array):
    buffer = io.BytesIO()
    PIL.Image.fromarray(array).save(buffer, format='PNG', compress_level=1)
    return buffer.getvalue()


def make_zip(path, count, size, seed=0, labels=True, smooth=False):
    """count RGB PNGs (smooth ones compress to almost nothing, so big sets stay small on disk)."""
    rnd = np.random.RandomState(seed)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    with zipfile.ZipFile(path, 'w', compression=zipfile.ZIP_STORED) as z:
        for i in range(count):
            if smooth:
                arr = np.stack([np.add.outer(ramp, ramp) / 2 * rnd.rand() for _ in range(3)], -1).astype(np.uint8)
            else:
                arr = rnd.randint(0, 256, size=(size, size, 3), dtype=np.uint8)
            z.writestr(f'{i // 1000:05d}/img{i:08d}.png', png(arr))
        if labels:
            z.writestr('dataset.json', json.dumps({'labels': [[f'{i // 1000:05d}/img{i:08d}.png', i % 4]
                                                              for i in range(count)]}))
    return path


def test_lazy_items_equal_the_eager_loader(tmp_path):
    path = str(make_zip(tmp_path / 'd.zip', 24, 16))
    for kwargs in (dict(), dict(use_labels=True, ratio=0.5, seed=3), dict(resolution=8, channels=1)):
        eager, lazy = load_dataset(path, **kwargs), load_dataset(path, lazy=True, **kwargs)
        assert isinstance(lazy, LazyImageDataset) and len(lazy) == len(eager)
        assert (lazy.resolution, lazy.num_channels, lazy.label_dim) == (eager.resolution, eager.num_channels,
                                                                         eager.label_dim)
        assert np.array_equal(lazy.images_uint8(), eager.images_uint8())
        assert np.array_equal(lazy.labels(), eager.labels())
    # the SG2 Dataset is lazy, and its items reach DataLoader worker processes
    ds = ImageFolderDataset(path, use_labels=True, xflip=True)
    assert isinstance(ds.base, LazyImageDataset)
    loader = torch.utils.data.DataLoader(ds, batch_size=48, num_workers=2)
    images, labels = next(iter(loader))
    eager = load_dataset(path, use_labels=True)
    assert torch.equal(images[:24], torch.from_numpy(eager.images_uint8()))
    assert torch.equal(images[24:], torch.from_numpy(eager.images_uint8()[:, :, :, ::-1].copy()))
    assert labels[:24].argmax(1).tolist() == eager.labels().tolist()


def test_lazy_refuses_bad_images_by_name(tmp_path):
    path = make_zip(tmp_path / 'd.zip', 5, 16, labels=False)
    with zipfile.ZipFile(path, 'a') as z:
        z.writestr('00000/z-odd.png', png(np.zeros((8, 8, 3), np.uint8)))   # header check at start
    with pytest.raises(DatasetError, match='z-odd.png'):
        load_dataset(str(path), lazy=True)
    path = make_zip(tmp_path / 'e.zip', 5, 16, labels=False)
    raw = png(np.zeros((16, 16, 3), np.uint8))
    with zipfile.ZipFile(path, 'a') as z:
        z.writestr('00000/z-cut.png', raw[:len(raw) - 30])   # header fine, pixel data cut short
    ds = load_dataset(str(path), lazy=True)
    with pytest.raises(DatasetError, match='z-cut.png'):
        ds[len(ds) - 1]


def test_memory_stays_bounded_by_the_item_not_the_dataset(tmp_path):
    """3,000 images of 64x64 (35 MiB decoded): the lazy reader grows by a small fraction of that, the
    eager loader by at least the decoded size (so the measurement can tell the two apart)."""
    path = str(make_zip(tmp_path / 'big.zip', 3000, 64, smooth=True, labels=False))
    worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'sg2_lazy_memory.py')
    out = {}
    for mode in ('lazy', 'eager'):
        proc = subprocess.run([sg2_helpers.PYTHON, worker, path, mode, '2' if mode == 'lazy' else '0'],
                              capture_output=True, text=True, env=sg2_helpers.subprocess_env(), timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out['lazy']['items'] == out['eager']['items'] == 3000
    assert out['lazy']['checksum'] == out['eager']['checksum']
    decoded = out['eager']['decoded_mb']
    assert decoded == pytest.approx(3000 * 3 * 64 * 64 / 2 ** 20)
    assert out['eager']['rss_growth_mb'] > 0.9 * decoded, out
    assert out['lazy']['rss_growth_mb'] < 0.25 * decoded, out
