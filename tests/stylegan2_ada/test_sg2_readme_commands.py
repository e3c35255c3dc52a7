"""Every StyleGAN2-ADA command in README.md and vendor/stylegan2_ada/README.md runs (tiny sizes).

The commands are read from the READMEs' bash blocks (COMMON="..." expanded), their data paths point at
tiny generated stand-ins, and small-model flags are appended (click keeps the last value). train.py commands
run as dry runs (-n: every flag resolved and checked, the resume / dataset read); dataset_tool, generate
and calc_metrics run for real; the README's compare.py command trains and reports (1 iteration per run).
"""
import io
import json
import os
import pickle
import re
import shlex
import subprocess
import sys
import tarfile

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sg2_helpers  # noqa: E402
from sg2_helpers import PYTHON, REPO_ROOT  # noqa: E402

READMES = [os.path.join(REPO_ROOT, 'README.md'), os.path.join(REPO_ROOT, 'vendor', 'stylegan2_ada', 'README.md')]
SMALL = ['--cbase=256', '--cmax=32', '--map=2', '--batch=4', '--mbstd-group=2', '--gpus=1', '--workers=0',
         '--device=cpu', '--metrics=none']


def readme_commands():
    cmds = []
    for path in READMES:
        text = open(path).read()
        for block in re.findall(r'```bash\n(.*?)```', text, re.S):
            env = {}
            for line in block.replace('\\\n', ' ').splitlines():
                line = line.split(' # ')[0].strip()
                match = re.match(r'^(\w+)="(.*)"$', line)
                if match:
                    env[match.group(1)] = match.group(2)
                    continue
                for name, value in env.items():
                    line = line.replace(f'${name}', value)
                words = shlex.split(line) if line.startswith('python ') else []
                if len(words) > 1 and ('stylegan2_ada/' in words[1] or
                                       (words[1] == 'bench/compare.py' and 'stylegan2_ada' in words)):
                    cmds.append(words[1:])
    return cmds


@pytest.fixture(scope='module')
def stand_ins(tmp_path_factory):
    root = tmp_path_factory.mktemp('readme')
    dataset_tool = sg2_helpers.load_script('dataset_tool')
    dataset_tool.convert_dataset('digits', str(root / 'tiny.zip'), max_images=40, verbose=False)
    folder = root / 'images'
    os.makedirs(folder)
    for i in range(6):
        PIL.Image.fromarray(np.full((64, 64, 3), 30 * i, np.uint8)).save(folder / f'{i}.png')
    # a CIFAR-10 archive in the python-batch layout, 4 images per batch
    with tarfile.open(root / 'cifar-10-python.tar.gz', 'w:gz') as tar:
        for b in range(1, 6):
            raw = pickle.dumps({b'data': np.full((4, 3072), 10 * b, np.uint8), b'labels': [0, 1, 2, 3]}, protocol=2)
            info = tarfile.TarInfo(f'cifar-10-batches-py/data_batch_{b}')
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    os.makedirs(root / 'car_lmdb')
    # a snapshot for generate.py / calc_metrics.py, written by a 1-iteration run
    train = sg2_helpers.load_script('train')
    from training import training_loop
    _, args = train.setup_training_loop_kwargs(**sg2_helpers.TINY_KWARGS)
    args.run_dir, args.total_kimg, args.kimg_per_tick, args.image_snapshot_ticks = str(root / 'run'), 0.004, 0.004, None
    training_loop.training_loop(rank=0, **args)
    return root


def substitute(words, root, index):
    out = []
    for w in words:
        w = re.sub(r'~/datasets/[\w.-]+\.zip', str(root / 'tiny.zip'), w)
        w = w.replace('~/downloads/cifar-10-python.tar.gz', str(root / 'cifar-10-python.tar.gz'))
        w = re.sub(r'~/(downloads/100-shot-obama|my_images)', str(root / 'images'), w)
        w = re.sub(r'~/lsun/\w+_lmdb', str(root / 'car_lmdb'), w)
        w = re.sub(r'runs/[^ ]*network-snapshot-\d+\.pt', str(root / 'run' / 'network-snapshot-000000.004.pt'), w)
        w = re.sub(r'^--subset=\d+$', '--subset=20', w)   # the stand-in zip has 40 images
        if w.startswith('--dest='):
            w = f'--dest={root}/out{index}.zip'
        if w.startswith('--outdir='):
            w = f'--outdir={root}/runs{index}'
        out.append(w)
    return out


def run(words, cwd):
    return subprocess.run([PYTHON, *words], capture_output=True, text=True, cwd=cwd, env=sg2_helpers.subprocess_env(),
                          timeout=900)


def test_every_stylegan2_command_in_the_readmes_runs(stand_ins, tmp_path):
    cmds = readme_commands()
    scripts = [c[0] for c in cmds]
    assert scripts.count('vendor/stylegan2_ada/train.py') >= 8 and scripts.count('work/stylegan2_ada/train.py') >= 4
    assert 'bench/compare.py' in scripts and scripts.count('vendor/stylegan2_ada/dataset_tool.py') >= 4
    from sparse_core.patching import apply_to_copy
    work = tmp_path / 'work'
    apply_to_copy(os.path.join(REPO_ROOT, 'patches', 'stylegan2_ada.patch'), os.path.join(REPO_ROOT, 'vendor', 'stylegan2_ada'),
                  work / 'stylegan2_ada')
    dry = {'vendor': [], 'work': []}
    for index, words in enumerate(cmds):
        words = substitute(words, stand_ins, index)
        script = words[0]
        if script.endswith('train.py'):
            dry['work' if script.startswith('work/') else 'vendor'].append(words[1:] + SMALL + ['-n'])
            continue
        if script == 'bench/compare.py':
            out = os.path.relpath(tmp_path / 'cmp', tmp_path)   # a relative --out, from another folder
            words = [os.path.join(REPO_ROOT, w) if w == script else (out if w == 'runs/cmp' else w) for w in words]
            words += ['--kimg=0.004', '--tick=0.004', '--metric-gen=32', '--workers=0', '--grid=2x2', '--mbstd-group=2']
            r = run(words, cwd=tmp_path)
            assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
            assert '| rggan |' in (tmp_path / 'cmp' / 'comparison.md').read_text()
            continue
        # the tools run in-process through click (their own CLI, without an interpreter start each)
        name = os.path.basename(script)[:-3]
        cli = {'dataset_tool': 'main', 'generate': 'generate_cli', 'calc_metrics': 'calc_metrics'}[name]
        if name == 'calc_metrics':
            words += ['--device=cpu', f'--metrics-cache={tmp_path}/cache', f'--inception={tmp_path}/offline.pt']
        if name == 'generate':
            words += ['--device=cpu', f'--outdir={tmp_path}/gen{index}']
        result = CliRunner().invoke(getattr(sg2_helpers.load_script(name), cli), words[1:])
        offline = name == 'calc_metrics' or '_lmdb' in ' '.join(words)  # no detector download / no lmdb here
        assert result.exception is None or isinstance(result.exception, SystemExit), (words, result.output[-3000:])
        assert result.exit_code == 0 or (offline and result.exit_code == 2), (words, result.output[-3000:])
    for tree, argvs in dry.items():
        root = os.path.join(REPO_ROOT, 'vendor') if tree == 'vendor' else str(work)
        code = ('import json, sys; sys.path.insert(0, sys.argv[1]); import train\n'
                'for argv in json.loads(sys.argv[2]):\n'
                '    try:\n        train.main.main(args=argv, standalone_mode=False)\n'
                '    except SystemExit as e:\n        assert not e.code, argv\n')
        r = subprocess.run([PYTHON, '-c', code, os.path.join(root, 'stylegan2_ada'), json.dumps(argvs)],
                           capture_output=True, text=True, env=sg2_helpers.subprocess_env(), timeout=900)
        assert r.returncode == 0 and r.stdout.count('Dry run; exiting.') == len(argvs), r.stdout[-3000:] + r.stderr[-3000:]
