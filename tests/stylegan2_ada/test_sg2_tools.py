"""dataset_tool (round trip through the training Dataset, clear errors, nothing half-written),
training.dataset (x-flip, subset, labels), generate.py, calc_metrics.py and train.py's option
checks, run in-process through click's test runner."""
import json
import os
import sys
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sg2_helpers  # noqa: E402
from sg2_helpers import TINY_FLAGS  # noqa: E402

from training.dataset import ImageFolderDataset  # noqa: E402

torch.set_num_threads(2)
dataset_tool = sg2_helpers.load_script('dataset_tool')


def make_folder(root, count=5, size=16, mode='RGB', labels=True, seed=0):
    rnd = np.random.RandomState(seed)
    os.makedirs(root, exist_ok=True)
    arrays, names = [], []
    for i in range(count):
        shape = (size, size, 3) if mode == 'RGB' else (size, size)
        arr = rnd.randint(0, 256, size=shape, dtype=np.uint8)
        name = f'img{i:03d}.png'
        PIL.Image.fromarray(arr, mode).save(os.path.join(root, name))
        arrays.append(arr if mode == 'L' else arr.transpose(2, 0, 1))
        names.append(name)
    if labels:
        with open(os.path.join(root, 'dataset.json'), 'w') as f:
            json.dump({'labels': [[n, i % 3] for i, n in enumerate(names)]}, f)
    return arrays


def invoke(cli, args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize('dest_name', ['out.zip', 'outdir'])
def test_dataset_tool_round_trip(tmp_path, dest_name):
    arrays = make_folder(tmp_path / 'src')
    dest = tmp_path / dest_name
    result = invoke(dataset_tool.main, ['--source', tmp_path / 'src', '--dest', dest])
    assert result.exit_code == 0, result.output
    if dest_name.endswith('.zip'):
        with zipfile.ZipFile(dest) as z:
            names = sorted(z.namelist())
            meta = json.loads(z.read('dataset.json'))
    else:
        names = sorted(os.path.relpath(os.path.join(d, f), dest).replace(os.sep, '/')
                       for d, _, fs in os.walk(dest) for f in fs)
        meta = json.load(open(dest / 'dataset.json'))
    assert names == ['00000/img00000000.png', '00000/img00000001.png', '00000/img00000002.png',
                     '00000/img00000003.png', '00000/img00000004.png', 'dataset.json']
    assert meta['labels'] == [[f'00000/img{i:08d}.png', i % 3] for i in range(5)]
    ds = ImageFolderDataset(str(dest), use_labels=True)
    assert (len(ds), ds.resolution, ds.num_channels, ds.label_dim) == (5, 16, 3, 3)
    for i in range(5):
        image, label = ds[i]
        assert np.array_equal(image, arrays[i])  # PNG is lossless: pixels survive exactly
        assert np.array_equal(label, np.eye(3, dtype=np.float32)[i % 3])


def test_dataset_tool_resize_and_max_images_from_digits(tmp_path):
    dest = tmp_path / 'digits16.zip'
    result = invoke(dataset_tool.main, ['--source', 'digits', '--dest', dest, '--resolution', 16, '--max-images', 12])
    assert result.exit_code == 0, result.output
    ds = ImageFolderDataset(str(dest), use_labels=True)
    assert (len(ds), ds.resolution, ds.label_dim) == (12, 16, 10)
    from vendor.common.datasets import load_dataset
    reference = load_dataset('digits', resolution=16, use_labels=True)
    for i in range(12):
        assert np.array_equal(ds[i][0], reference[i][0])
        assert int(np.argmax(ds[i][1])) == reference[i][1]


@pytest.mark.parametrize('case', ['non_square', 'not_pow2', 'bad_resolution', 'missing', 'dest_exists'])
def test_dataset_tool_errors_are_clear_and_leave_nothing(tmp_path, case):
    src = tmp_path / 'src'
    dest = tmp_path / 'out.zip'
    args = ['--source', src, '--dest', dest]
    if case == 'non_square':
        os.makedirs(src)
        PIL.Image.fromarray(np.zeros((16, 8, 3), np.uint8)).save(src / 'a.png')
        expected = 'not square'
    elif case == 'not_pow2':
        make_folder(src, size=24, labels=False)
        expected = 'power of two'
    elif case == 'bad_resolution':
        make_folder(src, labels=False)
        args += ['--resolution', 24]
        expected = 'power of two'
    elif case == 'missing':
        expected = 'no such file'
    else:
        make_folder(src, labels=False)
        dest.write_bytes(b'keep me')
        expected = 'already exists'
    result = CliRunner().invoke(dataset_tool.main, [str(a) for a in args])
    assert result.exit_code != 0
    assert expected in result.output.lower()
    assert '--source' in result.output or '--dest' in result.output or '--resolution' in result.output
    leftovers = [f for f in os.listdir(tmp_path) if f not in ('src',)]
    assert leftovers == (['out.zip'] if case == 'dest_exists' else []), leftovers
    if case == 'dest_exists':
        assert dest.read_bytes() == b'keep me'


def test_dataset_wrapper_xflip_subset_labels():
    base = ImageFolderDataset('digits', use_labels=True)
    flipped = ImageFolderDataset('digits', use_labels=True, xflip=True)
    assert len(flipped) == 2 * len(base)
    n = len(base)
    assert np.array_equal(flipped[n + 5][0], base[5][0][:, :, ::-1])
    assert np.array_equal(flipped[n + 5][1], base[5][1])
    sub = ImageFolderDataset('digits', max_size=10, random_seed=3)
    assert len(sub) == 10 and sub.label_shape == [0] and not sub.has_labels
    again = ImageFolderDataset('digits', max_size=10, random_seed=3)
    assert all(np.array_equal(sub[i][0], again[i][0]) for i in range(10))
    assert base.image_shape == [3, 32, 32] and base.has_labels and base.label_dim == 10


# -- train.py option checks -------------------------------------------------------------------------

@pytest.mark.parametrize('extra, message', [
    (['--aug', 'ada', '--p', '0.3'], '--p can only be specified with --aug=fixed'),
    (['--aug', 'fixed'], 'requires specifying --p'),
    (['--aug', 'noaug', '--augpipe', 'bgc'], '--augpipe cannot be specified'),
    (['--aug', 'noaug', '--target', '0.5'], '--target can only be specified'),
    (['--data', '/nonexistent/data.zip'], '--data'),
    (['--cond', 'true'], '--cond'),
    (['--diffaug', 'color,zoom'], '--diffaug'),
    (['--resume', '/nonexistent/snap.pt'], '--resume'),
])
def test_train_cli_rejects_bad_options(tmp_path, extra, message):
    train = sg2_helpers.load_script('train')
    folder = tmp_path / 'unlabelled'
    make_folder(folder, labels=False)
    flags = list(TINY_FLAGS)
    if '--cond' in extra:
        flags[flags.index('digits')] = str(folder)
    result = CliRunner().invoke(train.main, ['--outdir', str(tmp_path / 'runs')] + flags + extra)
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert not os.path.exists(tmp_path / 'runs')


def test_train_cli_dry_run_and_presets(tmp_path):
    train = sg2_helpers.load_script('train')
    result = CliRunner().invoke(train.main, ['--outdir', str(tmp_path / 'runs'), '--data', 'digits', '--cfg', 'cifar',
                                             '--device', 'cpu', '-n'])
    assert result.exit_code == 0, result.output
    assert 'Dry run; exiting.' in result.output and not os.path.exists(tmp_path / 'runs')
    _, args = train.setup_training_loop_kwargs(data='digits', cfg='cifar', device='cpu')
    # cfg cifar (upstream): 2 ref GPUs, mb 64 -> batch_gpu 32, mbstd 32, gamma 0.01, ema 500, ramp 0.05,
    # map 2, fmaps 1, lr 0.0025, no path length / style mixing, D architecture orig.
    assert (args.batch_size, args.batch_gpu, args.ema_kimg, args.ema_rampup, args.total_kimg) == (64, 32, 500, 0.05, 100000)
    assert args.loss_kwargs.r1_gamma == 0.01 and args.loss_kwargs.pl_weight == 0 and args.loss_kwargs.style_mixing_prob == 0
    assert args.D_kwargs.architecture == 'orig' and args.D_kwargs.epilogue_kwargs.mbstd_group_size == 32
    assert args.G_kwargs.mapping_kwargs.num_layers == 2 and args.G_kwargs.synthesis_kwargs.channel_base == 32768
    assert args.G_opt_kwargs.lr == 0.0025 and args.ada_target == 0.6 and args.network_snapshot_ticks == 50
    # auto at 32 px on 1 GPU: mb = max(min(1*min(4096//32, 32), 64), 1) = 32, mbstd 4, fmaps 0.5,
    # gamma = 0.0002*32^2/32 = 0.0064, ema = 32*10/32 = 10, ramp 0.05.
    _, args = train.setup_training_loop_kwargs(data='digits', device='cpu')
    assert (args.batch_size, args.D_kwargs.epilogue_kwargs.mbstd_group_size, args.ema_kimg) == (32, 4, 10)
    assert args.loss_kwargs.r1_gamma == pytest.approx(0.0064) and args.G_kwargs.synthesis_kwargs.channel_base == 16384
    assert args.augment_kwargs.class_name == 'training.augment.AugmentPipe' and args.augment_kwargs.hue == 1
    # lowshot (DiffAugment preset): kimg 300, mb 8, mbstd 4, fmaps 1, lr 0.002, gamma 10, ema 10, map 2, snap 10.
    _, args = train.setup_training_loop_kwargs(data='digits', cfg='lowshot', device='cpu', aug='noaug',
                                               diffaug='color,translation,cutout')
    assert (args.total_kimg, args.batch_size, args.ema_kimg, args.network_snapshot_ticks) == (300, 8, 10, 10)
    assert args.loss_kwargs.r1_gamma == 10 and args.G_opt_kwargs.lr == 0.002
    assert args.loss_kwargs.diffaug_policy == 'color,translation,cutout' and 'augment_kwargs' not in args


# -- generate.py / calc_metrics.py ---------------------------------------------------------------

@pytest.fixture(scope='module')
def tiny_snapshot(tmp_path_factory):
    """A snapshot in the training loop's format, built directly (no training needed)."""
    from training import training_loop
    from vendor.common.runlog import save_snapshot
    train = sg2_helpers.load_script('train')
    _, args = train.setup_training_loop_kwargs(data='digits', device='cpu', cbase=256, cmax=32, map_layers=2)
    common = dict(c_dim=0, img_resolution=32, img_channels=3)
    import dnnlib
    torch.manual_seed(0)
    G = dnnlib.util.construct_class_by_name(**args.G_kwargs, **common)
    D = dnnlib.util.construct_class_by_name(**args.D_kwargs, **common)
    path = str(tmp_path_factory.mktemp('sg2_snap') / 'network-snapshot-000000.pt')
    save_snapshot(dict(G=G.state_dict(), D=D.state_dict(), G_ema=G.state_dict(), cur_nimg=0, cur_tick=0,
                       G_kwargs=training_loop.plain(args.G_kwargs), D_kwargs=training_loop.plain(args.D_kwargs),
                       common_kwargs=common, training_set_kwargs=training_loop.plain(args.training_set_kwargs)), path)
    return path, G


def test_generate_writes_the_generator_output(tiny_snapshot, tmp_path):
    path, G = tiny_snapshot
    generate = sg2_helpers.load_script('generate')
    result = invoke(generate.generate_cli, ['--network', path, '--seeds', '3-4', '--outdir', tmp_path, '--device', 'cpu'])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path)) == ['seed0003.png', 'seed0004.png']
    got = np.asarray(PIL.Image.open(tmp_path / 'seed0003.png'))
    z = torch.from_numpy(np.random.RandomState(3).randn(1, 512)).float()
    with torch.no_grad():
        img = G.eval()(z, torch.zeros(1, 0), noise_mode='const')[0].double()
    expected = np.clip(np.floor(img.numpy() * 127.5 + 128), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert not np.array_equal(got, np.asarray(PIL.Image.open(tmp_path / 'seed0004.png')))


def test_generate_rejects_a_foreign_file(tmp_path):
    generate = sg2_helpers.load_script('generate')
    bad = tmp_path / 'bad.pt'
    torch.save({'weights': torch.zeros(1)}, bad)
    result = CliRunner().invoke(generate.generate_cli, ['--network', str(bad), '--seeds', '0', '--outdir', str(tmp_path / 'o')])
    assert result.exit_code != 0 and '--network' in result.output and 'not a StyleGAN2-ADA training snapshot' in result.output


def test_calc_metrics_fid_digits(tiny_snapshot):
    path, _ = tiny_snapshot
    calc = sg2_helpers.load_script('calc_metrics')
    result = invoke(calc.calc_metrics, ['--network', path, '--metrics', 'fid_digits', '--num-gen', 64, '--device', 'cpu'])
    assert result.exit_code == 0, result.output
    lines = [json.loads(l) for l in open(os.path.join(os.path.dirname(path), 'metric-fid_digits.jsonl'))]
    assert len(lines) == 1 and lines[0]['metric'] == 'fid_digits'
    value = lines[0]['results']['fid_digits']
    assert np.isfinite(value) and value > 0  # an untrained G is far from the data
    assert lines[0]['snapshot_pkl'] == 'network-snapshot-000000.pt'
    bad = CliRunner().invoke(calc.calc_metrics, ['--network', path, '--metrics', 'fid_nope'])
    assert bad.exit_code != 0 and 'fid50k_full' in bad.output


# -- dataset_tool: upstream's --transform / --width / --height / --resize-filter and sources ------------

def _read_zip_images(path):
    with zipfile.ZipFile(path) as z:
        names = sorted(n for n in z.namelist() if n.endswith('.png'))
        return [np.asarray(PIL.Image.open(__import__('io').BytesIO(z.read(n)))) for n in names], json.loads(z.read('dataset.json'))


def test_dataset_tool_center_crop_and_filters_match_pil_by_hand(tmp_path):
    src = tmp_path / 'src'
    os.makedirs(src)
    rnd = np.random.RandomState(1)
    wide = rnd.randint(0, 256, size=(20, 40, 3), dtype=np.uint8)    # H 20, W 40
    PIL.Image.fromarray(wide).save(src / 'a.png')
    for transform, flt, expected in [
        ('center-crop', 'lanczos', np.asarray(PIL.Image.fromarray(wide[:, 10:30]).resize((8, 8), PIL.Image.LANCZOS))),
        ('center-crop', 'box', np.asarray(PIL.Image.fromarray(wide[:, 10:30]).resize((8, 8), PIL.Image.BOX))),
    ]:
        dest = tmp_path / f'{transform}-{flt}.zip'
        result = invoke(dataset_tool.main, ['--source', src, '--dest', dest, '--transform', transform, '--width', 8,
                                            '--height', 8, '--resize-filter', flt])
        assert result.exit_code == 0, result.output
        images, meta = _read_zip_images(dest)
        assert np.array_equal(images[0], expected) and meta['labels'] is None
    # center-crop-wide: a 2:1 band resized to 16x8, centred on a black 16x16 canvas
    dest = tmp_path / 'wide.zip'
    result = invoke(dataset_tool.main, ['--source', src, '--dest', dest, '--transform', 'center-crop-wide',
                                        '--width', 16, '--height', 8])
    assert result.exit_code == 0, result.output
    images, _ = _read_zip_images(dest)
    # upstream: ch = round(width * H / W) = round(16 * 20 / 40) = 8 rows from the middle of the source
    band = np.asarray(PIL.Image.fromarray(wide[6:14]).resize((16, 8), PIL.Image.LANCZOS))
    expected = np.zeros((16, 16, 3), np.uint8)
    expected[4:12] = band
    assert np.array_equal(images[0], expected)
    # non-square output without a transform, and --transform without a size: one clear error, nothing written
    for args, flag in [(['--width', 8, '--height', 4], '--source'), (['--transform', 'center-crop'], '--transform'),
                       (['--width', 12, '--height', 12], '--width')]:
        result = CliRunner().invoke(dataset_tool.main, [str(a) for a in ['--source', src, '--dest', tmp_path / 'x.zip', *args]])
        assert result.exit_code == 2 and flag in result.output, result.output
        assert not (tmp_path / 'x.zip').exists()


def test_dataset_tool_mnist_idx_files_padded_to_32(tmp_path):
    import gzip
    rnd = np.random.RandomState(0)
    pixels = rnd.randint(0, 256, size=(3, 28, 28), dtype=np.uint8)
    with gzip.open(tmp_path / 'train-images-idx3-ubyte.gz', 'wb') as f:
        f.write((2051).to_bytes(4, 'big') + (3).to_bytes(4, 'big') + (28).to_bytes(4, 'big') + (28).to_bytes(4, 'big')
                + pixels.tobytes())
    with gzip.open(tmp_path / 'train-labels-idx1-ubyte.gz', 'wb') as f:
        f.write((2049).to_bytes(4, 'big') + (3).to_bytes(4, 'big') + bytes([7, 1, 4]))
    dest = tmp_path / 'mnist.zip'
    result = invoke(dataset_tool.main, ['--source', tmp_path / 'train-images-idx3-ubyte.gz', '--dest', dest,
                                        '--max-images', 2])
    assert result.exit_code == 0, result.output
    images, meta = _read_zip_images(dest)
    assert len(images) == 2 and images[0].shape == (32, 32)
    assert np.array_equal(images[1][2:30, 2:30], pixels[1]) and images[1][:2].sum() == 0
    assert [label for _, label in meta['labels']] == [7, 1]


def test_dataset_tool_lsun_lmdb_needs_the_optional_package(tmp_path):
    src = tmp_path / 'cat_lmdb'
    os.makedirs(src)
    try:
        import lmdb  # noqa: F401
    except ImportError:
        result = CliRunner().invoke(dataset_tool.main, ['--source', str(src), '--dest', str(tmp_path / 'o.zip')])
        assert result.exit_code == 2 and 'lmdb' in result.output and not (tmp_path / 'o.zip').exists()
        return
    env = lmdb.open(str(src), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i in range(3):
            buffer = __import__('io').BytesIO()
            PIL.Image.fromarray(np.full((12, 16, 3), 40 * i, np.uint8)).save(buffer, format='PNG')
            txn.put(f'{i:04d}'.encode(), buffer.getvalue())
    env.close()
    result = invoke(dataset_tool.main, ['--source', src, '--dest', tmp_path / 'o.zip', '--transform', 'center-crop',
                                        '--width', 8, '--height', 8])
    assert result.exit_code == 0, result.output
    images, _ = _read_zip_images(tmp_path / 'o.zip')
    assert [int(im.mean()) for im in images] == [0, 40, 80]
