"""legacy.load_network reads NVlabs StyleGAN2-ADA pickles without running anything from them
(issue 11 items 1, 6; SPEC section 8).

The pickles are written by nvlabs_format.py with upstream's persistence structure, embedding a module_src
that creates a marker file if it is ever executed. The reference for "same outputs as upstream" is the
network the pickle was written from: our networks are upstream's computation (tests/stylegan2_ada), so a
loader that rebuilds them from the recorded init_kwargs and copies the weights strictly must reproduce it
bit for bit, for G, G_ema and D.
"""
import copy
import hashlib
import io
import os
import pickle
import pickletools
import sys
import urllib.request

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'stylegan2_ada'))
import sg2_helpers  # noqa: E402,F401  (puts vendor/stylegan2_ada on sys.path)
import nvlabs_format as nf  # noqa: E402

import legacy  # noqa: E402
from training.networks import Discriminator, Generator  # noqa: E402

G_KWARGS = dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=8, img_channels=3,
                mapping_kwargs=dict(num_layers=2),
                synthesis_kwargs=dict(channel_base=256, channel_max=32, num_fp16_res=0, conv_clamp=256))
D_KWARGS = dict(c_dim=0, img_resolution=8, img_channels=3, architecture='resnet', channel_base=256,
                channel_max=32, num_fp16_res=0, conv_clamp=256, block_kwargs={}, mapping_kwargs={},
                epilogue_kwargs=dict(mbstd_group_size=2))
DATASET = dict(class_name='training.dataset.ImageFolderDataset', path='/data/ffhq.zip', use_labels=False,
               max_size=70000, xflip=True, resolution=8)
# The globals SPEC section 8 lists for real NVlabs files (both numpy spellings).
SPEC_GLOBALS = {'torch_utils.persistence._reconstruct_persistent_obj', 'torch._utils._rebuild_tensor_v2',
                'torch._utils._rebuild_parameter', 'torch.storage._load_from_bytes', 'collections.OrderedDict',
                'dnnlib.util.EasyDict', 'numpy.dtype', 'numpy.core.multiarray.scalar', 'numpy._core.multiarray.scalar'}


@pytest.fixture(scope='module')
def nets():
    torch.manual_seed(1)
    G = Generator(**G_KWARGS).eval()
    D = Discriminator(**D_KWARGS).eval()
    G_ema = copy.deepcopy(G)
    with torch.no_grad():
        for p in G_ema.parameters():   # G_ema differs from G, so a mix-up would show
            p.add_(0.05 * torch.randn_like(p))
        G_ema.mapping.w_avg.normal_()
    return G, D, G_ema


def write(tmp_path, nets, name='net.pkl', **kwargs):
    G, D, G_ema = nets
    args = dict(G=G, D=D, G_ema=G_ema, G_kwargs=G_KWARGS, D_kwargs=D_KWARGS, training_set_kwargs=DATASET)
    args.update(kwargs)
    return nf.write_nvlabs_pickle(tmp_path / name, tmp_path / 'MARKER', **args)


def test_the_marker_would_catch_execution(tmp_path):
    exec(nf.marker_source(tmp_path / 'MARKER'), {})   # what upstream's loader does with module_src
    assert (tmp_path / 'MARKER').exists()


def globals_of(path):
    """module.name of every global a pickle names (GLOBAL and STACK_GLOBAL), read with pickletools."""
    found, pushed, memo, last = set(), [], {}, None
    for op, arg, _ in pickletools.genops(open(path, 'rb').read()):
        if op.name == 'GLOBAL':
            found.add(arg.replace(' ', '.'))
        elif op.name == 'STACK_GLOBAL':
            found.add(f'{pushed[-2]}.{pushed[-1]}')
        if op.name in ('SHORT_BINUNICODE', 'BINUNICODE', 'UNICODE', 'BINUNICODE8'):
            last = arg
        elif op.name in ('GET', 'BINGET', 'LONG_BINGET'):
            last = memo.get(arg)
        elif op.name == 'MEMOIZE':
            memo[len(memo)] = last
            continue
        elif op.name in ('PUT', 'BINPUT', 'LONG_BINPUT'):
            memo[arg] = last
            continue
        else:
            last = None
        pushed.append(last)
    return found


def outputs(G, D, G_ema):
    z = torch.from_numpy(np.random.RandomState(7).randn(4, 16)).float()
    c = torch.zeros(4, 0)
    with torch.no_grad():
        imgs = [G(z, c, noise_mode='const'), G_ema(z, c, noise_mode='const'),
                G_ema(z, c, truncation_psi=0.5, noise_mode='const')]
        return imgs + [D(imgs[0], c)]


@pytest.mark.parametrize('protocol,numpy_module,native', [
    (3, 'numpy.core.multiarray', False),    # the 2021 files: Python 3.7 pickle protocol, numpy 1.x
    (4, 'numpy.core.multiarray', False),
    (4, 'numpy._core.multiarray', True),    # newer numpy; tensors written by this torch's own reducers
    (2, 'numpy.core.multiarray', False),    # protocol 2 spells bytes through _codecs.encode
])
def test_pickle_loads_as_our_networks_with_identical_outputs(tmp_path, nets, protocol, numpy_module, native):
    path = write(tmp_path, nets, protocol=protocol, numpy_module=numpy_module, native_tensors=native)
    names = globals_of(path)
    assert {'torch_utils.persistence._reconstruct_persistent_obj', 'torch.storage._load_from_bytes',
            'dnnlib.util.EasyDict', f'{numpy_module}.scalar'} <= names
    assert names - {'_codecs.encode', '__builtin__.set', 'builtins.set'} <= SPEC_GLOBALS  # protocol-2/3 spellings
    result = legacy.load_network(path)
    assert not (tmp_path / 'MARKER').exists()          # the embedded module_src never ran
    assert result['kind'] == 'nvlabs-pkl' and result['state'] is None
    assert result['training_set_kwargs'] == DATASET
    for name in ('G', 'D', 'G_ema'):
        assert type(result[name]) is type(dict(zip(('G', 'D', 'G_ema'), nets))[name])
        assert not result[name].training
    for ours, ref in zip(outputs(result['G'], result['D'], result['G_ema']), outputs(*nets)):
        assert torch.equal(ours, ref)
    assert legacy.generator(result) is result['G_ema']


def test_url_is_read_from_the_cache_without_fetching(tmp_path, nets, monkeypatch):
    url = 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metfaces.pkl'
    cache = tmp_path / 'cache'
    cache.mkdir()
    write(cache, nets, name=hashlib.md5(url.encode()).hexdigest() + '_metfaces.pkl')

    def no_network(*args, **kwargs):
        raise AssertionError('the test tried to download')

    monkeypatch.setattr(urllib.request, 'urlopen', no_network)
    result = legacy.load_network(url, cache_dir=str(cache))
    assert torch.equal(outputs(*[result[k] for k in ('G', 'D', 'G_ema')])[1], outputs(*nets)[1])


def test_unreachable_url_is_one_error_and_writes_nothing(tmp_path, monkeypatch):
    calls = []

    def unreachable(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError('Name or service not known')

    monkeypatch.setattr(urllib.request, 'urlopen', unreachable)
    cache = tmp_path / 'cache'
    with pytest.raises(legacy.NetworkFileError, match=r'https://example\.invalid/net\.pkl: cannot be downloaded'):
        legacy.load_network('https://example.invalid/net.pkl', cache_dir=str(cache))
    assert calls and not cache.exists() and os.listdir(tmp_path) == []


class _Evil:
    """Pickles as a call of a harmful global (what an attacker would put in a file)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def test_foreign_globals_are_refused_by_name(tmp_path, nets):
    marker = tmp_path / 'MARKER'
    evil = _Evil(os.system, f'touch {marker}')
    path = write(tmp_path, nets, extra=dict(progress=evil))
    with pytest.raises(legacy.NetworkFileError, match=r'net\.pkl: refused: the pickle names the global posix\.system'):
        legacy.load_network(path)
    path = tmp_path / 'exec.pkl'
    path.write_bytes(pickle.dumps(dict(G=_Evil(exec, f'open({str(marker)!r}, "w")'))))
    with pytest.raises(legacy.NetworkFileError, match=r'builtins\.exec'):
        legacy.load_network(path)
    assert not marker.exists()


def _malicious_storage(marker):
    buffer = io.BytesIO()
    torch.save(_Evil(os.makedirs, str(marker)), buffer, _use_new_zipfile_serialization=False)
    return buffer.getvalue()


@pytest.mark.parametrize('tamper,message', [
    ('code', r'a tensor storage of the pickle was refused: it names os\.makedirs'),
    ('truncate', r'a tensor storage of the pickle was refused: the file is truncated'),
    ('shrink', r'needs \d+ values but its storage holds \d+ \(tampered or truncated storage\)'),
])
def test_tampered_storage_is_refused(tmp_path, nets, tamper, message):
    marker = tmp_path / 'STORAGE_MARKER'
    small = io.BytesIO()
    torch.save(torch.TypedStorage(wrap_storage=torch.zeros(1).untyped_storage(), dtype=torch.float32, _internal=True),
               small, _use_new_zipfile_serialization=False)   # a well-formed storage of one value
    fns = dict(code=lambda data: _malicious_storage(marker), truncate=lambda data: data[:len(data) // 2],
               shrink=lambda data: small.getvalue())
    path = write(tmp_path, nets, storage_override=fns[tamper])
    with pytest.raises(legacy.NetworkFileError, match=message):
        legacy.load_network(path)
    assert not marker.exists() and not (tmp_path / 'MARKER').exists()


def test_pickle_of_another_kind_truncated_or_mismatched_is_one_clear_error(tmp_path, nets):
    other = tmp_path / 'other.pkl'
    other.write_bytes(pickle.dumps({'weights': [1.0, 2.0], 'epoch': 3}))
    with pytest.raises(legacy.NetworkFileError, match=r'other\.pkl: not a StyleGAN2-ADA network pickle'):
        legacy.load_network(other)
    full = write(tmp_path, nets).read_bytes()
    cut = tmp_path / 'cut.pkl'
    cut.write_bytes(full[:len(full) * 2 // 3])
    with pytest.raises(legacy.NetworkFileError, match=r'cut\.pkl: not a readable network pickle \(truncated'):
        legacy.load_network(cut)
    # recorded config says 16 channels, the weights were made with 32
    narrow = dict(G_KWARGS, synthesis_kwargs=dict(G_KWARGS['synthesis_kwargs'], channel_max=16))
    path = write(tmp_path, nets, name='mismatch.pkl', G_kwargs=narrow)
    with pytest.raises(legacy.NetworkFileError,
                       match=r'mismatch\.pkl: G: synthesis\.b4\.const has shape \(32, 4, 4\) in the file but '
                             r'\(16, 4, 4\) for the recorded config'):
        legacy.load_network(path)
    # a generator recorded where the discriminator belongs
    G, D, G_ema = nets
    path = write(tmp_path, nets, name='swapped.pkl', D=G, D_kwargs=G_KWARGS)
    with pytest.raises(legacy.NetworkFileError, match=r"swapped\.pkl: D: is a recorded 'Generator', expected a 'Discriminator'"):
        legacy.load_network(path)
    with pytest.raises(legacy.NetworkFileError, match='network file not found'):
        legacy.load_network(tmp_path / 'absent.pkl')
    assert not (tmp_path / 'MARKER').exists()


@pytest.mark.parametrize('field,value,message', [
    ('G_kwargs', dict(G_KWARGS, mapping_kwargs=dict(class_name='subprocess.getoutput', cmd='touch X')),
     r"G\.init_kwargs\.mapping_kwargs\.class_name = 'subprocess\.getoutput': refused"),
    ('G_kwargs', dict(G_KWARGS, img_resolution=2 ** 30), r'img_resolution = 1073741824: outside'),
    ('training_set_kwargs', dict(DATASET, class_name='subprocess.getoutput'),
     r"training_set_kwargs\.class_name = 'subprocess\.getoutput': refused, not on the allow-list"),
])
def test_recorded_kwargs_are_validated(tmp_path, nets, field, value, message):
    path = write(tmp_path, nets, **{field: value})
    with pytest.raises(legacy.NetworkFileError, match=message):
        legacy.load_network(path)


def test_our_snapshot_export_and_legacy_format_load(tmp_path, nets):
    G, D, G_ema = nets
    common = {k: G_KWARGS[k] for k in ('c_dim', 'img_resolution', 'img_channels')}
    spec = lambda kwargs, cls: dict({k: v for k, v in kwargs.items() if k not in common}, class_name=cls)  # noqa: E731
    snapshot = dict(G=G.state_dict(), D=D.state_dict(), G_ema=G_ema.state_dict(), cur_nimg=64,
                    G_kwargs=spec(G_KWARGS, legacy.GENERATOR), D_kwargs=spec(D_KWARGS, legacy.DISCRIMINATOR),
                    common_kwargs=common, training_set_kwargs=DATASET)
    torch.save(snapshot, tmp_path / 'snap.pt')
    torch.save(snapshot, tmp_path / 'old.pt', _use_new_zipfile_serialization=False)
    for name in ('snap.pt', 'old.pt'):
        result = legacy.load_network(tmp_path / name)
        assert result['kind'] == 'snapshot' and result['state']['cur_nimg'] == 64
        for ours, ref in zip(outputs(result['G'], result['D'], result['G_ema']), outputs(*nets)):
            assert torch.equal(ours, ref)
    # a G_sparse.pt export of a patched run: G_ema plus mask buffers our baseline network does not have
    masked = dict(G_ema.state_dict(), **{'synthesis.b4.conv1.weight_mask': torch.ones(32, 32, 3, 3)})
    torch.save(dict(G_ema=masked, kind='sparse', method='regan', G_kwargs=snapshot['G_kwargs'],
                    common_kwargs=common), tmp_path / 'G_sparse.pt')
    result = legacy.load_network(tmp_path / 'G_sparse.pt')
    assert result['kind'] == 'export' and result['G'] is None and result['D'] is None
    assert torch.equal(outputs(G, D, result['G_ema'])[1], outputs(*nets)[1])
