"""Image datasets shared by every vendor training tree, loaded fully into memory as uint8.

Supported `spec` values for `load_dataset`:
  * ``digits``: scikit-learn's bundled 8x8 digits (1,797 images, values 0..16), the only real data
    available offline; rescaled to 0..255 and resized to `resolution` (default 32).
  * a CIFAR-10 python-batch folder (``data_batch_1`` .. ``data_batch_5``) or the original
    ``cifar-10-python.tar.gz`` (read through ``tarfile`` in memory, never extracted to disk).
  * an image folder (PNG / JPEG, searched recursively, sorted by relative path); images are decoded
    only through `vendor.common.images` (the format their name says, never one guessed from the bytes).
  * a ``.zip`` in the StyleGAN2-ADA dataset layout (images + optional ``dataset.json`` with
    ``{"labels": [[relative_name, label], ...]}``); a folder may carry the same ``dataset.json``.

With ``lazy=True`` an image folder or zip is not decoded up front: `load_dataset` lists the files,
checks every image header (size, mode) and decodes one image per `__getitem__`, so memory stays
bounded whatever the dataset size, and the object pickles into DataLoader worker processes (each
opens its own zip handle). The metrics read it in chunks too (`reads_lazily`); `images_uint8()` still
returns the whole array (decoding everything) for callers that want it.

Every problem with the data raises `DatasetError` (a ValueError) naming the file and the problem.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import tarfile
import zipfile
import zlib

import numpy as np

from vendor.common.images import ImageFormatError, is_image_name, open_image, read_header

CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_RESOLUTION = 32


class DatasetError(ValueError):
    """The one error type for bad data; the message names the offending file and the problem."""


class ImageDataset:
    """Images as one uint8 array [N, C, H, W] plus integer labels (all zero when labels are unused)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, name: str, label_dim: int):
        assert images.dtype == np.uint8 and images.ndim == 4, "internal: images must be uint8 NCHW"
        assert labels.shape == (images.shape[0],), "internal: one label per image"
        self._images = images
        self._labels = labels.astype(np.int64)
        self.name = name
        self.label_dim = int(label_dim)
        self.num_channels = int(images.shape[1])
        self.resolution = int(images.shape[2])

    def __len__(self) -> int:
        return int(self._images.shape[0])

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self._images[index], int(self._labels[index])

    def images_uint8(self) -> np.ndarray:
        return self._images

    def check_images(self, processes: int = 0) -> None:
        """Nothing left to check: every image was decoded when the dataset was loaded."""

    def labels(self) -> np.ndarray:
        return self._labels

    def __repr__(self) -> str:
        return (f"ImageDataset(name={self.name!r}, len={len(self)}, resolution={self.resolution}, "
                f"num_channels={self.num_channels}, label_dim={self.label_dim})")


class LazyImageDataset:
    """ImageDataset's interface over an image folder or zip that is decoded one item at a time."""

    reads_lazily = True   # the metrics read it item by item (vendor.common.metrics.features.ReferenceImages)

    def __init__(self, spec: str, resolution: int | None, channels: int | None, ratio: float, seed: int,
                 use_labels: bool):
        self.path = os.path.abspath(os.path.expanduser(spec))
        self.spec = spec
        self.name = os.path.splitext(os.path.basename(self.path.rstrip(os.sep)))[0]
        self._resolution, self._channels = resolution, channels
        self._zip = None
        self._zip_pid = None
        try:
            source = self._source()
            names = source.image_names()
            if not names:
                raise DatasetError(f"{source.describe('')}: dataset is empty (no .png/.jpg images found)")
            self._shape = _check_headers(source, names, resolution)
            labels = _read_labels(source, names) if use_labels else None
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as error:
            raise DatasetError(f"{spec}: unreadable zip archive ({error})") from error
        keep = subset_indices(len(names), ratio, seed)
        self._names = [names[i] for i in keep]
        if labels is None:
            self._labels, self.label_dim = np.zeros(len(self._names), dtype=np.int64), 0
        else:
            if labels.min() < 0:
                raise DatasetError(f"{spec}: labels must be non-negative integers")
            self._labels, self.label_dim = labels[keep], int(labels.max()) + 1
        self.num_channels = int(channels or self._shape[0])
        self.resolution = int(resolution or self._shape[1])

    def _source(self):
        if os.path.isdir(self.path):
            return _FolderSource(self.path)
        if self._zip is None or self._zip_pid != os.getpid():  # one handle per (worker) process
            self._zip, self._zip_pid = zipfile.ZipFile(self.path), os.getpid()
        return _ZipSource(self.path, self._zip)

    def __getstate__(self):
        return dict(self.__dict__, _zip=None, _zip_pid=None)

    def __len__(self) -> int:
        return len(self._names)

    def _decode(self, source, name: str) -> np.ndarray:
        try:
            array = _decode_image(source.read(name), source.describe(name))
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as error:
            raise DatasetError(f"{source.describe(name)}: unreadable ({error})") from error
        if array.shape != self._shape:
            raise DatasetError(f"{source.describe(name)}: shape {list(array.shape)} (channels, height, "
                               f"width) differs from the first image's {list(self._shape)}")
        return array

    def check_images(self, processes: int = 0) -> None:
        """Decode every image once, one at a time per process (memory stays bounded), so that a corrupt
        file is refused now, by name, instead of in a DataLoader worker in the middle of a run.
        processes > 0: that many worker processes share the work (0: in this process). DatasetError
        names the first bad file in the dataset's order."""
        chunks = [(start, min(start + CHECK_CHUNK, len(self._names)))
                  for start in range(0, len(self._names), CHECK_CHUNK)]
        if processes > 0 and len(chunks) > 1:
            from concurrent.futures import ProcessPoolExecutor
            with ProcessPoolExecutor(min(processes, len(chunks)), initializer=_set_checked_dataset,
                                     initargs=(self,)) as pool:  # the dataset travels once per process
                self._report_checks(pool.map(_first_error, chunks), chunks)
        else:
            self._report_checks((self._check_chunk(*chunk) for chunk in chunks), chunks)

    def _check_chunk(self, start: int, stop: int) -> str | None:
        source = self._source()
        try:
            for name in self._names[start:stop]:
                self._decode(source, name)
        except DatasetError as error:
            return str(error)
        return None

    def _report_checks(self, results, chunks) -> None:
        done = 0
        for message, (start, stop) in zip(results, chunks):
            if message is not None:
                raise DatasetError(message)
            if (stop // 10000) > (done // 10000):
                print(f"decoded {stop}/{len(self._names)} images of {self.spec}", flush=True)
            done = stop

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        source = self._source()
        array = self._decode(source, self._names[index])
        if self._resolution is not None:
            array = _resize_batch(array[None], self._resolution)[0]
        array = _convert_channels(array[None], self._channels, self.spec)[0]
        return np.ascontiguousarray(array), int(self._labels[index])

    def images_uint8(self) -> np.ndarray:
        """Every image decoded into one array (the metrics do not use it: they read item by item)."""
        return np.stack([self[i][0] for i in range(len(self))])

    def labels(self) -> np.ndarray:
        return self._labels

    def __repr__(self) -> str:
        return (f"LazyImageDataset(name={self.name!r}, len={len(self)}, resolution={self.resolution}, "
                f"num_channels={self.num_channels}, label_dim={self.label_dim})")


CHECK_CHUNK = 256  # images per task of LazyImageDataset.check_images


_checked_dataset = None  # the dataset LazyImageDataset.check_images works on, in each process


def _set_checked_dataset(dataset) -> None:
    global _checked_dataset
    _checked_dataset = dataset


def _first_error(chunk: tuple[int, int]) -> str | None:
    """The message of the first bad image among the checked dataset's names[start:stop] (None if all
    decode); a module function, so that worker processes can run it."""
    return _checked_dataset._check_chunk(*chunk)


def _check_headers(source, names, resolution):
    """Shape [C, H, W] of the first image; every other image's header (size, mode) must agree.
    Only headers are read (PIL opens lazily), so this is fast and needs no memory per image."""
    expected = None
    for index, name in enumerate(names):
        where = source.describe(name)
        try:
            with source.open(name) as handle:
                size, mode = read_header(handle, where)
        except ImageFormatError as error:
            raise DatasetError(str(error)) from error
        except Exception as error:  # PIL raises many types for truncated or foreign files
            raise DatasetError(f"{where}: corrupt or unreadable image ({error})") from error
        if mode not in ("L", "RGB", "P"):
            raise DatasetError(f"{where}: unsupported image mode {mode!r} (need greyscale 'L' or 'RGB')")
        shape = (1 if mode == "L" else 3, size[1], size[0])
        if shape[1] != shape[2]:
            raise DatasetError(f"{where}: image is not square ({shape[2]}x{shape[1]})")
        if expected is None:
            expected = shape
            if resolution is None and (shape[1] & (shape[1] - 1)) != 0:
                raise DatasetError(f"{where}: resolution {shape[1]} is not a power of two "
                                   f"(pass a resolution to resize)")
        elif shape != expected:
            raise DatasetError(f"{where}: shape {list(shape)} (channels, height, width) differs from "
                               f"the first image's {list(expected)}")
        if (index + 1) % 10000 == 0:
            print(f"checked {index + 1}/{len(names)} images in {source.describe('')}", flush=True)
    return expected


# ----------------------------------------------------------------------------------------------
# Public entry point


def load_dataset(spec: str, resolution: int | None = None, channels: int | None = None,
                 ratio: float = 1.0, seed: int = 0, use_labels: bool = False,
                 lazy: bool = False) -> ImageDataset:
    """Load `spec` (see module docstring) into memory, convert/resize it, and take a `ratio` subset.
    lazy=True: folders and zips are read per item instead (a LazyImageDataset, same interface)."""
    _check_arguments(spec, resolution, channels, ratio)
    if lazy and spec != "digits":
        path = os.path.abspath(os.path.expanduser(spec))
        is_cifar_folder = os.path.isdir(path) and all(os.path.isfile(os.path.join(path, b))
                                                      for b in CIFAR_TRAIN_BATCHES)
        if (os.path.isdir(path) and not is_cifar_folder) or (os.path.isfile(path) and path.endswith(".zip")):
            return LazyImageDataset(spec, resolution, channels, ratio, seed, use_labels)
    if spec == "digits":
        images, labels, name = _load_digits(resolution if resolution is not None else 32)
    else:
        images, labels, name = _load_from_path(spec, resolution, use_labels)
    if len(images) == 0:
        raise DatasetError(f"{spec}: dataset is empty (no images found)")
    if not use_labels:
        labels = None
    images = _convert_channels(images, channels, spec)
    if labels is None:
        label_array, label_dim = np.zeros(len(images), dtype=np.int64), 0
    else:
        label_array = np.asarray(labels, dtype=np.int64)
        if label_array.min() < 0:
            raise DatasetError(f"{spec}: labels must be non-negative integers")
        label_dim = int(label_array.max()) + 1
    keep = subset_indices(len(images), ratio, seed)
    return ImageDataset(np.ascontiguousarray(images[keep]), label_array[keep], name, label_dim)


def subset_indices(num_items: int, ratio: float, seed: int) -> np.ndarray:
    """The first round(ratio*N) (at least 1) entries of a seeded permutation, returned sorted so
    the subset keeps the dataset's order; the same (N, ratio, seed) always gives the same subset."""
    if ratio == 1.0:
        return np.arange(num_items)
    count = max(1, int(round(ratio * num_items)))
    permutation = np.random.RandomState(seed).permutation(num_items)
    return np.sort(permutation[:count])


def _check_arguments(spec, resolution, channels, ratio) -> None:
    if not isinstance(spec, str) or not spec:
        raise DatasetError(f"dataset spec must be a non-empty string, got {spec!r}")
    if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, int)
                                   or resolution < 1):
        raise DatasetError(f"resolution must be a positive integer, got {resolution!r}")
    if channels is not None and channels not in (1, 3):
        raise DatasetError(f"channels must be 1 or 3, got {channels!r}")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not (0.0 < ratio <= 1.0):
        raise DatasetError(f"ratio must be in (0, 1], got {ratio!r}")


# ----------------------------------------------------------------------------------------------
# digits


def _load_digits(resolution: int):
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    digits = load_digits()
    # values are integers 0..16: scale to the full uint8 range
    grey = np.rint(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]
    grey = _resize_batch(grey, resolution)
    images = np.repeat(grey, 3, axis=1)  # RGB by default, like every other dataset here
    return images, digits.target.astype(np.int64), "digits"


def _resize_batch(images: np.ndarray, resolution: int) -> np.ndarray:
    """Bilinear resize with antialiasing of a uint8 [N,C,h,w] batch to [N,C,res,res]."""
    if images.shape[2] == resolution and images.shape[3] == resolution:
        return images
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images.astype(np.float32))
    y = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False,
                      antialias=True)
    return y.round().clamp(0, 255).to(torch.uint8).numpy()


def _convert_channels(images: np.ndarray, channels: int | None, spec: str) -> np.ndarray:
    have = images.shape[1]
    if channels is None or channels == have:
        return images
    if have == 1 and channels == 3:
        return np.repeat(images, 3, axis=1)
    if have == 3 and channels == 1:
        # ITU-R 601 luma, the same weights PIL uses for RGB -> L
        weights = np.array([0.299, 0.587, 0.114], dtype=np.float64).reshape(1, 3, 1, 1)
        grey = (images.astype(np.float64) * weights).sum(axis=1, keepdims=True)
        return np.rint(grey).clip(0, 255).astype(np.uint8)
    raise DatasetError(f"{spec}: cannot convert {have} channels to {channels}")


# ----------------------------------------------------------------------------------------------
# paths: CIFAR-10, zip, folder


def _load_from_path(spec: str, resolution: int | None, use_labels: bool):
    path = os.path.abspath(os.path.expanduser(spec))
    name = os.path.splitext(os.path.basename(path.rstrip(os.sep)))[0]
    if path.endswith(".tar.gz"):
        name = os.path.basename(path)[: -len(".tar.gz")]
    if not os.path.exists(path):
        raise DatasetError(f"{spec}: no such file or folder (expected 'digits', a CIFAR-10 "
                           f"folder or .tar.gz, an image folder or a .zip)")
    if os.path.isdir(path):
        if all(os.path.isfile(os.path.join(path, b)) for b in CIFAR_TRAIN_BATCHES):
            images, labels = _load_cifar_folder(path)
            return _fit_resolution(images, resolution), labels, name
        images, labels = _load_image_files(_FolderSource(path), resolution, use_labels)
        return images, labels, name
    if path.endswith(".tar.gz") or path.endswith(".tgz"):
        images, labels = _load_cifar_tar(path)
        return _fit_resolution(images, resolution), labels, name
    if path.endswith(".zip"):
        try:
            with zipfile.ZipFile(path) as archive:
                images, labels = _load_image_files(_ZipSource(path, archive), resolution,
                                                   use_labels)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as error:
            raise DatasetError(f"{spec}: unreadable zip archive ({error})") from error
        return images, labels, name
    raise DatasetError(f"{spec}: unsupported dataset file (expected a folder, .zip or .tar.gz)")


def _fit_resolution(images: np.ndarray, resolution: int | None) -> np.ndarray:
    if resolution is None:
        return images
    return _resize_batch(images, resolution)


# CIFAR-10 python batches are pickles. Unpickling can run arbitrary code, so only the handful of
# globals that a numpy array (and Python 3's protocol-2 bytes encoding) needs are resolvable.
def _allowed_pickle_globals() -> dict:
    try:
        from numpy._core.multiarray import _reconstruct, scalar
        from numpy._core.numeric import _frombuffer  # used by pickle protocol 5
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar
        from numpy.core.numeric import _frombuffer
    import codecs

    allowed = {}
    for prefix in ("numpy.core", "numpy._core"):  # numpy 1.x and 2.x spell the module differently
        allowed[(f"{prefix}.multiarray", "_reconstruct")] = _reconstruct
        allowed[(f"{prefix}.multiarray", "scalar")] = scalar
        allowed[(f"{prefix}.numeric", "_frombuffer")] = _frombuffer
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    allowed[("_codecs", "encode")] = codecs.encode
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    _allowed = None

    def find_class(self, module, name):
        if _RestrictedUnpickler._allowed is None:
            _RestrictedUnpickler._allowed = _allowed_pickle_globals()
        try:
            return _RestrictedUnpickler._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def _parse_cifar_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        # batches written by Python 2 hold byte-string keys: encoding='bytes' keeps them as bytes
        batch = _RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as error:  # any unpickling failure means a corrupt or foreign file
        raise DatasetError(f"{where}: not a readable CIFAR-10 batch ({error})") from error
    if not isinstance(batch, dict):
        raise DatasetError(f"{where}: not a CIFAR-10 batch (expected a dict)")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * CIFAR_RESOLUTION ** 2:
        raise DatasetError(f"{where}: 'data' must be a uint8 array [N, 3072]")
    labels = np.asarray(labels if labels is not None else [], dtype=np.int64)
    if labels.shape != (data.shape[0],):
        raise DatasetError(f"{where}: 'labels' must hold one integer per image")
    images = data.reshape(-1, 3, CIFAR_RESOLUTION, CIFAR_RESOLUTION)
    return images, labels


def _concat_cifar(parts) -> tuple[np.ndarray, np.ndarray]:
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return images, labels


def _load_cifar_folder(folder: str):
    parts = []
    for batch_name in CIFAR_TRAIN_BATCHES:
        path = os.path.join(folder, batch_name)
        with open(path, "rb") as handle:
            parts.append(_parse_cifar_batch(handle.read(), path))
    return _concat_cifar(parts)


def _load_cifar_tar(path: str):
    try:
        with tarfile.open(path, "r:*") as archive:
            members = {os.path.basename(m.name): m for m in archive.getmembers() if m.isfile()}
            missing = [b for b in CIFAR_TRAIN_BATCHES if b not in members]
            if missing:
                raise DatasetError(f"{path}: not a CIFAR-10 archive (missing {', '.join(missing)})")
            parts = []
            for batch_name in CIFAR_TRAIN_BATCHES:
                member = members[batch_name]
                raw = archive.extractfile(member).read()  # in memory: nothing touches the disk
                parts.append(_parse_cifar_batch(raw, f"{path}:{member.name}"))
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DatasetError(f"{path}: unreadable tar archive ({error})") from error
    return _concat_cifar(parts)


def _is_listed_image(where: str) -> bool:
    """A supported image (True), no image (False), or an image format we do not read (DatasetError)."""
    try:
        return is_image_name(where)
    except ImageFormatError as error:
        raise DatasetError(str(error)) from error


class _FolderSource:
    """Lists and reads the image files under a folder (recursively)."""

    def __init__(self, root: str):
        self.root = root

    def image_names(self) -> list[str]:
        names = []
        for folder, _, files in os.walk(self.root):
            for file_name in files:
                rel = os.path.relpath(os.path.join(folder, file_name), self.root).replace(os.sep, "/")
                if _is_listed_image(self.describe(rel)):
                    names.append(rel)
        return sorted(names)

    def read(self, name: str) -> bytes:
        with open(os.path.join(self.root, name), "rb") as handle:
            return handle.read()

    def open(self, name: str):
        return open(os.path.join(self.root, name), "rb")

    def size_optional(self, name: str) -> int | None:
        path = os.path.join(self.root, name)
        return os.path.getsize(path) if os.path.isfile(path) else None

    def read_limited(self, name: str, limit: int) -> bytes:
        with open(os.path.join(self.root, name), "rb") as handle:
            return handle.read(limit)

    def describe(self, name: str) -> str:
        return os.path.join(self.root, name)


class _ZipSource:
    """Lists and reads the image files inside a zip archive (the StyleGAN2-ADA dataset layout)."""

    def __init__(self, path: str, archive: zipfile.ZipFile):
        self.path, self.archive = path, archive

    def image_names(self) -> list[str]:
        return sorted(n for n in self.archive.namelist()
                      if not n.endswith("/") and _is_listed_image(self.describe(n)))

    def read(self, name: str) -> bytes:
        return self.archive.read(name)

    def open(self, name: str):
        return self.archive.open(name)

    def size_optional(self, name: str) -> int | None:
        try:
            return self.archive.getinfo(name).file_size
        except KeyError:
            return None

    def read_limited(self, name: str, limit: int) -> bytes:
        with self.archive.open(name) as handle:
            return handle.read(limit)

    def describe(self, name: str) -> str:
        return f"{self.path}:{name}"


def _load_image_files(source, resolution: int | None, use_labels: bool):
    names = source.image_names()
    if not names:
        raise DatasetError(f"{source.describe('')}: dataset is empty (no .png/.jpg images found)")
    images, expected = [], None
    for index, name in enumerate(names):
        array = _decode_image(source.read(name), source.describe(name))
        shape = array.shape  # [C, H, W]
        if shape[1] != shape[2]:
            raise DatasetError(f"{source.describe(name)}: image is not square ({shape[2]}x{shape[1]})")
        if expected is None:
            expected = shape
            if resolution is None and (shape[1] & (shape[1] - 1)) != 0:
                raise DatasetError(f"{source.describe(name)}: resolution {shape[1]} is not a power "
                                   f"of two (pass a resolution to resize)")
        elif shape != expected:
            raise DatasetError(f"{source.describe(name)}: shape {list(shape)} (channels, height, "
                               f"width) differs from the first image's {list(expected)}")
        images.append(array)
        if (index + 1) % 10000 == 0:
            print(f"loaded {index + 1}/{len(names)} images from {source.describe('')}", flush=True)
    stacked = np.stack(images)
    if resolution is not None:
        stacked = _resize_batch(stacked, resolution)
    # dataset.json is only consulted when labels are wanted, as in StyleGAN2-ADA
    labels = _read_labels(source, names) if use_labels else None
    return stacked, labels


def _decode_image(raw: bytes, where: str) -> np.ndarray:
    try:
        with open_image(raw, where) as image:
            if image.mode == "P":
                image = image.convert("RGB")
            if image.mode not in ("L", "RGB"):
                raise DatasetError(f"{where}: unsupported image mode {image.mode!r} "
                                   f"(need greyscale 'L' or 'RGB')")
            array = np.asarray(image, dtype=np.uint8)
    except DatasetError:
        raise
    except ImageFormatError as error:
        raise DatasetError(str(error)) from error
    except Exception as error:  # PIL raises many types for truncated or foreign files
        raise DatasetError(f"{where}: corrupt or unreadable image ({error})") from error
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


# dataset.json limits: labels are one [name, class] pair per image, so a file much larger than the
# names it can hold is refused before it is read (a zip member is never read past its stated size);
# class numbers become one-hot vectors and a network's label embedding, so they are bounded too (more
# than any public class-conditional set: ImageNet-21k has 21,841 classes).
LABELS_BYTES_BASE = 1 << 20
LABELS_BYTES_PER_IMAGE = 1 << 10
MAX_CLASSES = 100_000


def labels_size_limit(num_images: int) -> int:
    """The largest dataset.json (bytes) accepted for `num_images` images: 1 MiB + 1 KiB per image."""
    return LABELS_BYTES_BASE + LABELS_BYTES_PER_IMAGE * int(num_images)


def check_labels_size(size: int, where: str, num_images: int) -> None:
    limit = labels_size_limit(num_images)
    if size > limit:
        raise DatasetError(f"{where}: {size} bytes is too large for the labels of {num_images} images "
                           f"(at most {limit} bytes: 1 MiB + 1 KiB per image)")


def parse_labels(raw: bytes, where: str, names: list[str]) -> np.ndarray | None:
    """dataset.json's {"labels": [[file name, class], ...]} as one class number per name of `names`
    (None for {"labels": null}). Anything else is a DatasetError naming the file and the entry."""
    check_labels_size(len(raw), where, len(names))
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise DatasetError(f"{where}: not valid JSON ({error})") from error
    if not isinstance(meta, dict) or "labels" not in meta:
        raise DatasetError(f'{where}: expected an object {{"labels": [[file name, class], ...]}} '
                           f'(or "labels": null), got {type(meta).__name__}'
                           + (f" with keys {sorted(meta)[:5]}" if isinstance(meta, dict) else ""))
    entries = meta["labels"]
    if entries is None:
        return None
    if not isinstance(entries, list):
        raise DatasetError(f"{where}: 'labels' must be a list of [file name, class], got {type(entries).__name__}")
    by_name: dict[str, int] = {}
    for index, entry in enumerate(entries):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                and isinstance(entry[1], int) and not isinstance(entry[1], bool)):
            raise DatasetError(f"{where}: labels[{index}] is {entry!r:.80}; expected [file name, class number]")
        name, label = entry[0].replace("\\", "/"), entry[1]
        if not 0 <= label < MAX_CLASSES:
            raise DatasetError(f"{where}: labels[{index}] ({name}): class {label} is outside 0..{MAX_CLASSES - 1}")
        if by_name.setdefault(name, label) != label:
            raise DatasetError(f"{where}: {name} has two different labels ({by_name[name]} and {label})")
    missing = [n for n in names if n not in by_name]
    if missing:
        raise DatasetError(f"{where}: no label for {missing[0]}"
                           + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return np.array([by_name[n] for n in names], dtype=np.int64)


def _read_labels(source, names: list[str]) -> np.ndarray | None:
    size = source.size_optional("dataset.json")
    if size is None:
        return None
    where = source.describe("dataset.json")
    check_labels_size(size, where, len(names))  # before reading: a huge file is never loaded
    return parse_labels(source.read_limited("dataset.json", labels_size_limit(len(names)) + 1), where, names)
