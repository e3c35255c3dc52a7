"""generate.py and calc_metrics.py take an NVlabs .pkl, its URL (served from the dnnlib cache; nothing is
fetched) and our .pt alike (issue 11 item 2). The reference is the same weights saved as our own snapshot:
the images and the metric must be identical whichever file the weights came from."""
import hashlib
import json
import os
import sys
import urllib.request

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'stylegan2_ada'))
import sg2_helpers  # noqa: E402
import nvlabs_format as nf  # noqa: E402

URL = 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/tiny-digits.pkl'
G_SPEC = dict(class_name='training.networks.Generator', z_dim=32, w_dim=32, mapping_kwargs=dict(num_layers=2),
              synthesis_kwargs=dict(channel_base=256, channel_max=32, num_fp16_res=0, conv_clamp=256))
COMMON = dict(c_dim=0, img_resolution=32, img_channels=3)
DATA = dict(class_name='training.dataset.ImageFolderDataset', path='digits', use_labels=False, max_size=None,
            xflip=False, resolution=32)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    from training.networks import Generator
    folder = tmp_path_factory.mktemp('pkl_tools')
    torch.manual_seed(3)
    G = Generator(**{k: v for k, v in G_SPEC.items() if k != 'class_name'}, **COMMON).eval()
    kwargs = dict({k: v for k, v in G_SPEC.items() if k != 'class_name'}, **COMMON)
    (folder / 'pkl').mkdir()
    pkl = nf.write_nvlabs_pickle(folder / 'pkl' / 'network-snapshot-000000.pkl', folder / 'MARKER', G=G, G_ema=G,
                                 G_kwargs=kwargs, training_set_kwargs=DATA)
    cache = folder / 'cache' / 'downloads'
    cache.mkdir(parents=True)
    (cache / (hashlib.md5(URL.encode()).hexdigest() + '_tiny-digits.pkl')).write_bytes(pkl.read_bytes())
    (folder / 'pt').mkdir()
    pt = folder / 'pt' / 'network-snapshot-000000.pt'
    torch.save(dict(G_ema=G.state_dict(), G_kwargs=G_SPEC, common_kwargs=COMMON, training_set_kwargs=DATA), pt)
    return folder, G, pkl, pt


def test_generate_renders_the_same_images_from_pkl_url_and_pt(files, tmp_path, monkeypatch):
    folder, G, pkl, pt = files
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(folder / 'cache'))
    monkeypatch.setattr(urllib.request, 'urlopen', lambda *a, **k: pytest.fail('tried to download'))
    generate = sg2_helpers.load_script('generate')
    images = {}
    for name, source in (('pkl', pkl), ('url', URL), ('pt', pt)):
        result = CliRunner().invoke(generate.generate_cli, ['--network', str(source), '--seeds', '5',
                                                            '--outdir', str(tmp_path / name), '--device', 'cpu'])
        assert result.exit_code == 0, result.output
        images[name] = np.asarray(PIL.Image.open(tmp_path / name / 'seed0005.png'))
    z = torch.from_numpy(np.random.RandomState(5).randn(1, 32)).float()
    with torch.no_grad():
        img = G(z, torch.zeros(1, 0), noise_mode='const')[0].double()
    expected = np.clip(np.floor(img.numpy() * 127.5 + 128), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    assert np.array_equal(images['pkl'], expected)
    assert np.array_equal(images['url'], expected) and np.array_equal(images['pt'], expected)
    assert not (folder / 'MARKER').exists()


def test_calc_metrics_gives_the_same_value_for_pkl_and_pt(files, tmp_path):
    folder, G, pkl, pt = files
    calc = sg2_helpers.load_script('calc_metrics')
    values = {}
    for name, source in (('pkl', pkl), ('pt', pt)):
        # no --data: the dataset comes from the file's (allow-listed) training_set_kwargs
        result = CliRunner().invoke(calc.calc_metrics, ['--network', str(source), '--metrics', 'fid_digits',
                                                        '--num-gen', '64', '--device', 'cpu'])
        assert result.exit_code == 0, result.output
        lines = [json.loads(line) for line in open(source.parent / 'metric-fid_digits.jsonl')]
        assert len(lines) == 1 and lines[0]['snapshot_pkl'] == source.name
        values[name] = lines[0]['results']['fid_digits']
    assert np.isfinite(values['pkl']) and values['pkl'] == values['pt']
    assert not (folder / 'MARKER').exists()


def test_unreachable_url_and_truncated_pkl_are_one_clear_error_writing_nothing(files, tmp_path, monkeypatch):
    folder, G, pkl, pt = files
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))

    def unreachable(*args, **kwargs):
        raise urllib.error.URLError('Temporary failure in name resolution')

    monkeypatch.setattr(urllib.request, 'urlopen', unreachable)
    cut = tmp_path / 'cut.pkl'
    cut.write_bytes(pkl.read_bytes()[:5000])
    generate = sg2_helpers.load_script('generate')
    calc = sg2_helpers.load_script('calc_metrics')
    for source, message in (('https://example.invalid/x.pkl', 'https://example.invalid/x.pkl: cannot be downloaded'),
                            (cut, 'cut.pkl: not a readable network pickle (truncated')):
        for cli, args in ((generate.generate_cli, ['--seeds', '0', '--outdir', str(tmp_path / 'out')]),
                          (calc.calc_metrics, ['--metrics', 'fid_digits', '--data', 'digits'])):
            result = CliRunner().invoke(cli, ['--network', str(source), '--device', 'cpu', *args])
            assert result.exit_code == 2 and message in result.output, result.output
    assert sorted(os.listdir(tmp_path)) == ['cut.pkl']   # no output folder, no cache folder, no metric file
