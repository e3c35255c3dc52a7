"""vendor/autogan/train.py on CPU at a reduced width: epochs, D/G step counts, kimg and upstream's linear LR decay
by hand; the averaged G against the 0.999 rule; upstream's checkpoint keys; exact resume; clear errors."""
import os

import pytest
import torch

from vendor.autogan import train
from vendor.autogan.models import Discriminator, Generator, weights_init
from vendor.common.runlog import read_jsonl

# digits at ratio 0.02 = 36 images; -dis_bs 5 gives 8 D steps per epoch (7 x 5 + 1, upstream keeps the short batch)
TINY = ["--data", "digits", "--data-ratio", "0.02", "--gf_dim", "8", "--df_dim", "8", "--latent_dim", "16",
        "-gen_bs", "6", "-dis_bs", "5", "--n_critic", "2", "--print_freq", "1", "--val_freq", "0", "--device", "cpu"]
UPSTREAM_KEYS = {"epoch", "gen_model", "dis_model", "gen_state_dict", "dis_state_dict", "avg_gen_state_dict",
                 "gen_optimizer", "dis_optimizer", "best_fid", "path_helper"}


def run(*argv):
    assert train.main([*TINY, *argv]) == 0


def upstream_lrs(start, max_iter, n_critic, d_steps):
    """LR after each D step, as upstream's LinearLrDecay(start, 0, 0, max_iter * n_critic).step(global_step) at
    every G step (global_step % n_critic == 0) sets it."""
    end, lr, out = max_iter * n_critic, start, []
    for step in range(d_steps):
        if step % n_critic == 0 and 0 < step < end:
            lr = start - start / end * step
        out.append(lr)
    return out


def test_short_run_counts_lr_decay_and_checkpoint(tmp_path):
    logdir = tmp_path / "run"
    run("--max_iter", "6", "--lr_decay", "--g_lr", "1e-3", "--d_lr", "1e-3", "--diffaug", "color,translation",
        "--logdir", str(logdir))
    rows = read_jsonl(str(logdir / "stats.jsonl"))
    assert len(rows) == 16                       # ceil(6 * 2 / 8) = 2 epochs of 8 D steps
    reals = [5] * 7 + [1]
    lrs = upstream_lrs(1e-3, 6, 2, 16)
    for s, row in enumerate(rows, 1):
        assert row["progress/step"] == s and row["progress/epoch"] == (s - 1) // 8
        assert row["progress/gen_step"] == (s + 1) // 2          # G steps at global steps 0, 2, 4, ...
        assert row["progress/kimg"] == pytest.approx(sum((reals * 2)[:s]) / 1000)
        assert row["lr/G"] == pytest.approx(lrs[s - 1], abs=1e-12) and row["lr/D"] == pytest.approx(lrs[s - 1])
        assert {"timing/total_sec", "Loss/G", "Loss/D", "progress/tick"} <= set(row)
    ckpt = torch.load(logdir / "Model" / "checkpoint.pth", weights_only=True)
    assert UPSTREAM_KEYS <= set(ckpt) and ckpt["epoch"] == 2 and ckpt["counters"]["gen_step"] == 8
    G = Generator("autogan_cifar10_a", latent_dim=16, gf_dim=8)
    G.load_state_dict(ckpt["avg_gen_state_dict"])  # what upstream's test.py loads
    assert not [f for f in os.listdir(logdir / "Model") if f.startswith(".")]
    assert (logdir / "samples-2.png").is_file()   # the final averaged G's grid, also with --val_freq 0


def test_averaged_generator_follows_the_rule(tmp_path):
    # one D step and one G step: p_avg = 0.999 * p_init + 0.001 * p_after
    run("--max_iter", "1", "-dis_bs", "36", "--n_critic", "1", "--logdir", str(tmp_path / "one"))
    ckpt = torch.load(tmp_path / "one" / "Model" / "checkpoint.pth", weights_only=True)
    assert ckpt["counters"]["gen_step"] == 1
    torch.manual_seed(12345)  # train.py's construction order: seed, G, D, init G, init D
    G = Generator("autogan_cifar10_a", latent_dim=16, gf_dim=8)
    Discriminator(8)
    weights_init(G)
    for name, p in G.named_parameters():
        after, avg = ckpt["gen_state_dict"][name], ckpt["avg_gen_state_dict"][name]
        assert not torch.equal(after, p.detach()), name
        assert torch.allclose(avg, 0.999 * p.detach() + 0.001 * after, atol=1e-7, rtol=0), name
    for name, b in ckpt["gen_state_dict"].items():   # buffers are not averaged
        if "running" in name:
            assert torch.equal(ckpt["avg_gen_state_dict"][name], b)


def test_resume_is_exact(tmp_path):
    flags = ["--max_iter", "10", "--val_freq", "1", "--num_eval_imgs", "20", "--eval_batch_size", "10"]
    run(*flags, "--logdir", str(tmp_path / "full"))           # 3 epochs; evaluations after epochs 2 and 3
    assert sorted(os.listdir(tmp_path / "full" / "Model")) == ["checkpoint.pth", "checkpoint_2.pth",
                                                               "checkpoint_3.pth", "checkpoint_best.pth"]
    run(*flags, "--load_path", str(tmp_path / "full" / "Model" / "checkpoint_2.pth"),
        "--logdir", str(tmp_path / "half"))
    full, half = read_jsonl(str(tmp_path / "full" / "stats.jsonl")), read_jsonl(str(tmp_path / "half" / "stats.jsonl"))
    assert [r["progress/step"] for r in half] == list(range(17, 25))
    for key in ("Loss/G", "Loss/D", "progress/kimg", "progress/tick"):
        assert [r[key] for r in half] == [r[key] for r in full[16:]], key
    fid_full = read_jsonl(str(tmp_path / "full" / "metric-fid_digits.jsonl"))
    fid_half = read_jsonl(str(tmp_path / "half" / "metric-fid_digits.jsonl"))
    assert fid_half == fid_full[1:]
    a = torch.load(tmp_path / "full" / "Model" / "checkpoint.pth", weights_only=True)
    b = torch.load(tmp_path / "half" / "Model" / "checkpoint.pth", weights_only=True)
    for key in ("gen_state_dict", "avg_gen_state_dict", "dis_state_dict"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key


@pytest.mark.parametrize("flags,message", [
    (["--img_size", "48"], "--img_size 48 must be 8 x --bottom_width"),
    (["--load_path", "/nonexistent/run"], "--load_path: checkpoint file not found"),
    (["--gen_model", "autogan_cifar10_z"], "--gen_model"),
    (["--lr_decay", "--max_iter", "0"], "--max_iter must be >= 1"),
])
def test_bad_flags_exit_2_and_write_nothing(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exc:
        train.main([*TINY, *flags, "--logdir", str(tmp_path / "bad")])
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_resume_refuses_another_architecture(tmp_path, capsys):
    run("--max_iter", "1", "-dis_bs", "36", "--n_critic", "1", "--logdir", str(tmp_path / "a"))
    with pytest.raises(SystemExit) as exc:
        train.main([*TINY, "--gen_model", "autogan_cifar10_b", "--load_path", str(tmp_path / "a"),
                    "--logdir", str(tmp_path / "b")])
    assert exc.value.code == 2 and "autogan_cifar10_a" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
