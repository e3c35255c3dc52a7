"""SNGAN as upstream (the PyTorch GAN collection) has it: the data pipeline (reals in [-1, 1] plus
dequantisation noise U[0, 1/128), i.e. upstream's `Normalize(0.5, 0.5)` then `x + rand_like(x) / 128`, and no
flips), absl's flag syntaxes (repeated `--betas`, `--flagfile`), `--loss`, and the optional G EMA."""
import os

import pytest
import torch

from vendor.common.runlog import read_jsonl
from vendor.sngan import train
from vendor.sngan.losses import LOSSES
from vendor.sngan.models import ResGenerator32

TINY = ["--data", "digits", "--data-ratio", "0.1", "--ch", "8", "--z_dim", "16", "--batch_size", "4",
        "--G_batch_size", "6", "--n_dis", "1", "--eval_step", "0", "--sample_step", "0", "--tick_steps", "1"]


def _asymmetric_images(n=6):
    """uint8 [n, 3, 4, 4]: left half 0, right half 255 (a flip would swap them), each image its own level."""
    images = torch.zeros(n, 3, 4, 4, dtype=torch.uint8)
    images[:, :, :, 2:] = 255
    images[:, :, 0, 0] = (torch.arange(n, dtype=torch.uint8) * 10)[:, None]  # identifies the image
    return images


def test_reals_get_dequantisation_noise_in_0_to_1_over_128_and_no_flips():
    images = _asymmetric_images()
    batches = train.InfiniteBatches(images, batch_size=6, seed=0)
    seen = []
    for _ in range(20):
        batch = batches.next("cpu").double()
        # identify each image by its marker pixel, then subtract upstream's [-1, 1] scaling in float64
        ids = torch.round((batch[:, 0, 0, 0] + 1) * 127.5 / 10).long().clamp(0, 5)
        clean = images[ids].double() / 127.5 - 1.0
        seen.append(batch - clean)
    noise = torch.cat(seen)
    # every value is its clean value plus U[0, 1/128) (a flipped image would differ by ~2 on both halves)
    assert noise.min() >= 0.0 and noise.max() < 1 / 128
    assert noise.mean().item() == pytest.approx(1 / 256, rel=0.05)  # U[0, 1/128) has mean 1/256


def test_hflip_flag_flips_about_half():
    images = _asymmetric_images()
    batches = train.InfiniteBatches(images, batch_size=6, seed=0, hflip=True)
    flipped = torch.cat([batches.next("cpu")[:, 1, 1, 0] > 0 for _ in range(50)])  # left half bright = flipped
    assert 0.35 < flipped.double().mean().item() < 0.65
    args = train.build_argparser().parse_args([])
    assert args.hflip is False  # off by default, as upstream


def test_betas_upstream_repeated_and_plain_syntax(tmp_path):
    parser = train.build_argparser()
    assert train.parse_args(parser, ["--betas=0.5", "--betas=0.99"]).betas == [0.5, 0.99]
    assert train.parse_args(parser, ["--betas", "0.5", "0.99"]).betas == [0.5, 0.99]
    assert train.parse_args(parser, []).betas == [0.0, 0.9]
    with pytest.raises(SystemExit):
        train.check_args(train.parse_args(parser, ["--betas=0.5"]), parser)


def test_flagfile_in_upstream_format(tmp_path, capsys):
    inner = tmp_path / "inner.txt"
    inner.write_text("--n_dis=2\n")
    flagfile = tmp_path / "SNGAN_DIGITS.txt"
    flagfile.write_text(f"# upstream writes one flag per line\n--arch=res32\n--batch_size=16\n--betas=0.0\n"
                        f"--betas=0.99\n--loss=bce\n--record\n--nogenerate\n// nested\n--flagfile={inner}\n")
    args = train.parse_args(train.build_argparser(), ["--flagfile", str(flagfile), "--lr_G", "1e-3"])
    assert (args.batch_size, args.betas, args.loss, args.n_dis, args.lr_G, args.record, args.generate) == \
        (16, [0.0, 0.99], "bce", 2, 1e-3, True, False)
    with pytest.raises(SystemExit) as info:
        train.main(["--flagfile", str(tmp_path / "missing.txt"), "--logdir", str(tmp_path / "never")])
    assert info.value.code == 2 and "--flagfile" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_losses_match_their_formulas_in_float64():
    real = torch.tensor([1.5, -0.3, 0.2, 2.0], dtype=torch.float64)
    fake = torch.tensor([-1.2, 0.4, 0.9, -0.1], dtype=torch.float64)
    sig = torch.sigmoid
    want = {
        "hinge": ((1 - real).clamp(min=0).mean() + (1 + fake).clamp(min=0).mean(), -fake.mean()),
        "bce": (-(torch.log(sig(real))).mean() - torch.log(1 - sig(fake)).mean(), -torch.log(sig(fake)).mean()),
        "softplus": (torch.log1p(torch.exp(-real)).mean() + torch.log1p(torch.exp(fake)).mean(),
                     torch.log1p(torch.exp(-fake)).mean()),
        "was": (fake.mean() - real.mean(), -fake.mean()),
    }
    assert set(LOSSES) == set(want)
    for name, (loss_D, loss_G) in LOSSES.items():
        assert loss_D(real, fake).item() == pytest.approx(want[name][0].item(), rel=1e-12), name
        assert loss_G(fake).item() == pytest.approx(want[name][1].item(), rel=1e-12), name


def _recording_metric(monkeypatch, seen):
    import vendor.common.metrics as metrics

    def fake_compute_metric(name, G_sample, dataset, **kwargs):
        torch.manual_seed(7)
        seen.append(G_sample(3))
        return {name: 1.0}

    monkeypatch.setattr(metrics, "compute_metric", fake_compute_metric)


def _G_output(state, mode_eval=True):
    G = ResGenerator32(z_dim=16, ch=8)
    G.load_state_dict(state)
    G.train(not mode_eval)
    torch.manual_seed(7)
    with torch.no_grad():
        return G(torch.randn(3, 16))


@pytest.mark.parametrize("ema", [False, True])
def test_ema_is_what_metrics_see_and_follows_its_formula(tmp_path, monkeypatch, ema):
    seen = []
    _recording_metric(monkeypatch, seen)
    logdir = str(tmp_path / "run")
    flags = ["--ema_decay", "0.5"] if ema else []
    assert train.main(TINY[:-6] + ["--sample_step", "0", "--tick_steps", "1", "--total_steps", "2",
                                   "--snapshot_steps", "1", "--eval_step", "2", "--num_images", "3",
                                   "--logdir", logdir, *flags]) == 0
    s1 = torch.load(os.path.join(logdir, "snapshot-1.pt"), weights_only=True)
    s2 = torch.load(os.path.join(logdir, "snapshot-2.pt"), weights_only=True)
    if not ema:
        assert "net_G_ema" not in s2
        assert torch.equal(seen[-1], _G_output(s2["net_G"]))
        return
    # ema_2 = d * ema_1 + (1 - d) * G_2 for parameters, d = min(0.5, (1 + 2) / (10 + 2)) = 0.25 (warm-up);
    # buffers copied from G
    assert train.ema_decay_at(0.5, 2) == 0.25 and train.ema_decay_at(0.999, 10 ** 6) == 0.999
    param_names = {n for n, _ in ResGenerator32(z_dim=16, ch=8).named_parameters()}
    for key, value in s2["net_G_ema"].items():
        want = 0.25 * s1["net_G_ema"][key].double() + 0.75 * s2["net_G"][key].double() if key in param_names \
            else s2["net_G"][key].double()
        assert torch.allclose(value.double(), want, atol=1e-6), key
    assert torch.equal(seen[-1], _G_output(s2["net_G_ema"]))  # metrics see G_ema ...
    assert not torch.allclose(seen[-1], _G_output(s2["net_G"]))  # ... not the raw G
    final = torch.load(os.path.join(logdir, "G_final.pt"), weights_only=True)
    assert torch.equal(final["net_G_ema"]["linear.weight"], s2["net_G_ema"]["linear.weight"])
    assert len(read_jsonl(os.path.join(logdir, "metric-fid_digits.jsonl"))) == 1
