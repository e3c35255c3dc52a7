"""Bad flags of every vendor CLI: exit 2, one message naming the flag, nothing written (issue 23, item 6).

One table of (vendor, flags, flag named) run in-process: the checks happen while the arguments are parsed,
before any data, network or folder exists, so each case takes milliseconds. "Nothing written" is checked on
the output folder (absent afterwards) and on the folder that holds it (same listing as before).
"""
import os
import sys

import pytest
import torch
from click.testing import CliRunner

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "stylegan2_ada"))
import sg2_helpers  # noqa: E402

from vendor.autogan import train as autogan  # noqa: E402
from vendor.fastgan import eval as fastgan_eval  # noqa: E402
from vendor.fastgan import train as fastgan  # noqa: E402
from vendor.progan import train as progan  # noqa: E402
from vendor.sngan import train as sngan  # noqa: E402

# a device that does not exist here: cuda without a GPU, else an index past the last GPU
NO_DEVICE = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"
BIG_SEED = str(2 ** 32)

# (vendor, bad flags, the flag the message must name); OUT is the run folder, FILE a regular file
CASES = [
    ("fastgan", ["--seed", "-1"], "--seed"),
    ("fastgan", ["--seed", BIG_SEED], "--seed"),
    ("fastgan", ["--lr", "inf"], "--lr"),
    ("fastgan", ["--lr", "0"], "--lr"),
    ("fastgan", ["--lr", "nan"], "--lr"),
    ("fastgan", ["--beta1", "1"], "--beta1"),
    ("fastgan", ["--beta1", "-0.5"], "--beta1"),
    ("fastgan", ["--device", NO_DEVICE], "--device"),
    ("fastgan", ["--output_path", "FILE"], "--output_path"),
    ("fastgan", ["--output_path", "/proc/sparse-gan-test"], "--output_path"),
    ("progan", ["--seed", BIG_SEED], "--seed"),
    ("progan", ["--seed", "-3"], "--seed"),
    ("progan", ["--lr", "inf"], "--lr"),
    ("progan", ["--lr", "0"], "--lr"),
    ("progan", ["--betas", "0", "1"], "--betas"),
    ("progan", ["--betas", "-0.1", "0.9"], "--betas"),
    ("progan", ["--lambda_gp", "nan"], "--lambda_gp"),
    ("progan", ["--drift", "nan"], "--drift"),
    ("progan", ["--stable_kimg", "nan"], "--stable_kimg"),
    ("progan", ["--fade_kimg", "inf"], "--fade_kimg"),
    ("progan", ["--ema_beta", "nan"], "--ema_beta"),
    ("progan", ["--device", NO_DEVICE], "--device"),
    ("progan", ["--logdir", "FILE"], "--logdir"),
    ("progan", ["--logdir", "FILE/run"], "--logdir"),
    ("progan", ["--logdir", "/proc/sparse-gan-test"], "--logdir"),
    ("autogan", ["--random_seed", "-1"], "--random_seed"),
    ("autogan", ["--random_seed", BIG_SEED], "--random_seed"),
    ("autogan", ["--g_lr", "inf"], "--g_lr"),
    ("autogan", ["--d_lr", "0"], "--d_lr"),
    ("autogan", ["--beta1", "1.5"], "--beta1"),
    ("autogan", ["--beta2", "nan"], "--beta2"),
    ("autogan", ["--device", NO_DEVICE], "--device"),
    ("autogan", ["--logdir", "FILE"], "--logdir"),
    ("autogan", ["--logdir", "/proc/sparse-gan-test"], "--logdir"),
    ("sngan", ["--seed", BIG_SEED], "--seed"),
    ("sngan", ["--betas", "0", "1"], "--betas"),
    ("sngan", ["--lr_G", "inf"], "--lr_G"),
    ("sngan", ["--device", NO_DEVICE], "--device"),
    ("sngan", ["--logdir", "FILE"], "--logdir"),
    ("sngan", ["--logdir", "/proc/sparse-gan-test"], "--logdir"),
    ("stylegan2", ["--seed", BIG_SEED], "--seed"),
    ("stylegan2", ["--outdir", "FILE"], "--outdir"),
    ("stylegan2", ["--outdir", "/proc/sparse-gan-test"], "--outdir"),
    ("sg2_generate", ["--trunc", "nan"], "--trunc"),
    ("sg2_generate", ["--seeds", "5-2"], "--seeds"),
    ("sg2_generate", ["--seeds", "1,-1"], "--seeds"),
    ("sg2_generate", ["--seeds", f"0,{BIG_SEED}"], "--seeds"),
    ("sg2_generate", ["--outdir", "FILE"], "--outdir"),
    ("fastgan_eval", ["--seed", BIG_SEED], "--seed"),
    ("fastgan_eval", ["--device", NO_DEVICE], "--device"),
    ("fastgan_eval", ["--dist", "FILE"], "--dist"),
    ("fastgan_eval", ["--metric", "no_such_metric", "--path", "digits"], "--metric"),
    ("fastgan_eval", ["--metric", "fid_digits", "--path", "MISSING"], "--path"),
    ("fastgan_eval_runs", ["--start_iter", "5", "--end_iter", "2"], "--end_iter"),
    ("fastgan_eval", ["--metric", "fid_digits", "--path", "digits", "--n_sample", "1"], "--n_sample"),
]

BASE = {  # valid, tiny command lines (a check that stopped working ends in a short run, not an hour of training)
    "fastgan": ["--path", "digits", "--im_size", "256", "--device", "cpu", "--output_path", "{OUT}", "--name", "r",
                "--iter", "0", "--batch_size", "2", "--ngf", "8", "--ndf", "8", "--nz", "16", "--lpips_untrained",
                "--lpips_width_div", "16", "--data-ratio", "0.005"],
    "progan": ["--data", "digits", "--ch", "8", "--max_res", "8", "--device", "cpu", "--logdir", "{OUT}",
               "--epoch", "1", "--data-ratio", "0.005", "--z_dim", "8"],
    "autogan": ["--data", "digits", "--device", "cpu", "--logdir", "{OUT}", "--max_iter", "1", "--gf_dim", "8",
                "--df_dim", "8", "--latent_dim", "8", "--val_freq", "0", "--data-ratio", "0.005"],
    "sngan": ["--data", "digits", "--device", "cpu", "--logdir", "{OUT}", "--total_steps", "1", "--ch", "8",
              "--z_dim", "8", "--eval_step", "0", "--data-ratio", "0.005"],
    "stylegan2": ["--outdir", "{OUT}", *sg2_helpers.TINY_FLAGS],
    "sg2_generate": ["--network", "{OUT}/missing.pt", "--seeds", "0", "--outdir", "{OUT}", "--device", "cpu"],
    "fastgan_eval": ["--ckpt", "{OUT}/missing.pth", "--dist", "{OUT}", "--device", "cpu", "--n_sample", "2"],
    "fastgan_eval_runs": ["--artifacts", "{OUT}", "--dist", "{OUT}", "--device", "cpu", "--n_sample", "1"],
}


def argv_for(vendor, bad, out, file):
    fill = {"{OUT}": str(out), "FILE": str(file), "FILE/run": f"{file}/run",
            "MISSING": str(out.parent / "missing-images")}
    argv = [fill.get(a, a.replace("{OUT}", str(out))) for a in BASE[vendor]]
    bad = [fill.get(a, a) for a in bad]
    flag_names = {a for a in bad if a.startswith("--")}
    for flag in flag_names:  # a bad flag replaces the base value of the same flag
        if flag in argv:
            i = argv.index(flag)
            del argv[i:i + 2]
    return argv + bad


def run_cli(vendor, argv, capsys):
    """(exit code, output) of one CLI call in this process."""
    if vendor in ("stylegan2", "sg2_generate"):
        module = sg2_helpers.load_script("train" if vendor == "stylegan2" else "generate")
        command = module.main if vendor == "stylegan2" else module.generate_cli
        result = CliRunner().invoke(command, argv)
        assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), \
            result.output
        return result.exit_code, result.output
    main = {"fastgan": fastgan.main, "progan": progan.main, "autogan": autogan.main, "sngan": sngan.main,
            "fastgan_eval": fastgan_eval.main, "fastgan_eval_runs": fastgan_eval.main}[vendor]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out + captured.err


@pytest.mark.parametrize("vendor, bad, flag", CASES, ids=[f"{v}:{' '.join(b)}" for v, b, _ in CASES])
def test_bad_flag_exits_2_naming_it_and_writes_nothing(tmp_path, capsys, vendor, bad, flag):
    file = tmp_path / "a-file"
    file.write_text("not a folder\n")
    out = tmp_path / "out"
    before = sorted(os.listdir(tmp_path))
    code, output = run_cli(vendor, argv_for(vendor, bad, out, file), capsys)
    assert code == 2, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.lower().startswith(("error", "usage error"))
              or ": error:" in line]
    assert len(errors) == 1 and flag in errors[0], output
    assert sorted(os.listdir(tmp_path)) == before, "something was written"
    assert file.read_text() == "not a folder\n"


def test_cases_cover_every_kind_of_flag_per_vendor():
    """The table holds, for every training CLI, a seed, an output folder that is a file and one under /proc,
    and an unusable device (FastGAN, ProGAN, AutoGAN, SNGAN)."""
    for vendor in ("fastgan", "progan", "autogan", "sngan", "stylegan2"):
        rows = [bad for v, bad, _ in CASES if v == vendor]
        assert any("-1" in b or BIG_SEED in b for b in rows), vendor
        assert any("FILE" in b for b in rows) and any(any(a.startswith("/proc/") for a in b) for b in rows), vendor
        if vendor != "stylegan2":
            assert any(NO_DEVICE in b for b in rows), vendor
