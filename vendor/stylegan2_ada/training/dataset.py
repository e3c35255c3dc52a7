"""Upstream's Dataset API on top of the shared loader `vendor.common.datasets.load_dataset`.

The training loop and the metrics only see this API (as in NVlabs StyleGAN2-ADA): items are
(uint8 [C, H, W] image, float32 label vector), with optional x-flip doubling and a seeded
`max_size` subset. Decoding images, CIFAR batches, zips and the built-in `digits` set is the
shared loader's job (zips and folders lazily, one item at a time); nothing here duplicates it.
"""
import numpy as np
import torch

from vendor.common.datasets import DatasetError, load_dataset


class ImageFolderDataset(torch.utils.data.Dataset):
    """Any dataset spec `load_dataset` understands: `digits`, a CIFAR-10 folder/.tar.gz, an image
    folder or a StyleGAN2-ADA dataset zip (the upstream class name is kept for familiarity)."""

    def __init__(self, path, resolution=None, max_size=None, use_labels=False, xflip=False,
                 random_seed=0, ratio=1.0, channels=None, name=None):
        if max_size is not None and int(max_size) < 1:
            raise DatasetError(f'max_size (--subset) must be >= 1, got {max_size}')
        self._path = path
        # lazy: zips and folders are decoded per item (in the DataLoader workers), as upstream
        self._base = load_dataset(path, resolution=resolution, channels=channels, ratio=ratio,
                                  seed=random_seed, use_labels=use_labels, lazy=True)
        self._name = name or getattr(self._base, 'name', str(path))
        self._use_labels = bool(use_labels)
        if len(self._base) == 0:
            raise DatasetError(f'{path}: dataset is empty')

        # Seeded subset of `max_size` items (upstream semantics: shuffle, take, keep original order).
        self._raw_idx = np.arange(len(self._base), dtype=np.int64)
        if max_size is not None and self._raw_idx.size > max_size:
            np.random.RandomState(random_seed).shuffle(self._raw_idx)
            self._raw_idx = np.sort(self._raw_idx[:max_size])

        # X-flip doubles the dataset: second half holds mirrored copies.
        self._xflip = np.zeros(self._raw_idx.size, dtype=np.uint8)
        if xflip:
            self._raw_idx = np.tile(self._raw_idx, 2)
            self._xflip = np.concatenate([self._xflip, np.ones_like(self._xflip)])

        num_classes = int(getattr(self._base, 'label_dim', 0) or 0)
        self._label_dim = num_classes if self._use_labels else 0
        if self._use_labels and num_classes == 0:
            raise DatasetError(f'{path}: --cond requested but the dataset has no labels')

    def check_images(self, processes=0):
        """Decode every image once now, in `processes` worker processes (0: this one); DatasetError names
        the first bad file. train.py calls it before the run folder exists: items are otherwise decoded
        lazily, mid-run."""
        self._base.check_images(processes)

    # -- upstream API -----------------------------------------------------------------------------

    def __len__(self):
        return self._raw_idx.size

    def __getitem__(self, idx):
        image, label = self._base[int(self._raw_idx[idx])]
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3:
            raise DatasetError(f'{self._path}: item {idx} is not a uint8 [C,H,W] array')
        if self._xflip[idx]:
            image = image[:, :, ::-1]
        return image.copy(), self._onehot(label)

    def get_label(self, idx):
        return self._onehot(self._base[int(self._raw_idx[idx])][1])

    def _onehot(self, label):
        onehot = np.zeros(self._label_dim, dtype=np.float32)
        if self._label_dim:
            onehot[int(label)] = 1
        return onehot

    @property
    def name(self):
        return self._name

    @property
    def image_shape(self):
        return [self.num_channels, self.resolution, self.resolution]

    @property
    def num_channels(self):
        return int(self._base.num_channels)

    @property
    def resolution(self):
        return int(self._base.resolution)

    @property
    def label_shape(self):
        return [self._label_dim]

    @property
    def label_dim(self):
        return self._label_dim

    @property
    def has_labels(self):
        return self._label_dim > 0

    @property
    def has_onehot_labels(self):
        return True

    @property
    def base(self):
        """The underlying `vendor.common` dataset (what `vendor.common.metrics` expects)."""
        return self._base
