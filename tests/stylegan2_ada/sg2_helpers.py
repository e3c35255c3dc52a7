"""Shared helpers of the StyleGAN2-ADA tests (imported by test files; not a test module)."""
import importlib.util
import math
import os
import sys

import torch

SG2_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', 'vendor', 'stylegan2_ada'))
REPO_ROOT = os.path.abspath(os.path.join(SG2_ROOT, '..', '..'))
PYTHON = sys.executable
if SG2_ROOT not in sys.path:
    sys.path.insert(0, SG2_ROOT)

# A StyleGAN2 small enough for a CPU: 32x32 digits, channels <= 32, batch 4.
TINY_FLAGS = ['--data', 'digits', '--device', 'cpu', '--cbase', '256', '--cmax', '32', '--map', '2',
              '--batch', '4', '--mbstd-group', '2', '--metrics', 'none', '--workers', '0', '--grid', '2x2']
TINY_KWARGS = dict(data='digits', device='cpu', cbase=256, cmax=32, map_layers=2, batch=4, mbstd_group=2,
                   metrics=[], workers=0, grid=(2, 2))


def load_script(name):
    """Import a top-level script of the tree (train.py, ...) under a unique module name, so it
    cannot clash with another vendor tree's script of the same file name."""
    module_name = f'sg2_script_{name}'
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, os.path.join(SG2_ROOT, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def subprocess_env():
    env = dict(os.environ)
    env['PYTHONPATH'] = REPO_ROOT + os.pathsep + env.get('PYTHONPATH', '')
    env.setdefault('OMP_NUM_THREADS', '2')
    return env


def first_difference(a, b, where, skip=()):
    """First place where a and b differ, as a string; None if identical (tensors bit for bit)."""
    if torch.is_tensor(a) or torch.is_tensor(b):
        if not (torch.is_tensor(a) and torch.is_tensor(b)) or a.shape != b.shape or a.dtype != b.dtype:
            return f'{where}: type/shape differs'
        same = torch.equal(a, b) or (a.is_floating_point() and bool(((a == b) | (a.isnan() & b.isnan())).all()))
        return None if same else f'{where}: max |diff| {float((a.double() - b.double()).abs().max()):.3g}'
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f'{where}: keys differ {sorted(set(a) ^ set(b))[:5]}'
        for k in a:
            if str(k).startswith(tuple(skip)):
                continue
            d = first_difference(a[k], b[k], f'{where}.{k}', skip)
            if d:
                return d
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f'{where}: lengths {len(a)} vs {len(b)}'
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f'{where}[{i}]', skip)
            if d:
                return d
        return None
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return None
    return None if a == b else f'{where}: {a!r} vs {b!r}'


def nvlabs_pickle(tmp_path, seed=5):
    """An NVlabs-format network pickle (embedded source that would write MARKER if run) of the TINY config."""
    sys.path.insert(0, os.path.join(REPO_ROOT, 'tests', 'safeload'))
    import nvlabs_format as nf
    import dnnlib
    train = load_script('train')
    _, args = train.setup_training_loop_kwargs(**TINY_KWARGS)
    common = dict(c_dim=0, img_resolution=32, img_channels=3)
    torch.manual_seed(seed)
    G = dnnlib.util.construct_class_by_name(**args.G_kwargs, **common)
    D = dnnlib.util.construct_class_by_name(**args.D_kwargs, **common)
    G_ema = dnnlib.util.construct_class_by_name(**args.G_kwargs, **common)
    kw = lambda spec: dict({k: v for k, v in spec.items() if k != 'class_name'}, **common)  # noqa: E731
    path = nf.write_nvlabs_pickle(tmp_path / 'network-snapshot-000100.pkl', tmp_path / 'MARKER', G=G, D=D, G_ema=G_ema,
                                  G_kwargs=kw(args.G_kwargs), D_kwargs=kw(args.D_kwargs))
    return path, G, D, G_ema
