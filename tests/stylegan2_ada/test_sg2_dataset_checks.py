"""Issue 23 item 7: StyleGAN2-ADA checks its dataset before the run folder exists.

The training set is read lazily (one image per item, in the DataLoader workers), so before this a
corrupt image passed the header check and ended the run in a traceback, with a run folder left behind;
so did a label file with an absurd class number (a 2 TB label embedding). train.py now decodes every
image once and reads --cond's labels strictly before it creates anything: exit 2, one message naming
the file, no run folder. The label-file rules themselves are the shared loader's (vendor/common/datasets.py).
"""
import io
import json
import os
import sys
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sg2_helpers  # noqa: E402
from vendor.common import datasets  # noqa: E402
from vendor.common.datasets import DatasetError, load_dataset  # noqa: E402


def png(seed, size=32):
    buffer = io.BytesIO()
    Image.fromarray(np.random.RandomState(seed).randint(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, 'PNG')
    return buffer.getvalue()


def corrupt_png(seed):
    """A PNG whose header (size, mode) is intact but whose pixel data is not: 30 bytes of IDAT inverted."""
    raw = png(seed)
    start = raw.index(b'IDAT') + 4 + 20
    return raw[:start] + bytes(b ^ 0xFF for b in raw[start:start + 30]) + raw[start + 30:]


def write_set(path, files):
    """`files` {name: bytes} as a zip (path ends in .zip) or a folder."""
    if str(path).endswith('.zip'):
        with zipfile.ZipFile(path, 'w', compression=zipfile.ZIP_DEFLATED) as z:
            for name, data in files.items():
                z.writestr(name, data)
    else:
        os.makedirs(path)
        for name, data in files.items():
            with open(os.path.join(path, name), 'wb') as f:
                f.write(data)
    return path


def images(count=4):
    return {f'img{k}.png': png(k) for k in range(count)}


def labels_json(labels):
    return json.dumps({'labels': labels}).encode()


def train_refuses(tmp_path, data, *extra):
    train = sg2_helpers.load_script('train')
    flags = list(sg2_helpers.TINY_FLAGS)
    flags[flags.index('--data') + 1] = str(data)
    outdir = tmp_path / 'runs'
    result = CliRunner().invoke(train.main, ['--outdir', str(outdir)] + flags + list(extra))
    errors = [line for line in result.output.splitlines() if line.startswith('Error:')]
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and 'Traceback' not in result.output, result.output
    assert not outdir.exists(), 'a run folder was created before the dataset was checked'
    return errors[0]


@pytest.mark.parametrize('kind', ['set.zip', 'folder'])
def test_corrupt_image_is_refused_before_the_run_folder(tmp_path, kind):
    files = images()
    files['img2.png'] = corrupt_png(2)
    data = write_set(tmp_path / kind, files)
    # control: the header check alone lets it through; only decoding the pixels finds it
    lazy = load_dataset(str(data), lazy=True)
    assert len(lazy) == 4 and lazy[1][0].shape == (3, 32, 32)
    with pytest.raises(DatasetError, match='img2.png'):
        lazy[2]
    error = train_refuses(tmp_path, data)
    assert error.startswith('Error: --data: ') and 'img2.png: corrupt or unreadable image' in error, error


def test_absurd_class_number_is_refused_before_the_run_folder(tmp_path):
    files = images()
    files['dataset.json'] = labels_json([[f'img{k}.png', 10 ** 9 if k == 1 else 0] for k in range(4)])
    data = write_set(tmp_path / 'set.zip', files)
    error = train_refuses(tmp_path, data, '--cond', '1')
    assert 'dataset.json: labels[1] (img1.png): class 1000000000 is outside 0..99999' in error, error


@pytest.mark.parametrize('kind', ['set.zip', 'folder'])
def test_huge_labels_file_is_refused_unread(tmp_path, kind, monkeypatch):
    files = images()
    limit = 2 ** 20 + 4 * 2 ** 10   # 1 MiB + 1 KiB per image, 4 images (by hand)
    assert datasets.labels_size_limit(4) == limit
    body = labels_json([[f'img{k}.png', k] for k in range(4)])
    files['dataset.json'] = body + b' ' * (limit - len(body))        # exactly at the limit: accepted
    data = write_set(tmp_path / ('at_' + kind), files)
    assert list(load_dataset(str(data), use_labels=True).labels()) == [0, 1, 2, 3]
    files['dataset.json'] += b' '                                     # one byte more: refused
    data = write_set(tmp_path / kind, files)
    with pytest.raises(DatasetError, match=f'dataset.json: {limit + 1} bytes is too large for the labels of 4 images'):
        load_dataset(str(data), use_labels=True)
    # refused from its stated size, without reading it
    monkeypatch.setattr(datasets, 'parse_labels', lambda *a: pytest.fail('the huge file was read'))
    with pytest.raises(DatasetError, match='too large'):
        load_dataset(str(data), use_labels=True, lazy=True)
    monkeypatch.undo()
    error = train_refuses(tmp_path, data, '--cond', '1')
    assert error.startswith('Error: --cond: ') and 'dataset.json' in error and 'too large' in error, error


@pytest.mark.parametrize('content, message', [
    (b'{"labels": [["img0.png", 0]', 'not valid JSON'),
    (b'\xff\xfe', 'not valid JSON'),
    (b'[' * 100000 + b']' * 100000, 'not valid JSON'),
    (b'[["img0.png", 0]]', 'expected an object {"labels"'),
    (b'{"label": []}', "got dict with keys ['label']"),
    (b'{"labels": {"img0.png": 0}}', "'labels' must be a list"),
    (labels_json([['img0.png', 0, 1]]), "labels[0] is ['img0.png', 0, 1]"),
    (labels_json([['img0.png', 1.5]]), 'labels[0] is'),
    (labels_json([['img0.png', True]]), 'labels[0] is'),
    (labels_json([[0, 0]]), 'labels[0] is'),
    (labels_json([['img0.png', -1]]), 'labels[0] (img0.png): class -1 is outside'),
    (labels_json([['img0.png', 100000]]), 'class 100000 is outside 0..99999'),
    (labels_json([['img0.png', 1], ['img0.png', 2]]), 'img0.png has two different labels (1 and 2)'),
    (labels_json([['img0.png', 1]]), 'no label for img1.png (and 2 more)'),
])
def test_malformed_labels_are_refused_naming_the_entry(tmp_path, content, message):
    files = images()
    files['dataset.json'] = content
    data = write_set(tmp_path / 'set.zip', files)
    for lazy in (False, True):
        with pytest.raises(DatasetError) as info:
            load_dataset(str(data), use_labels=True, lazy=lazy)
        assert str(info.value).startswith(f'{data}:dataset.json: ') and message in str(info.value), str(info.value)


def test_valid_labels_and_null_labels_still_load(tmp_path):
    files = images()
    files['dataset.json'] = labels_json([[f'img{k}.png', 99999 if k == 3 else k] for k in range(4)])
    data = write_set(tmp_path / 'set.zip', files)
    dataset = load_dataset(str(data), use_labels=True, lazy=True)
    assert list(dataset.labels()) == [0, 1, 2, 99999] and dataset.label_dim == 100000
    files['dataset.json'] = b'{"labels": null}'   # what dataset_tool writes for an unlabelled set
    data = write_set(tmp_path / 'null.zip', files)
    assert load_dataset(str(data), use_labels=True).label_dim == 0


@pytest.mark.parametrize('raw_path', [False, True])
def test_dataset_tool_reads_labels_by_the_same_rules(tmp_path, raw_path):
    """dataset_tool's own reader (--width/--height) and the shared loader's path refuse the same label files."""
    tool = sg2_helpers.load_script('dataset_tool')
    extra = ['--width', '32', '--height', '32'] if raw_path else []
    files = images()
    files['dataset.json'] = labels_json([[f'img{k}.png', [2, 0, 1, 2][k]] for k in range(4)])
    good = write_set(tmp_path / 'good', files)
    dest = tmp_path / 'out.zip'
    result = CliRunner().invoke(tool.main, ['--source', str(good), '--dest', str(dest)] + extra)
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(dest) as z:
        assert json.loads(z.read('dataset.json'))['labels'] == [[f'00000/img{k:08d}.png', [2, 0, 1, 2][k]]
                                                                for k in range(4)]
    for name, content, message in [
        ('huge', b' ' * (datasets.labels_size_limit(4) + 1), 'too large for the labels of 4 images'),
        ('partial', labels_json([['img0.png', 1]]), 'no label for img1.png (and 2 more)'),
        ('float', labels_json([[f'img{k}.png', 0.5] for k in range(4)]), 'labels[0] is'),
    ]:
        files['dataset.json'] = content
        source = write_set(tmp_path / f'{name}.zip', files)
        dest = tmp_path / f'{name}-out.zip'
        result = CliRunner().invoke(tool.main, ['--source', str(source), '--dest', str(dest)] + extra)
        assert result.exit_code == 2 and 'dataset.json' in result.output and message in result.output, result.output
        assert 'Traceback' not in result.output and not dest.exists()


@pytest.mark.parametrize('processes', [0, 2])
def test_check_images_names_the_first_bad_file_in_order(tmp_path, monkeypatch, processes):
    monkeypatch.setattr(datasets, 'CHECK_CHUNK', 1)   # one image per task: the worker pool shares 6 tasks
    files = {f'img{k}.png': png(k, size=8) for k in range(6)}
    good = load_dataset(str(write_set(tmp_path / 'good.zip', files)), lazy=True)
    good.check_images(processes)                      # a clean set passes
    files['img4.png'] = png(4, size=8)[:60]            # truncated after the header
    files['img2.png'] = png(2, size=16)               # a header that disagrees with the first image's size
    data = write_set(tmp_path / 'set.zip', files)
    monkeypatch.setattr(datasets, '_check_headers', lambda source, names, resolution: (3, 8, 8))
    dataset = load_dataset(str(data), lazy=True)      # (header check bypassed: the decode pass must see both)
    with pytest.raises(DatasetError, match=r'img2\.png: shape \[3, 16, 16\]'):
        dataset.check_images(processes)
    files['img2.png'] = png(2, size=8)
    dataset = load_dataset(str(write_set(tmp_path / 'set2.zip', files)), lazy=True)
    with pytest.raises(DatasetError, match=r'img4\.png: corrupt or unreadable image'):
        dataset.check_images(processes)
