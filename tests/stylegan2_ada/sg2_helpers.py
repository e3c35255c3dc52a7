"""Shared helpers of the StyleGAN2-ADA tests (imported by test files; not a test module)."""
import importlib.util
import os
import sys

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
