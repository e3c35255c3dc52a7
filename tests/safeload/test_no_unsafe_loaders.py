"""A guard over the source tree: no code path can read a file unsafely (issue 14 item 1, SPEC section 8).

Read with the ast module, every Python file of sparse_core/, vendor/, bench/ and scripts/ must
- call torch.load only with a literal weights_only=True (the shared path is vendor/common/safeload.py),
- never call pickle.load / pickle.loads / torch.storage._load_from_bytes (unrestricted unpickling),
- define pickle.Unpickler subclasses only with their own find_class (an allow-list),
- load TorchScript (torch.jit.load) only for the metric detectors (vendor/common/metrics/detectors.py),
- never write weights_only=False.
"""
import ast
import os

import pytest

from source_scan import ROOT, dotted, python_files

JIT_ALLOWED = {os.path.join('vendor', 'common', 'metrics', 'detectors.py')}


def problems_in(rel, root=ROOT):
    tree = ast.parse(open(os.path.join(root, rel), encoding='utf-8').read(), rel)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = dotted(node.func)
            kwargs = {k.arg: k.value for k in node.keywords if k.arg}
            if name == 'torch.load':
                flag = kwargs.get('weights_only')
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    found.append(f'{rel}:{node.lineno}: torch.load without weights_only=True')
            elif name in ('pickle.load', 'pickle.loads', 'torch.storage._load_from_bytes', 'dill.load', 'dill.loads'):
                found.append(f'{rel}:{node.lineno}: unrestricted {name}')
            elif name == 'torch.jit.load' and rel not in JIT_ALLOWED:
                found.append(f'{rel}:{node.lineno}: torch.jit.load outside the metric detectors')
            for key, value in kwargs.items():
                if key == 'weights_only' and isinstance(value, ast.Constant) and value.value is False:
                    found.append(f'{rel}:{node.lineno}: weights_only=False')
        elif isinstance(node, ast.ClassDef):
            if any(dotted(base).endswith('Unpickler') for base in node.bases):
                methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
                if 'find_class' not in methods:
                    found.append(f'{rel}:{node.lineno}: Unpickler subclass {node.name} without find_class')
    return found


def test_the_guard_catches_what_it_claims(tmp_path):
    (tmp_path / 'x.py').write_text('import torch, pickle\n'
                                   'torch.load("a")\ntorch.load("a", weights_only=False)\npickle.loads(b"")\n'
                                   'torch.jit.load("m.pt")\nclass U(pickle.Unpickler):\n    pass\n'
                                   'torch.load("a", weights_only=True)\n')
    found = problems_in('x.py', root=str(tmp_path))
    assert sorted(line.split(': ', 1)[1] for line in found) == sorted([
        'torch.load without weights_only=True', 'torch.load without weights_only=True', 'weights_only=False',
        'unrestricted pickle.loads', 'torch.jit.load outside the metric detectors',
        'Unpickler subclass U without find_class']), found


def test_no_unsafe_loader_in_the_source_tree():
    files = list(python_files())
    assert any(f.endswith(os.path.join('common', 'safeload.py')) for f in files)
    found = [p for rel in files for p in problems_in(rel)]
    assert found == []
