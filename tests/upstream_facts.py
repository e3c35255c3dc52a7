"""Where the measured upstream facts (`shared/upstream/*.json`) are: one lookup for every layout test.

CI lays `shared/` beside the checkout; `SPARSE_GAN_UPSTREAM_DIR` points elsewhere (e.g. for a clone in a
temporary folder); a `shared/` inside the checkout is accepted too."""
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def upstream_fact(name: str) -> Path:
    """The path of shared/upstream/<name>; FileNotFoundError naming every place looked at."""
    candidates = [Path(d) for d in (os.environ.get("SPARSE_GAN_UPSTREAM_DIR"),) if d]
    candidates += [REPO.parent / "shared" / "upstream", REPO / "shared" / "upstream"]
    for folder in candidates:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{name} not found in {', '.join(map(str, candidates))} (set SPARSE_GAN_UPSTREAM_DIR)")
