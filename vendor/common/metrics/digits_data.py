"""Which data the digits metrics accept: the built-in digits only.

`fid_digits`, `kid_digits` and `confident_digits` read images through a classifier trained on scikit-learn's
digits; on other data their numbers mean nothing (colour blobs score an FID that reads better than real
results). So they accept a reference set only when it is the built-in digits as this project's data loader
produces them (`vendor.common.datasets.load_dataset("digits", resolution=R, channels=1|3)`, any subset of it):
square images of R px, grey (every channel equal), each image byte for byte one of the 1,797 digits brought to
R px by that loader. The check is by content, not by name: a folder or zip of PNGs exported from those images
passes, anything else (other pictures, a different resize, JPEG) is refused with one MetricError naming the
dataset and the first image that is not a digit.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from .errors import MetricError

NUM_DIGITS = 1797
_CHUNK = 128


def _grey_hash(grey: np.ndarray) -> bytes:
    return hashlib.sha256(np.ascontiguousarray(grey, dtype=np.uint8).tobytes()).digest()


@lru_cache(maxsize=8)
def digits_hashes(resolution: int) -> frozenset:
    """sha256 of every built-in digit's grey plane at `resolution` px, as the data loader makes it."""
    from .. import datasets

    # the loader's digits at their native 8 px (no resize there): the grey plane, then resized as the loader does
    native = np.ascontiguousarray(datasets.load_dataset("digits", resolution=8).images_uint8()[:, :1])
    hashes = set()
    for start in range(0, len(native), _CHUNK):   # resized in chunks: bounded memory at large resolutions
        part = datasets._resize_batch(native[start:start + _CHUNK], resolution)
        hashes.update(_grey_hash(img[0]) for img in part)
    return frozenset(hashes)


def check_digits_reference(metric: str, dataset) -> None:
    """Raise MetricError unless `dataset` is the built-in digits (see the module docstring)."""
    from .features import ReferenceImages

    name = getattr(dataset, "name", type(dataset).__name__)
    where = f"{metric} is defined only on the built-in digits data (--data digits)"
    if dataset is None:
        raise MetricError(f"{where}: no dataset was given to check")
    try:
        images = ReferenceImages(dataset, None)
    except MetricError as error:
        raise MetricError(f"{where}: {error}") from None
    count, channels, height, width = images.shape
    if count > NUM_DIGITS:
        raise MetricError(f"{where}; dataset {name!r} has {count} images, the digits {NUM_DIGITS}")
    if channels not in (1, 3) or height != width:
        raise MetricError(f"{where}; dataset {name!r} holds {channels}-channel {width}x{height} images, "
                          f"the digits are grey and square")
    known = digits_hashes(int(height))
    index = 0
    for part in images.chunks(_CHUNK):
        for img in part:
            if channels == 3 and not (np.array_equal(img[0], img[1]) and np.array_equal(img[0], img[2])):
                raise MetricError(f"{where}; dataset {name!r}: image {index} is in colour (its channels differ)")
            if _grey_hash(img[0]) not in known:
                raise MetricError(f"{where}; dataset {name!r}: image {index} is not one of scikit-learn's digits "
                                  f"as the data loader makes them at {height} px")
            index += 1
