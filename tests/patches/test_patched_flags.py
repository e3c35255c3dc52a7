"""Patched trees (issue 23, item 6): a bad --sparse-exclude pattern names the flag, patched ProGAN's --interval 0
is refused, and a flag the chosen method ignores is reported by every patched vendor with the same line; the
underscore-style trees accept the sparse flags with '_' as well (`--rg_lambda` = `--rg-lambda`, issue 21 item 6).

One worker process per vendor tree runs all of that tree's command lines (the import is paid once).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from sparse_core.patching import apply_to_copy

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("patched_cli_worker.py")
VENDORS = {"sngan": "sngan", "fastgan": "fastgan", "progan": "progan", "autogan": "autogan",
           "stylegan2": "stylegan2_ada"}
TINY = {  # tiny runs on a folder of 4 images ({DATA}) into {OUT}
    "sngan": ["--data", "{DATA}", "--ch", "8", "--z_dim", "8", "--batch_size", "4", "--n_dis", "1", "--total_steps",
              "1", "--eval_step", "0", "--sample_step", "0", "--device", "cpu", "--logdir", "{OUT}"],
    "fastgan": ["--path", "{DATA}", "--im_size", "256", "--batch_size", "2", "--ngf", "8", "--ndf", "8", "--nz", "16",
                "--lpips_untrained", "--lpips_width_div", "16", "--device", "cpu", "--iter", "0",
                "--output_path", "{OUT}"],
    "progan": ["--data", "{DATA}", "--ch", "8", "--z_dim", "8", "--max_res", "8", "--schedule", "kimg",
               "--stable_kimg", "0.004", "--fade_kimg", "0", "--batch_sizes", "4,4", "--sample_step", "0",
               "--device", "cpu", "--logdir", "{OUT}"],
    "autogan": ["--data", "{DATA}", "--gf_dim", "8", "--df_dim", "8", "--latent_dim", "8", "--max_iter", "1",
                "-gen_bs", "4", "-dis_bs", "4", "--n_critic", "1", "--val_freq", "0", "--device", "cpu",
                "--logdir", "{OUT}"],
    "stylegan2": ["--outdir", "{OUT}", "--data", "{DATA}", "--device", "cpu", "--cbase", "256", "--cmax", "16",
                  "--map", "1", "--batch", "4", "--mbstd-group", "2", "--metrics", "none", "--workers", "0",
                  "--kimg", "0.004", "--dry-run"],
}
IGNORED = "sparse training: --sparse regan ignores --rg-lambda (a flag of --sparse rggan)"
IGNORED_NONE = "sparse training: --sparse none ignores --sparsity (a flag of --sparse regan)"


def cases(vendor):
    """[(argv extra, expectation)]: ('refused', flag) or ('reports', line)."""
    out = [(["--sparse", "regan", "--sparse-exclude", "("], ("refused", "--sparse-exclude")),
           (["--sparse", "regan", "--rg-lambda", "0.001"], ("reports", IGNORED))]
    if vendor != "stylegan2":  # the underscore-style trees take the hyphenated sparse flags with '_' too
        out.append((["--sparse", "regan", "--rg_lambda", "0.001"], ("reports", IGNORED)))
    if vendor == "progan":
        out.append((["--sparse", "regan", "--interval", "0"], ("refused", "--interval: interval")))
    if vendor == "stylegan2":  # dry runs: both reports cost nothing here
        out.append((["--sparsity", "0.5"], ("reports", IGNORED_NONE)))
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """{vendor: [(case, result, out folder)]} from one worker per patched tree."""
    work = tmp_path_factory.mktemp("patched")
    data = work / "images"
    data.mkdir()
    gen = torch.Generator().manual_seed(0)
    for i in range(4):
        Image.fromarray(torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8, generator=gen).numpy()).save(
            data / f"{i}.png")
    jobs, expected = [], {}
    for vendor, folder in VENDORS.items():
        tree = apply_to_copy(ROOT / "patches" / f"{folder}.patch", ROOT / "vendor" / folder, work / folder)
        argvs, outs = [], []
        for i, (extra, _) in enumerate(cases(vendor)):
            out = work / f"{vendor}-out{i}"
            outs.append(out)
            argvs.append([str(data) if a == "{DATA}" else str(out) if a == "{OUT}" else a for a in TINY[vendor]]
                         + extra)
        jobs.append({"tree": str(tree), "argvs": argvs})
        expected[vendor] = outs
    (work / "jobs.json").write_text(json.dumps(jobs))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(WORKER), str(work / "jobs.json"), str(work / "result.json")],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    found = json.loads((work / "result.json").read_text())
    return {vendor: list(zip(cases(vendor), found[k], expected[vendor])) for k, vendor in enumerate(VENDORS)}


@pytest.mark.parametrize("vendor", list(VENDORS))
def test_patched_flags_refused_by_name_or_reported_alike(results, vendor):
    for (extra, (kind, what)), result, out in results[vendor]:
        text = result["out"]
        assert "Traceback" not in text, (extra, text[-2000:])
        if kind == "refused":
            assert result["code"] == 2, (extra, text[-2000:])
            errors = [line for line in text.splitlines() if ": error:" in line or line.startswith("Error:")]
            assert len(errors) == 1 and what in errors[0], (extra, text[-2000:])
            assert not out.exists(), extra
        else:
            assert result["code"] == 0, (extra, text[-2000:])
            assert what in text.splitlines(), (extra, text[-2000:])
