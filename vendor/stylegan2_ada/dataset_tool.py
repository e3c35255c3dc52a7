"""Convert an image folder, a dataset zip, CIFAR-10 (python batches folder or .tar.gz), MNIST
(`train-images-idx3-ubyte.gz`, padded to 32x32 as upstream), an LSUN `*_lmdb` folder (needs the optional
`lmdb` package) or the built-in `digits` into the StyleGAN2-ADA dataset layout: PNGs named
`NNNNN/imgNNNNNNNN.png` (1000 per folder) plus `dataset.json` with `{"labels": [[name, label], ...]}`
(or null), written to a .zip or a new folder.

  python vendor/stylegan2_ada/dataset_tool.py --source=~/downloads/cifar-10-python.tar.gz --dest=~/datasets/cifar10.zip
  python vendor/stylegan2_ada/dataset_tool.py --source=~/downloads/lsun/cat_lmdb --dest=~/datasets/lsuncat.zip \
      --transform=center-crop --width=256 --height=256 --max-images=200000
  python vendor/stylegan2_ada/dataset_tool.py --source=my_images/ --dest=my_dataset.zip --resolution=256

Upstream's flags: --transform center-crop | center-crop-wide, --width/--height (output size, resized with
--resize-filter lanczos (default) | box), --max-images. center-crop cuts the largest centred square;
center-crop-wide cuts a width:height band and centres it on a black width x width canvas (images too
small for it are skipped, as upstream). Without those flags, --resolution (ours) resizes square sources
through the shared loader. The result must be square with a power-of-two side.

Image files are decoded only through vendor.common.images: PNG and JPEG by their names (another image
format is refused by name), an lmdb's records as WebP, JPEG or PNG; never a decoder picked by the bytes.

The output is written to a temporary name and renamed at the end: a failure leaves nothing behind.
"""
import io
import json
import os
import shutil
import tempfile
import zipfile

import click
import numpy as np
import PIL.Image

from vendor.common.datasets import DatasetError, check_labels_size, labels_size_limit, load_dataset, parse_labels
from vendor.common.images import LMDB_FORMATS, ImageFormatError, is_image_name, open_image


RESIZE_FILTERS = {'box': PIL.Image.BOX, 'lanczos': PIL.Image.LANCZOS}


def _bad(flag, message):
    return click.BadParameter(message, param_hint=flag)


def _to_hwc(array):
    """Decoded PIL image -> uint8 HxWxC (C = 1 or 3)."""
    array = np.asarray(array, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def _decode(raw, where, formats=None):
    """Through the shared decoder: the format `where`'s name says (or one of `formats`), nothing else."""
    try:
        with open_image(raw, where, formats) as img:
            if img.mode not in ('L', 'RGB'):
                img = img.convert('RGB')
            return _to_hwc(img)
    except ImageFormatError as err:
        raise _bad('--source', str(err))
    except Exception as err:  # PIL raises many types for foreign or truncated files
        raise _bad('--source', f'{where}: corrupt or unreadable image ({err})')


def _labels(size, read, where, names):
    """dataset.json by the shared loader's rules (size limit, [name, class] pairs, every image labelled):
    one class per name of `names`, or None without a file or with {"labels": null}."""
    if size is None:
        return None
    try:
        check_labels_size(size, where, len(names))  # before reading: a huge file is never loaded
        return parse_labels(read(labels_size_limit(len(names)) + 1), where, names)
    except DatasetError as err:
        raise _bad('--source', str(err))


def open_raw_source(source):
    """(count, iterator of (HWC uint8 image, label or None)) for any source, at its own size."""
    path = os.path.expanduser(source)
    if os.path.basename(path) == 'train-images-idx3-ubyte.gz':
        return _open_mnist(path)
    if path.rstrip('/').endswith('_lmdb') and os.path.isdir(path):
        return _open_lmdb(path)
    if os.path.isdir(path) or path.lower().endswith('.zip'):
        return _open_images(path)
    dataset = _load_shared(source, None)  # digits, CIFAR-10: already square, decoded by the shared loader
    return len(dataset), ((dataset[i][0].transpose(1, 2, 0), dataset[i][1] if dataset.label_dim else None)
                          for i in range(len(dataset)))


def _is_image(where):
    try:
        return is_image_name(where)
    except ImageFormatError as err:  # an image format we do not read: refused by name, not left out
        raise _bad('--source', str(err))


def _open_images(path):
    if os.path.isdir(path):
        names = sorted(rel for rel in (os.path.relpath(os.path.join(d, f), path).replace(os.sep, '/')
                                       for d, _, files in os.walk(path) for f in files)
                       if _is_image(f'{path}/{rel}'))
        read = lambda n: open(os.path.join(path, n), 'rb').read()  # noqa: E731
        meta = os.path.join(path, 'dataset.json')
        meta_size = os.path.getsize(meta) if os.path.isfile(meta) else None
        read_meta = lambda limit: open(meta, 'rb').read(limit)  # noqa: E731
    else:
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as err:
            raise _bad('--source', f'{path}: unreadable zip archive ({err})')
        names = sorted(n for n in archive.namelist() if not n.endswith('/') and _is_image(f'{path}/{n}'))
        read = archive.read
        meta = f'{path}/dataset.json'
        meta_size = archive.getinfo('dataset.json').file_size if 'dataset.json' in archive.namelist() else None
        read_meta = lambda limit: archive.open('dataset.json').read(limit)  # noqa: E731
    if not names:
        raise _bad('--source', f'{path}: no images found')
    labels = _labels(meta_size, read_meta, meta, names)
    return len(names), ((_decode(read(n), f'{path}/{n}'), None if labels is None else int(labels[i]))
                        for i, n in enumerate(names))


def _read_idx(path, magic):
    import gzip
    try:
        with gzip.open(path, 'rb') as f:
            data = f.read()
    except OSError as err:
        raise _bad('--source', f'{path}: unreadable ({err})')
    if len(data) < 8 or int.from_bytes(data[:4], 'big') != magic:
        raise _bad('--source', f'{path}: not an MNIST idx file (magic {magic} expected)')
    return data


def _open_mnist(images_gz):
    images = _read_idx(images_gz, 2051)
    count, rows, cols = (int.from_bytes(images[i:i + 4], 'big') for i in (4, 8, 12))
    pixels = np.frombuffer(images, np.uint8, count * rows * cols, offset=16).reshape(count, rows, cols)
    labels_gz = os.path.join(os.path.dirname(images_gz), 'train-labels-idx1-ubyte.gz')
    labels = np.frombuffer(_read_idx(labels_gz, 2049), np.uint8, count, offset=8)
    pixels = np.pad(pixels, [(0, 0), (2, 2), (2, 2)], 'constant', constant_values=0)  # 28 -> 32, as upstream
    return count, ((pixels[i][:, :, None], int(labels[i])) for i in range(count))


def _open_lmdb(path):
    try:
        import lmdb
    except ImportError:
        raise _bad('--source', f'{path}: reading an LSUN lmdb needs the optional package lmdb (pip install lmdb)')
    env = lmdb.open(path, readonly=True, lock=False)
    count = env.stat()['entries']

    def items():
        with env.begin(write=False) as txn:
            for key, value in txn.cursor():
                yield _decode(value, f'{path}:{key!r}', LMDB_FORMATS), None  # records: WebP as LSUN, JPEG or PNG
    return count, items()


def apply_transform(img, transform, width, height, resample):
    """Upstream's scale / center-crop / center-crop-wide on an HWC image; None = skip this image."""
    channels = img.shape[2]
    pil = lambda a: PIL.Image.fromarray(a[:, :, 0] if channels == 1 else a)  # noqa: E731
    if transform is None:
        if width is None and height is None:
            return img
        return _to_hwc(pil(img).resize((width or img.shape[1], height or img.shape[0]), resample))
    if transform == 'center-crop':
        crop = min(img.shape[0], img.shape[1])
        top, left = (img.shape[0] - crop) // 2, (img.shape[1] - crop) // 2
        return _to_hwc(pil(img[top:top + crop, left:left + crop]).resize((width, height), resample))
    band = int(np.round(width * img.shape[0] / img.shape[1]))  # center-crop-wide
    if img.shape[1] < width or band < height:
        return None
    top = (img.shape[0] - band) // 2
    out = _to_hwc(pil(img[top:top + band]).resize((width, height), resample))
    canvas = np.zeros([width, width, channels], dtype=np.uint8)
    canvas[(width - height) // 2:(width - height) // 2 + height] = out
    return canvas


def _load_shared(source, resolution):
    try:
        return load_dataset(source if source == 'digits' else os.path.expanduser(source),
                            resolution=resolution, use_labels=True)
    except DatasetError as err:
        raise click.BadParameter(str(err), param_hint='--source')


def check_resolution(resolution):
    if resolution is not None and (resolution < 4 or resolution & (resolution - 1)):
        raise click.BadParameter(f'{resolution} is not a power of two >= 4', param_hint='--resolution')


def archive_name(index):
    return f'{index // 1000:05d}/img{index:08d}.png'


def encode_png(image_chw):
    """uint8 [C,H,W] -> PNG bytes (greyscale 'L' for one channel)."""
    hwc = np.asarray(image_chw).transpose(1, 2, 0)
    img = PIL.Image.fromarray(hwc[:, :, 0], 'L') if hwc.shape[2] == 1 else PIL.Image.fromarray(hwc, 'RGB')
    buffer = io.BytesIO()
    img.save(buffer, format='png', compress_level=0, optimize=False)
    return buffer.getvalue()


def _default_mode(is_dir):
    """Permissions a plain open()/mkdir() would give (mkstemp/mkdtemp use 0600/0700)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if is_dir else 0o666) & ~umask


def convert_dataset(source, dest, resolution=None, max_images=None, verbose=True, transform=None, width=None,
                    height=None, resize_filter='lanczos'):
    """Read `source` and write `dest` (.zip or folder) atomically. Returns the number of images
    written. Bad input raises click.BadParameter naming the option."""
    check_resolution(resolution)
    if max_images is not None and max_images < 1:
        raise click.BadParameter('must be at least 1', param_hint='--max-images')
    if source != 'digits' and not os.path.exists(os.path.expanduser(source)):
        raise click.BadParameter(f'{source}: no such file or folder', param_hint='--source')
    for flag, value in (('--width', width), ('--height', height)):
        if value is not None and value < 1:
            raise _bad(flag, 'must be at least 1')
    if transform is not None and (width is None or height is None):
        raise _bad('--transform', f'{transform} needs both --width and --height')
    if resize_filter not in RESIZE_FILTERS:
        raise _bad('--resize-filter', f'{resize_filter!r}: expected box or lanczos')
    raw = (transform is not None or width is not None or height is not None
           or os.path.basename(os.path.expanduser(source)) == 'train-images-idx3-ubyte.gz'
           or (source.rstrip('/').endswith('_lmdb') and os.path.isdir(os.path.expanduser(source))))
    if raw and resolution is not None:
        raise _bad('--resolution', 'cannot be combined with --transform/--width/--height (use --width and --height)')
    dest = os.path.expanduser(dest)
    is_zip = dest.lower().endswith('.zip')
    if os.path.exists(dest) and (is_zip or not os.path.isdir(dest) or os.listdir(dest)):
        raise click.BadParameter(f'{dest} already exists (remove it or choose another name)', param_hint='--dest')
    parent = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(parent):
        raise click.BadParameter(f'folder {parent} does not exist', param_hint='--dest')

    if raw:
        total, raw_items = open_raw_source(source)
        resample = RESIZE_FILTERS[resize_filter]
        shape = [None]

        def converted():  # upstream semantics: every output the same square power-of-two shape
            for image, label in raw_items:
                image = apply_transform(image, transform, width, height, resample)
                if image is None:
                    continue
                if image.shape[0] != image.shape[1]:
                    raise _bad('--source', f'image is not square after the transform ({image.shape[1]}x{image.shape[0]}); '
                                           f'use --transform or equal --width/--height')
                if image.shape[0] < 4 or image.shape[0] & (image.shape[0] - 1):
                    raise _bad('--width', f'{image.shape[0]}x{image.shape[0]}: the side must be a power of two')
                if shape[0] is None:
                    shape[0] = image.shape
                elif image.shape != shape[0]:
                    raise _bad('--source', f'image of shape {list(image.shape)} differs from the first {list(shape[0])} '
                                           f'(use --width/--height)')
                yield image.transpose(2, 0, 1), label
        count = total if max_images is None else min(total, max_images)
        converted_iter = converted()
        first = next(converted_iter, None)  # learns the shape and whether labels exist, before writing
        if first is None:
            raise _bad('--source', f'{source}: no image left to write (all too small for --transform?)')
        has_labels = first[1] is not None
        resolution_out, channels_out = shape[0][0], shape[0][2]

        def pairs():
            yield first
            yield from converted_iter
    else:
        dataset = _load_shared(source, resolution)
        count = len(dataset) if max_images is None else min(len(dataset), max_images)
        has_labels = dataset.label_dim > 0
        resolution_out, channels_out = dataset.resolution, dataset.num_channels

        def pairs():
            for index in range(len(dataset)):
                yield dataset[index]

    entries = []  # (archive name, png bytes) produced lazily while writing
    def items():
        for index, (image, label) in enumerate(pairs()):
            if index >= count:
                break
            name = archive_name(index)
            entries.append([name, int(label)] if has_labels else None)
            if verbose and (index + 1) % 1000 == 0:
                print(f'{index + 1}/{count} images', flush=True)
            yield name, encode_png(image)

    def metadata():
        return json.dumps({'labels': entries if has_labels else None})

    if is_zip:
        fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(dest) + '.', suffix='.tmp', dir=parent)
        os.close(fd)
        try:
            with zipfile.ZipFile(tmp, 'w', compression=zipfile.ZIP_STORED) as archive:
                for name, data in items():
                    archive.writestr(name, data)
                archive.writestr('dataset.json', metadata())
            os.chmod(tmp, _default_mode(is_dir=False))
            os.replace(tmp, dest)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
    else:
        tmp = tempfile.mkdtemp(prefix='.' + os.path.basename(os.path.abspath(dest)) + '.', dir=parent)
        try:
            for name, data in items():
                path = os.path.join(tmp, name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, 'wb') as f:
                    f.write(data)
            with open(os.path.join(tmp, 'dataset.json'), 'w') as f:
                f.write(metadata())
            os.chmod(tmp, _default_mode(is_dir=True))
            if os.path.isdir(dest):
                os.rmdir(dest)  # empty (checked above)
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    if verbose:
        print(f'Wrote {len(entries)} images ({resolution_out}x{resolution_out}, {channels_out} channels'
              f'{", labelled" if has_labels else ""}) to {dest}')
    return len(entries)


@click.command()
@click.option('--source', help='Image folder, dataset .zip, CIFAR-10 folder / .tar.gz, or "digits"', required=True, metavar='PATH')
@click.option('--dest', help='Output .zip or (new or empty) folder', required=True, metavar='PATH')
@click.option('--resolution', help='Resize to this power-of-two resolution [default: keep]', type=int, metavar='INT')
@click.option('--max-images', help='Stop after writing this many images', type=int, metavar='INT')
@click.option('--transform', help='Crop before resizing (needs --width and --height)', type=click.Choice(['center-crop', 'center-crop-wide']))
@click.option('--width', help='Output width (resized with --resize-filter)', type=int, metavar='INT')
@click.option('--height', help='Output height', type=int, metavar='INT')
@click.option('--resize-filter', help='Filter for --width/--height resizing [default: lanczos]', type=click.Choice(['box', 'lanczos']), default='lanczos')
def main(source, dest, resolution, max_images, transform, width, height, resize_filter):
    """Convert a dataset into the StyleGAN2-ADA training layout."""
    convert_dataset(source, dest, resolution=resolution, max_images=max_images, transform=transform, width=width,
                    height=height, resize_filter=resize_filter)


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
