"""The project's own Python sources as the source-scanning safety tests read them (one walk, one name helper)."""
import ast
import os

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
FOLDERS = ('sparse_core', 'vendor', 'bench', 'scripts')


def python_files():
    """Paths (relative to the checkout) of every .py file under FOLDERS."""
    for folder in FOLDERS:
        for base, dirs, names in os.walk(os.path.join(ROOT, folder)):
            dirs[:] = [d for d in dirs if d not in ('__pycache__', '.venv')]
            for name in names:
                if name.endswith('.py'):
                    yield os.path.relpath(os.path.join(base, name), ROOT)


def dotted(node: ast.AST) -> str:
    """'a.b.c' for an attribute chain on a name ('' for anything else)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return '.'.join(reversed(parts))
