"""`python -m sparse_core.ops.build [--cuda]`: build the native extension ahead of time.

The logic lives in sparse_core.ops.loader; this package only gives the command its name (a
package's __main__ avoids runpy's double-import warning for a module of an imported package).
"""
from ..loader import main

__all__ = ["main"]
