"""Shared by the FastGAN tests (not a test module): tiny data and runs of train.py as a subprocess."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "vendor" / "fastgan"
# 256x256 (the smallest size FastGAN has), batch 2, narrow nets and a narrow random LPIPS: ~1 s per iteration
TINY = ["--im_size", "256", "--batch_size", "2", "--ngf", "8", "--ndf", "8", "--nz", "16", "--lpips_untrained",
        "--lpips_width_div", "16", "--device", "cpu", "--tick", "1", "--save_interval", "1"]


def make_folder(path: Path, count: int = 4, size: int = 256, seed: int = 0) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    for i in range(count):
        base = rng.randint(0, 256, (8, 8, 3)).astype(np.uint8)  # smooth-ish images: upscaled noise
        Image.fromarray(base).resize((size, size), Image.BILINEAR).save(path / f"img{i}.png")
    return path


def train(tree: Path, out: Path, name: str, *flags, check=True):
    r = subprocess.run([sys.executable, str(tree / "train.py"), *TINY, *flags, "--output_path", str(out),
                        "--name", name], capture_output=True, text=True, cwd=tree,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    if check and r.returncode != 0:
        raise AssertionError(r.stdout[-3000:] + r.stderr[-3000:])
    return r


def run_dir(out: Path, name: str) -> Path:
    return out / "train_results" / name


def stats(out: Path, name: str) -> list:
    return [json.loads(line) for line in (run_dir(out, name) / "stats.jsonl").read_text().splitlines()]
