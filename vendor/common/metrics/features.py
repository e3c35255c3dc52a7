"""Turn generated and real images into detector features, batch by batch.

Images reach every detector as uint8 [N, C, H, W] in [0, 255], exactly as upstream feeds them:
generator output x in [-1, 1] becomes (x * 127.5 + 128).clamp(0, 255).to(uint8) (truncation, as
upstream), and greyscale is repeated to 3 channels for the Inception / VGG16 networks.
"""
import hashlib
import sys
import time
from typing import Callable

import numpy as np
import torch

from .errors import MetricError

FeatureFn = Callable[[torch.Tensor], torch.Tensor]

_PROGRESS_MIN_ITEMS = 10000  # small evaluations (digits) stay quiet; 50k-sample runs report every 10%


def generated_to_uint8(images: torch.Tensor) -> torch.Tensor:
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def _three_channels(images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] == 1:
        return images.repeat(1, 3, 1, 1)
    if images.shape[1] != 3:
        raise MetricError(f"the Inception / VGG16 detectors take 1- or 3-channel images, got {images.shape[1]} channels")
    return images


def make_feature_fn(kind: str, space: str, detector) -> FeatureFn:
    """Bind the upstream calling convention of `detector` for one metric (see detectors.py)."""
    if space == "digits":
        return detector
    if space == "inception" and kind == "is":
        return lambda images: detector(_three_channels(images), no_output_bias=True)
    if space in ("inception", "vgg16"):
        return lambda images: detector(_three_channels(images), return_features=True)
    raise MetricError(f"no feature convention for metric kind {kind!r} in space {space!r}")


class _Progress:
    def __init__(self, tag: str, total: int):
        self.tag, self.total = tag, total
        self.enabled = total >= _PROGRESS_MIN_ITEMS
        self.next_report = total // 10
        self.start = time.time()

    def update(self, done: int) -> None:
        if self.enabled and done >= self.next_report:
            print(f"{self.tag}: {done}/{self.total} items, {time.time() - self.start:.1f}s", file=sys.stderr, flush=True)
            self.next_report += max(self.total // 10, 1)


def _run_feature_fn(feature_fn: FeatureFn, images_uint8: torch.Tensor, expected: int) -> np.ndarray:
    with torch.no_grad():
        features = feature_fn(images_uint8)
    if not isinstance(features, torch.Tensor) or features.ndim != 2 or features.shape[0] != expected:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise MetricError(f"detector returned {shape}, expected a [{expected}, num_features] tensor")
    return features.detach().to("cpu", torch.float64).numpy()


def generator_features(G_sample: Callable[[int], torch.Tensor], num_gen: int, batch: int,
                       feature_fn: FeatureFn, device) -> np.ndarray:
    """Features of `num_gen` images from `G_sample(n) -> float [n, C, H, W] in [-1, 1]`."""
    chunks, done = [], 0
    progress = _Progress("generator features", num_gen)
    while done < num_gen:
        count = min(batch, num_gen - done)
        with torch.no_grad():
            images = G_sample(count)
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] != count \
                or not images.is_floating_point():
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise MetricError(f"G_sample({count}) must return a float tensor [{count}, C, H, W], got {shape}")
        chunks.append(_run_feature_fn(feature_fn, generated_to_uint8(images.to(device)), count))
        done += count
        progress.update(done)
    return np.concatenate(chunks)


def dataset_images(dataset, max_real: int | None) -> np.ndarray:
    """The reference images as uint8 [N, C, H, W], cut to the first `max_real` (as upstream)."""
    if not hasattr(dataset, "images_uint8"):
        raise MetricError(f"dataset {type(dataset).__name__} has no images_uint8(); pass a vendor.common.datasets.ImageDataset")
    images = np.asarray(dataset.images_uint8())
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] == 0:
        raise MetricError(f"dataset.images_uint8() must return a non-empty uint8 array [N, C, H, W], "
                          f"got {images.dtype} {images.shape}")
    return images if max_real is None else images[:max_real]


class ReferenceImages:
    """The reference set as uint8 chunks [n, C, H, W]: an in-memory dataset's array as it is, a dataset that
    reads lazily (`reads_lazily = True`, e.g. a big zip) item by item, so memory stays bounded by one chunk
    whatever the dataset's size. `sha256()` equals cache.array_sha256 of the whole array, computed in chunks."""

    def __init__(self, dataset, max_real: int | None):
        self._dataset = dataset
        if getattr(dataset, "reads_lazily", False):
            count = len(dataset) if max_real is None else min(len(dataset), max_real)
            first = np.asarray(dataset[0][0]) if count else None
            if first is None or first.dtype != np.uint8 or first.ndim != 3:
                raise MetricError(f"dataset {getattr(dataset, 'name', '?')!r} must hold uint8 [C, H, W] images, got "
                                  f"{'none' if first is None else f'{first.dtype} {first.shape}'}")
            self._array, self.shape = None, (count, *first.shape)
        else:
            self._array = dataset_images(dataset, max_real)
            self.shape = self._array.shape

    def __len__(self) -> int:
        return self.shape[0]

    def chunks(self, batch: int):
        for start in range(0, len(self), batch):
            stop = min(start + batch, len(self))
            if self._array is not None:
                yield self._array[start:stop]
            else:
                yield np.stack([np.asarray(self._dataset[i][0]) for i in range(start, stop)])

    def sha256(self) -> str:
        digest = hashlib.sha256(f"{np.dtype(np.uint8).str}|{tuple(self.shape)}|".encode())
        for part in self.chunks(256):
            digest.update(memoryview(np.ascontiguousarray(part)).cast("B"))
        return digest.hexdigest()


def image_array_features(images, batch: int, feature_fn: FeatureFn, device) -> np.ndarray:
    """Features of the reference images (a ReferenceImages or a uint8 array [N, C, H, W]), one batch at a time."""
    source = images if isinstance(images, ReferenceImages) else None
    total = len(images) if source is not None else images.shape[0]
    parts = source.chunks(batch) if source is not None else (images[i:i + batch] for i in range(0, total, batch))
    chunks, done = [], 0
    progress = _Progress("dataset features", total)
    for part in parts:
        part = torch.from_numpy(np.ascontiguousarray(part)).to(device)
        chunks.append(_run_feature_fn(feature_fn, part, part.shape[0]))
        done += part.shape[0]
        progress.update(done)
    return np.concatenate(chunks)
