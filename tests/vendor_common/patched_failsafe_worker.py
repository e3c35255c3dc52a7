"""The patched trees' fail-safe checks, all five in one process (one torch import):

    python patched_failsafe_worker.py RESULT.json IMAGES WORKDIR VENDOR=TREE ...

For each patched tree (--sparse regan): an absurd learning rate from a mid-run step on must stop the run with
exit 1 and one line naming the step and the loss, before the sparse exports (G_sparse.pt / G_dense.pt) or any
snapshot from the diverged state are written; a full disk at the G_sparse.pt export must end with one line
naming that file and the cause, leaving no temporary and no half-written G_sparse.pt (checked for
FULL_DISK_VENDORS: the export goes through sparse_core's one writer in every tree). Writes
{vendor: [problems]} (empty lists: all held) to RESULT.json.
"""
import contextlib
import glob
import importlib.util
import io
import json
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import failsafe as fs  # noqa: E402
from vendor.common.runguard import run_cli  # noqa: E402
from vendor.common.runlog import load_snapshot  # noqa: E402

SG2_FLAGS = ['--data', 'digits', '--device', 'cpu', '--cbase', '256', '--cmax', '32', '--map', '2', '--batch', '4',
             '--mbstd-group', '2', '--metrics', 'none', '--workers', '0', '--grid', '2x2', '--kimg', '0.016',
             '--tick', '0.004', '--snap', '1', '--img-snap', '0', '--seed', '3', '--sparse', 'regan']

FULL_DISK_VENDORS = ('sngan', 'stylegan2_ada')  # SNGAN's loop is cheapest; StyleGAN2-ADA's export is rank-0 code


def load_tree(vendor, tree):
    for name in [n for n, m in sys.modules.items() if getattr(m, '__file__', None) and '/patched/' in m.__file__]:
        del sys.modules[name]  # the previous tree's top-level modules (models, train, training, ...)
    sys.path.insert(0, tree)
    spec = importlib.util.spec_from_file_location(f'{vendor}_patched_train', os.path.join(tree, 'train.py'))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def call(main):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = run_cli(main)
        except SystemExit as error:
            code = error.code
    text = out.getvalue() + err.getvalue()  # StyleGAN2's Logger mirrors stderr into stdout
    return code, [line for line in text.splitlines() if line.startswith('error: ')], text


def check_vendor(vendor, tree, images, work):
    problems = []
    module = load_tree(vendor, tree)
    if vendor == 'stylegan2_ada':
        from torch_utils import training_stats

        def runner(outdir):
            def main():
                training_stats._counters.clear()
                training_stats._cumulative.clear()
                training_stats._sync_called = False
                module.main.main(args=['--outdir', outdir, *SG2_FLAGS], standalone_mode=False)
                return 0
            return main

        def run_dir(outdir):
            return os.path.join(outdir, sorted(os.listdir(outdir))[-1])
        last, step_of, lr_calls = 'network-snapshot-*.pt', (lambda s: s['cur_nimg'] / 1000), 4
        step_pattern = r'kimg ([\d.]+)\): (loss \S+|\w+ weights)'
    else:
        v = fs.VENDORS[vendor](train=module, images=images)

        def runner(outdir):
            return lambda: v.main(v.argv(outdir) + ['--sparse', 'regan'])

        def run_dir(outdir):
            return str(v.run_dir(__import__('pathlib').Path(outdir)))
        last, step_of, lr_calls = v.last, v.step_of, v.lr_calls
        step_pattern = r'step (\d+): (loss \S+|\w+ weights)'

    # an absurd learning rate from a mid-run step on
    outdir = os.path.join(work, vendor, 'nan')
    with fs.absurd_lr_after(lr_calls + 1):
        code, errors, text = call(runner(outdir))
    run = run_dir(outdir)
    match = re.search(step_pattern, errors[0]) if len(errors) == 1 else None
    if code != 1 or not match:
        problems.append(f'absurd lr: exit {code}, error lines {errors}: {text[-1500:]}')
    else:
        snapshot = load_snapshot(sorted(glob.glob(os.path.join(run, last)))[-1])  # the newest
        if not (step_of(snapshot) < float(match.group(1)) and fs.all_finite(snapshot)):
            problems.append(f'absurd lr: newest snapshot at {step_of(snapshot)}, stopped at {match.group(1)}')
    for name in ('G_sparse.pt', 'G_dense.pt', 'G_final.pt'):
        if os.path.exists(os.path.join(run, name)):
            problems.append(f'absurd lr: {name} was written from the diverged state')
    if fs.temporaries(run):
        problems.append(f'absurd lr: temporaries left {fs.temporaries(run)}')

    if vendor not in FULL_DISK_VENDORS:
        return problems
    # a full disk at the sparse export (sparse_core's writer: the same code path in every patched tree)
    outdir = os.path.join(work, vendor, 'full')
    with fs.enospc_on('G_sparse.pt') as full:
        code, errors, text = call(runner(outdir))
    run = run_dir(outdir)
    target = os.path.join(run, 'G_sparse.pt')
    if full.failed is None or code != 1 or len(errors) != 1 or target not in errors[0] \
            or 'No space left on device' not in errors[0]:
        problems.append(f'full disk: exit {code}, error lines {errors}: {text[-1500:]}')
    if os.path.exists(target) or fs.temporaries(run):
        problems.append(f'full disk: left {target if os.path.exists(target) else fs.temporaries(run)}')
    return problems


def main():
    result_path, images, work = sys.argv[1], sys.argv[2], sys.argv[3]
    results = {}
    for pair in sys.argv[4:]:
        vendor, tree = pair.split('=', 1)
        start = time.time()
        results[vendor] = check_vendor(vendor, tree, images, work)
        print(f'{vendor}: {time.time() - start:.1f} s', file=sys.__stderr__)
    with open(result_path, 'w') as handle:
        json.dump(results, handle, indent=1)


if __name__ == '__main__':
    main()
