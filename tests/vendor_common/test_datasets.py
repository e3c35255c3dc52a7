"""vendor.common.datasets: every format on data made here, checked against hand-built expectations."""
import io
import json
import os
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from vendor.common.datasets import DatasetError, ImageDataset, load_dataset, subset_indices


# ------------------------------------------------------------------------------------------------
# helpers that build tiny datasets in tmp_path


def write_png(path, array):
    """array: [H, W] (greyscale) or [H, W, 3] uint8."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def cifar_batch(first_value, count, first_label):
    """A CIFAR-10 style batch whose image k has R = v, G = v + 1, B = v + 2 (v = first_value + k)."""
    data = np.zeros((count, 3072), dtype=np.uint8)
    for k in range(count):
        v = first_value + k
        data[k, :1024], data[k, 1024:2048], data[k, 2048:] = v, v + 1, v + 2
    # bytes keys, as in the original Python 2 pickles
    return {b"batch_label": b"training batch", b"data": data,
            b"labels": [first_label + k for k in range(count)],
            b"filenames": [b"img%d.png" % k for k in range(count)]}


def cifar_batches(count_per_batch=2):
    return {f"data_batch_{i}": cifar_batch(10 * i, count_per_batch, i) for i in range(1, 6)}


def expected_cifar(count_per_batch=2):
    values = [10 * i + k for i in range(1, 6) for k in range(count_per_batch)]
    labels = [i + k for i in range(1, 6) for k in range(count_per_batch)]
    return values, labels


# ------------------------------------------------------------------------------------------------
# digits


def bilinear_upsample_reference(image, size):
    """Float64 bilinear resize with half-pixel centres and edge clamping (PyTorch's
    align_corners=False convention) of a 2-D array."""
    in_size = image.shape[0]
    scale = in_size / size
    coords = np.clip((np.arange(size) + 0.5) * scale - 0.5, 0, None)
    low = np.minimum(np.floor(coords).astype(int), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    frac = coords - low
    rows = image[low] * (1 - frac)[:, None] + image[high] * frac[:, None]
    return rows[:, low] * (1 - frac)[None, :] + rows[:, high] * frac[None, :]


def test_digits_native_resolution_matches_sklearn_scaled_to_uint8():
    from sklearn.datasets import load_digits

    reference = load_digits()
    dataset = load_dataset("digits", resolution=8, channels=1, use_labels=True)
    assert isinstance(dataset, ImageDataset)
    assert len(dataset) == 1797 and dataset.resolution == 8 and dataset.num_channels == 1
    expected = np.rint(reference.images * 255.0 / 16.0).astype(np.uint8)
    np.testing.assert_array_equal(dataset.images_uint8()[:, 0], expected)
    assert dataset.label_dim == 10
    image, label = dataset[5]
    assert image.shape == (1, 8, 8) and image.dtype == np.uint8 and label == reference.target[5]
    assert dataset.images_uint8()[:, 0, 0, 0].max() == 0  # corners of digits are background
    assert dataset.images_uint8().max() == 255  # value 16 maps to 255


def test_digits_default_is_rgb_32_and_bilinear_upsampled():
    from sklearn.datasets import load_digits

    reference = load_digits()
    dataset = load_dataset("digits")
    assert dataset.resolution == 32 and dataset.num_channels == 3 and dataset.label_dim == 0
    images = dataset.images_uint8()
    assert images.shape == (1797, 3, 32, 32)
    np.testing.assert_array_equal(images[:, 0], images[:, 1])  # grey repeated
    np.testing.assert_array_equal(images[:, 0], images[:, 2])
    for index in (0, 1, 100):
        source = np.rint(reference.images[index] * 255.0 / 16.0)
        expected = bilinear_upsample_reference(source, 32)
        assert np.abs(images[index, 0].astype(np.float64) - expected).max() <= 1.0
    assert dataset[0][1] == 0  # labels off: all zero


def test_ratio_subset_is_deterministic_and_seeded():
    full = load_dataset("digits", resolution=8, channels=1)
    part = load_dataset("digits", resolution=8, channels=1, ratio=0.1, seed=3)
    again = load_dataset("digits", resolution=8, channels=1, ratio=0.1, seed=3)
    other = load_dataset("digits", resolution=8, channels=1, ratio=0.1, seed=4)
    assert len(part) == round(0.1 * 1797) == 180
    np.testing.assert_array_equal(part.images_uint8(), again.images_uint8())
    assert not np.array_equal(part.images_uint8(), other.images_uint8())
    indices = np.sort(np.random.RandomState(3).permutation(1797)[:180])
    np.testing.assert_array_equal(part.images_uint8(), full.images_uint8()[indices])


def test_subset_indices_at_least_one_and_full_ratio():
    assert len(subset_indices(10, 0.01, 0)) == 1
    np.testing.assert_array_equal(subset_indices(7, 1.0, 5), np.arange(7))
    assert len(subset_indices(10, 0.25, 0)) == 2  # round(2.5) -> 2 (round half to even)


@pytest.mark.parametrize("ratio", [0.0, -0.5, 1.01, float("nan")])
def test_ratio_outside_unit_interval_is_rejected(ratio):
    with pytest.raises(DatasetError, match="ratio"):
        load_dataset("digits", resolution=8, ratio=ratio)


def test_bad_arguments_are_named():
    with pytest.raises(DatasetError, match="channels"):
        load_dataset("digits", channels=2)
    with pytest.raises(DatasetError, match="resolution"):
        load_dataset("digits", resolution=0)


# ------------------------------------------------------------------------------------------------
# CIFAR-10 python batches


@pytest.mark.parametrize("protocol", [2, 4, 5])  # 2: the original files; 4, 5: re-pickled copies
def test_cifar_folder_reads_channel_major_rows_and_labels(tmp_path, protocol):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, batch in cifar_batches().items():
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle, protocol=protocol)
    (folder / "test_batch").write_bytes(b"not read")  # the test split is ignored
    dataset = load_dataset(str(folder), use_labels=True)
    values, labels = expected_cifar()
    images = dataset.images_uint8()
    assert images.shape == (10, 3, 32, 32) and dataset.resolution == 32
    for k, value in enumerate(values):
        assert (images[k, 0] == value).all() and (images[k, 1] == value + 1).all()
        assert (images[k, 2] == value + 2).all()
    assert [dataset[k][1] for k in range(10)] == labels
    assert dataset.label_dim == max(labels) + 1


def test_cifar_tar_gz_is_read_in_memory(tmp_path):
    archive_path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive_path, "w:gz") as archive:
        for name, batch in cifar_batches(count_per_batch=1).items():
            raw = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            archive.addfile(info, io.BytesIO(raw))
    before = sorted(os.listdir(tmp_path))
    dataset = load_dataset(str(archive_path), resolution=16, channels=1, use_labels=True)
    assert sorted(os.listdir(tmp_path)) == before  # nothing extracted to disk
    values, labels = expected_cifar(count_per_batch=1)
    assert dataset.images_uint8().shape == (5, 1, 16, 16)
    # constant planes: luma of (v, v+1, v+2) with 601 weights, unchanged by resizing
    for k, value in enumerate(values):
        luma = 0.299 * value + 0.587 * (value + 1) + 0.114 * (value + 2)
        assert np.abs(dataset.images_uint8()[k].astype(float) - luma).max() <= 0.5 + 1e-9
    assert [dataset[k][1] for k in range(5)] == labels
    assert dataset.name == "cifar-10-python"


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_cifar_pickle_cannot_run_code(tmp_path):
    folder = tmp_path / "cifar"
    folder.mkdir()
    marker = str(tmp_path / "pwned")
    for name, batch in cifar_batches().items():
        batch[b"batch_label"] = _Exploit(marker)
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle, protocol=2)
    with pytest.raises(DatasetError, match="data_batch_1"):
        load_dataset(str(folder))
    assert not os.path.exists(marker)


def test_corrupt_cifar_batch_and_archive(tmp_path):
    folder = tmp_path / "cifar"
    folder.mkdir()
    for name, batch in cifar_batches().items():
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle, protocol=2)
    (folder / "data_batch_3").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DatasetError, match="data_batch_3"):
        load_dataset(str(folder))
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(b"this is not gzip")
    with pytest.raises(DatasetError, match="broken.tar.gz"):
        load_dataset(str(broken))


# ------------------------------------------------------------------------------------------------
# image folders


def test_image_folder_recursive_sorted(tmp_path):
    root = tmp_path / "imgs"
    write_png(str(root / "b" / "x.png"), np.full((4, 4, 3), 30))
    write_png(str(root / "a.png"), np.full((4, 4, 3), 10))
    write_png(str(root / "b" / "a.png"), np.full((4, 4, 3), 20))
    (root / "notes.txt").write_text("ignored")
    dataset = load_dataset(str(root))
    # sorted by relative path: a.png, b/a.png, b/x.png
    assert [int(dataset[k][0][0, 0, 0]) for k in range(3)] == [10, 20, 30]
    assert dataset.resolution == 4 and dataset.num_channels == 3 and dataset.name == "imgs"


def test_greyscale_folder_and_channel_conversion(tmp_path):
    root = tmp_path / "grey"
    pattern = (np.arange(64).reshape(8, 8) * 4).astype(np.uint8)
    write_png(str(root / "0.png"), pattern)
    grey = load_dataset(str(root))
    assert grey.num_channels == 1
    np.testing.assert_array_equal(grey[0][0][0], pattern)
    rgb = load_dataset(str(root), channels=3)
    assert rgb.num_channels == 3
    for c in range(3):
        np.testing.assert_array_equal(rgb[0][0][c], pattern)


def test_folder_size_and_shape_errors_name_the_file(tmp_path):
    root = tmp_path / "mixed"
    write_png(str(root / "a.png"), np.zeros((8, 8, 3)))
    write_png(str(root / "b.png"), np.zeros((4, 4, 3)))
    with pytest.raises(DatasetError, match="b.png"):
        load_dataset(str(root))

    root = tmp_path / "channels"
    write_png(str(root / "a.png"), np.zeros((8, 8, 3)))
    write_png(str(root / "b.png"), np.zeros((8, 8)))
    with pytest.raises(DatasetError, match="b.png"):
        load_dataset(str(root))

    root = tmp_path / "notsquare"
    write_png(str(root / "wide.png"), np.zeros((4, 8, 3)))
    with pytest.raises(DatasetError, match="wide.png.*not square"):
        load_dataset(str(root))

    root = tmp_path / "npot"
    write_png(str(root / "six.png"), np.zeros((6, 6, 3)))
    with pytest.raises(DatasetError, match="six.png.*power of two"):
        load_dataset(str(root))
    resized = load_dataset(str(root), resolution=8)  # allowed once a resolution is asked for
    assert resized.images_uint8().shape == (1, 3, 8, 8)


def test_corrupt_image_and_empty_folder(tmp_path):
    root = tmp_path / "corrupt"
    write_png(str(root / "good.png"), np.zeros((4, 4, 3)))
    (root / "bad.png").write_bytes(png_bytes(np.zeros((4, 4, 3)))[:20])  # truncated
    with pytest.raises(DatasetError, match="bad.png"):
        load_dataset(str(root))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="empty"):
        load_dataset(str(empty))


def test_missing_path_and_unknown_file_type(tmp_path):
    with pytest.raises(DatasetError, match="nowhere"):
        load_dataset(str(tmp_path / "nowhere"))
    other = tmp_path / "data.csv"
    other.write_text("1,2,3")
    with pytest.raises(DatasetError, match="data.csv"):
        load_dataset(str(other))


# ------------------------------------------------------------------------------------------------
# StyleGAN2-ADA zip layout


def make_zip(path, images, labels=None):
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in images.items():
            archive.writestr(name, png_bytes(array))
        if labels is not None:
            archive.writestr("dataset.json", json.dumps({"labels": labels}))


def test_zip_with_labels(tmp_path):
    path = tmp_path / "set.zip"
    images = {"00000/img00000001.png": np.full((8, 8, 3), 7),
              "00000/img00000000.png": np.full((8, 8, 3), 3)}
    make_zip(path, images, [["00000/img00000000.png", 4], ["00000/img00000001.png", 2]])
    dataset = load_dataset(str(path), use_labels=True)
    assert len(dataset) == 2 and dataset.name == "set"
    assert int(dataset[0][0][0, 0, 0]) == 3 and dataset[0][1] == 4
    assert int(dataset[1][0][0, 0, 0]) == 7 and dataset[1][1] == 2
    assert dataset.label_dim == 5
    unlabelled = load_dataset(str(path))
    assert unlabelled.label_dim == 0 and unlabelled[0][1] == 0


def test_zip_errors(tmp_path):
    path = tmp_path / "missing_label.zip"
    make_zip(path, {"a.png": np.zeros((4, 4, 3)), "b.png": np.zeros((4, 4, 3))}, [["a.png", 1]])
    with pytest.raises(DatasetError, match="b.png"):
        load_dataset(str(path), use_labels=True)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(DatasetError, match="bad.zip"):
        load_dataset(str(bad))
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("readme.txt", "no images")
    with pytest.raises(DatasetError, match="empty"):
        load_dataset(str(empty))
    wrong = tmp_path / "odd.zip"
    make_zip(wrong, {"a.png": np.zeros((4, 4, 3)), "b.png": np.zeros((8, 8, 3))})
    with pytest.raises(DatasetError, match="b.png"):
        load_dataset(str(wrong))
