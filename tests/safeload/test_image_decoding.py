"""Issue 23 item 1: no external program is ever started by reading data.

An EPS file renamed `aaa.png` (in an image folder and in a dataset zip) makes a plain `PIL.Image.open`
hand it to Ghostscript. With a recording `gs` first on PATH (it writes a marker file when run), every
vendor's training data loader (SNGAN, ProGAN, AutoGAN, FastGAN, StyleGAN2-ADA), StyleGAN2-ADA's
dataset_tool and a metric's reference set must refuse the file by name (exit 2 for the CLIs, nothing
written) and the marker must never appear. The control test shows the marker does appear through the
plain Pillow path, so these tests can fail.

A guard over the source tree (and the patches' added lines) keeps `vendor/common/images.py` the only
place that calls a decoder.
"""
import ast
import io
import os
import re
import sys
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import EpsImagePlugin, Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'stylegan2_ada'))
import sg2_helpers  # noqa: E402

from vendor.common import images  # noqa: E402
from vendor.common.datasets import DatasetError, load_dataset  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))

# A minimal Encapsulated PostScript file (a bounding box and one stroke): Pillow's EPS plugin reads its
# header and renders it with Ghostscript on load.
EPS = (b'%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\n'
       b'newpath 0 0 moveto 8 8 lineto stroke\nshowpage\n%%EOF\n')


def png_bytes(seed):
    buffer = io.BytesIO()
    Image.fromarray(np.random.RandomState(seed).randint(0, 256, (8, 8, 3), dtype=np.uint8)).save(buffer, 'PNG')
    return buffer.getvalue()


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    """(folder, zip, marker): each holds the EPS as `aaa.png` next to a real PNG; a recording `gs` leads PATH."""
    marker = tmp_path / 'GS_WAS_RUN'
    fake = tmp_path / 'fakebin'
    fake.mkdir()
    (fake / 'gs').write_text(f'#!/bin/sh\necho "$@" >> "{marker}"\nexit 1\n')
    (fake / 'gs').chmod(0o755)
    monkeypatch.setenv('PATH', f'{fake}{os.pathsep}{os.environ.get("PATH", "")}')
    monkeypatch.setattr(EpsImagePlugin, 'gs_binary', None)  # Pillow looks for gs again, on this PATH
    folder = tmp_path / 'folder'
    folder.mkdir()
    (folder / 'aaa.png').write_bytes(EPS)
    (folder / 'bbb.png').write_bytes(png_bytes(1))
    archive = tmp_path / 'set.zip'
    with zipfile.ZipFile(archive, 'w') as z:
        z.writestr('aaa.png', EPS)
        z.writestr('bbb.png', png_bytes(1))
    return folder, archive, marker


def test_control_plain_pillow_runs_gs_on_the_eps_named_png(hostile):
    folder, archive, marker = hostile
    with zipfile.ZipFile(archive) as z:
        raw = z.read('aaa.png')
    for data in (str(folder / 'aaa.png'), io.BytesIO(raw)):
        with pytest.raises(Exception):
            with Image.open(data) as image:   # Pillow picks the plugin by the bytes: EPS
                assert image.format == 'EPS'
                image.load()                  # ... which runs gs (the fake one fails)
        assert marker.exists(), 'control: the plain Pillow path did not run gs; the test proves nothing'
        marker.unlink()
        EpsImagePlugin.gs_binary = None


def test_shared_decoder_refuses_by_name_and_never_runs_gs(hostile):
    folder, archive, marker = hostile
    for call in (images.open_image, images.read_header):
        with pytest.raises(images.ImageFormatError, match=r'aaa\.png: not a PNG file'):
            call(EPS, 'aaa.png')
    # the second line of defence alone: Pillow is only ever offered the plugin the name selects
    with pytest.raises(Image.UnidentifiedImageError):
        images._open(io.BytesIO(EPS), 'aaa.png', ('PNG',))
    # other image formats are refused by their name, whatever their contents
    for name in ('x.eps', 'x.ps', 'x.bmp', 'x.gif', 'x.webp', 'x.tif'):
        with pytest.raises(images.ImageFormatError, match=re.escape(name)):
            images.is_image_name(name)
        with pytest.raises(images.ImageFormatError, match='only PNG and JPEG'):
            images.open_image(png_bytes(0), name)
    assert images.is_image_name('a/B.PNG') and images.is_image_name('c.jpeg')
    assert not any(images.is_image_name(n) for n in ('x.json', 'notes.txt', 'features.h5', 'paper.pdf'))  # left alone
    # a JPEG named .png is refused as well (the name decides, not the bytes)
    jpeg = io.BytesIO()
    Image.new('RGB', (8, 8)).save(jpeg, 'JPEG')
    with pytest.raises(images.ImageFormatError, match='not a PNG'):
        images.open_image(jpeg.getvalue(), 'j.png')
    assert images.open_image(jpeg.getvalue(), 'j.jpg').size == (8, 8)
    with images.open_image(png_bytes(3), 'p.png') as image:
        assert np.array_equal(np.asarray(image), np.random.RandomState(3).randint(0, 256, (8, 8, 3), dtype=np.uint8))
    assert not marker.exists()


def test_shared_loader_eager_and_lazy_refuse_the_file(hostile):
    folder, archive, marker = hostile
    for spec in (folder, archive):
        for lazy in (False, True):
            with pytest.raises(DatasetError, match=r'aaa\.png: not a PNG file'):
                load_dataset(str(spec), lazy=lazy)
    # an EPS under its own name is refused by name too, not silently left out
    (folder / 'aaa.png').rename(folder / 'aaa.eps')
    with pytest.raises(DatasetError, match=r"aaa\.eps: unsupported image format '\.eps'"):
        load_dataset(str(folder))
    assert not marker.exists()


def vendor_runs(tmp_path, spec):
    """(name, argv-calling function, output folder) for every vendor's training CLI on `spec`."""
    from vendor.autogan import train as autogan
    from vendor.fastgan import train as fastgan
    from vendor.progan import train as progan
    from vendor.sngan import train as sngan
    out = tmp_path / 'out'
    return [
        ('sngan', lambda: sngan.main(['--data', str(spec), '--device', 'cpu', '--logdir', str(out)]), out),
        ('progan', lambda: progan.main(['--data', str(spec), '--device', 'cpu', '--logdir', str(out)]), out),
        ('autogan', lambda: autogan.main(['--data', str(spec), '--device', 'cpu', '--logdir', str(out)]), out),
        ('fastgan', lambda: fastgan.main(['--path', str(spec), '--device', 'cpu', '--lpips_untrained',
                                          '--output_path', str(out)]), out),
    ]


@pytest.mark.parametrize('kind', ['folder', 'zip'])
def test_every_vendor_refuses_the_eps_and_never_runs_gs(hostile, tmp_path, capsys, kind):
    folder, archive, marker = hostile
    spec = folder if kind == 'folder' else archive
    for name, run, out in vendor_runs(tmp_path, spec):
        with pytest.raises(SystemExit) as info:
            run()
        err = capsys.readouterr().err
        assert not marker.exists(), f'{name}: gs was run'
        assert info.value.code == 2, (name, err)
        assert 'aaa.png: not a PNG file' in err and 'Traceback' not in err, (name, err)
        assert not out.exists(), name

    # StyleGAN2-ADA: training (lazy reader), dataset_tool, and a metric's reference set
    train = sg2_helpers.load_script('train')
    outdir = tmp_path / 'runs'
    flags = list(sg2_helpers.TINY_FLAGS)
    flags[flags.index('--data') + 1] = str(spec)
    result = CliRunner().invoke(train.main, ['--outdir', str(outdir)] + flags)
    assert not marker.exists(), 'StyleGAN2-ADA train.py: gs was run'
    assert result.exit_code == 2 and 'aaa.png: not a PNG file' in result.output, result.output
    assert not outdir.exists() and not marker.exists()

    tool = sg2_helpers.load_script('dataset_tool')
    for dest in (tmp_path / 'converted.zip', tmp_path / 'converted'):
        for extra in ([], ['--width', '8', '--height', '8']):   # the shared loader's path and the raw path
            result = CliRunner().invoke(tool.main, ['--source', str(spec), '--dest', str(dest)] + extra)
            assert not marker.exists(), 'dataset_tool: gs was run'
            assert result.exit_code == 2 and 'aaa.png: not a PNG file' in result.output, result.output
            assert not dest.exists() and not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['fakebin', 'folder', 'set.zip']  # no temporaries left

    from metrics import metric_main
    with pytest.raises(DatasetError, match=r'aaa\.png: not a PNG file'):
        metric_main._reference_dataset(dict(class_name='training.dataset.ImageFolderDataset', path=str(spec)))
    assert not marker.exists()


def test_dataset_tool_reads_lmdb_records_only_as_webp_jpeg_or_png():
    tool = sg2_helpers.load_script('dataset_tool')
    import click
    with pytest.raises(click.BadParameter, match=r"db:b'k': not a WEBP or JPEG or PNG file"):
        tool._decode(EPS, "db:b'k'", images.LMDB_FORMATS)
    webp = io.BytesIO()
    Image.new('RGB', (4, 4), (10, 20, 30)).save(webp, 'WEBP', lossless=True)
    assert tool._decode(webp.getvalue(), "db:b'k'", images.LMDB_FORMATS).shape == (4, 4, 3)


# ------------------------------------------------------------------------------------------------
# guard: vendor/common/images.py is the only decoder call site

from source_scan import dotted, python_files  # noqa: E402

DECODER_SITE = os.path.join('vendor', 'common', 'images.py')
CALLS = {'Image.open', 'PIL.Image.open', 'Image.frombytes'}
PREFIXES = ('imageio.', 'torchvision.io.', 'cv2.', 'skimage.io.', 'torchvision.datasets.')
NAMES = {'imread', 'imdecode', 'default_loader', 'pil_loader', 'ImageFolder', 'load_djpeg'}


def decoder_calls(source, rel):
    found = []
    for node in ast.walk(ast.parse(source, rel)):
        if isinstance(node, ast.Call):
            name = dotted(node.func)
            if name in CALLS or name.startswith(PREFIXES) or name.split('.')[-1] in NAMES:
                found.append(f'{rel}:{node.lineno}: {name}')
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            module = getattr(node, 'module', None) or ''
            for alias in node.names:
                full = f'{module}.{alias.name}' if module else alias.name
                if full in ('PIL.Image.open', 'PIL.ImageFile.Parser') or (full + '.').startswith(PREFIXES):
                    found.append(f'{rel}:{node.lineno}: imports {full}')
    return found


def test_decoder_guard_sees_every_kind_of_call():
    bad = ('from PIL import Image\nimport PIL.Image\nimport imageio\nfrom PIL.Image import open as o\n'
           'Image.open("x")\nPIL.Image.open("x")\nimageio.imread("x")\nimport torchvision.io\n'
           'torchvision.io.read_image("x")\n')
    assert len(decoder_calls(bad, 'bad.py')) == 7, decoder_calls(bad, 'bad.py')
    assert decoder_calls('from vendor.common.images import open_image\nopen_image(b"", "a.png")\n', 'ok.py') == []


def test_no_decoder_outside_the_shared_helper():
    found = []
    for rel in python_files():
        if rel != DECODER_SITE:
            found += decoder_calls(open(os.path.join(ROOT, rel), encoding='utf-8').read(), rel)
    # the patches' added lines (they become code in the patched trees)
    pattern = re.compile(r'Image\.open|imageio|torchvision\.io|cv2\.|imread|imdecode')
    for name in sorted(os.listdir(os.path.join(ROOT, 'patches'))):
        for number, line in enumerate(open(os.path.join(ROOT, 'patches', name), encoding='utf-8'), 1):
            if line.startswith('+') and not line.startswith('+++') and pattern.search(line):
                found.append(f'patches/{name}:{number}: {line.strip()}')
    assert found == [], 'image decoding outside vendor/common/images.py:\n' + '\n'.join(found)
    # and the helper itself opens images only with an explicit list of formats
    tree = ast.parse(open(os.path.join(ROOT, DECODER_SITE), encoding='utf-8').read())
    opens = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and dotted(n.func) == 'Image.open']
    assert len(opens) == 1 and [k.arg for k in opens[0].keywords] == ['formats']
