"""The patched vendor trees: the reference an injection must reproduce byte for byte."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from inject_checks import ROOT  # noqa: E402
from sparse_core.patching import apply_to_copy  # noqa: E402


@pytest.fixture(scope="session")
def patched(tmp_path_factory):
    """vendor -> the tree patches/<vendor>.patch makes (built on first use)."""
    cache = {}

    def get(vendor):
        if vendor not in cache:
            cache[vendor] = apply_to_copy(ROOT / "patches" / f"{vendor}.patch", ROOT / "vendor" / vendor,
                                          tmp_path_factory.mktemp("patched") / vendor)
        return cache[vendor]
    return get
