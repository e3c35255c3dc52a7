"""Convert an image folder, a dataset zip, CIFAR-10 (python batches folder or .tar.gz) or the
built-in `digits` into the StyleGAN2-ADA dataset layout: PNGs named `NNNNN/imgNNNNNNNN.png`
(1000 per folder) plus `dataset.json` with `{"labels": [[name, label], ...]}` (or null), written
to a .zip or a new folder.

  python vendor/stylegan2_ada/dataset_tool.py --source=~/downloads/cifar-10-python.tar.gz --dest=~/datasets/cifar10.zip
  python vendor/stylegan2_ada/dataset_tool.py --source=my_images/ --dest=my_dataset.zip --resolution=256

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

from vendor.common.datasets import DatasetError, load_dataset


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


def convert_dataset(source, dest, resolution=None, max_images=None, verbose=True):
    """Read `source` with the shared loader and write `dest` (.zip or folder) atomically.
    Returns the number of images written. Bad input raises click.BadParameter naming the option."""
    check_resolution(resolution)
    if max_images is not None and max_images < 1:
        raise click.BadParameter('must be at least 1', param_hint='--max-images')
    if source != 'digits' and not os.path.exists(os.path.expanduser(source)):
        raise click.BadParameter(f'{source}: no such file or folder', param_hint='--source')
    dest = os.path.expanduser(dest)
    is_zip = dest.lower().endswith('.zip')
    if os.path.exists(dest) and (is_zip or not os.path.isdir(dest) or os.listdir(dest)):
        raise click.BadParameter(f'{dest} already exists (remove it or choose another name)', param_hint='--dest')
    parent = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(parent):
        raise click.BadParameter(f'folder {parent} does not exist', param_hint='--dest')

    try:
        dataset = load_dataset(source if source == 'digits' else os.path.expanduser(source),
                               resolution=resolution, use_labels=True)
    except DatasetError as err:
        raise click.BadParameter(str(err), param_hint='--source')
    count = len(dataset) if max_images is None else min(len(dataset), max_images)
    has_labels = dataset.label_dim > 0

    entries = []  # (archive name, png bytes) produced lazily while writing
    def items():
        for index in range(count):
            image, label = dataset[index]
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
        print(f'Wrote {count} images ({dataset.resolution}x{dataset.resolution}, {dataset.num_channels} channels'
              f'{", labelled" if has_labels else ""}) to {dest}')
    return count


@click.command()
@click.option('--source', help='Image folder, dataset .zip, CIFAR-10 folder / .tar.gz, or "digits"', required=True, metavar='PATH')
@click.option('--dest', help='Output .zip or (new or empty) folder', required=True, metavar='PATH')
@click.option('--resolution', help='Resize to this power-of-two resolution [default: keep]', type=int, metavar='INT')
@click.option('--max-images', help='Stop after writing this many images', type=int, metavar='INT')
def main(source, dest, resolution, max_images):
    """Convert a dataset into the StyleGAN2-ADA training layout."""
    convert_dataset(source, dest, resolution=resolution, max_images=max_images)


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
