"""generate.py for SNGAN, ProGAN and AutoGAN (issue 21, item 6; one implementation: vendor/common/sampling.py): seeds
-> PNGs from each file layout a run writes (final generator, training snapshot / checkpoint, the sparse exports),
the EMA generator when the file has one, pixels equal to the network's own output for RandomState(seed) latents
(reference: the network called here, converted to uint8 in float64); bad seeds, a file without a generator and
weights of another tree are one usage error (exit 2) and write nothing."""
import numpy as np
import pytest
import torch
from PIL import Image

from vendor.common.sampling import GenerateError, parse_seeds


def test_parse_seeds():
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7] and parse_seeds("5") == [5]
    for bad in ("3-1", "a", "1,,2", str(2 ** 32), "-1"):
        with pytest.raises(GenerateError, match="--seeds"):
            parse_seeds(bad)


def reference_png(net_fn, seed, z_dim):
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, z_dim)).float()
    with torch.no_grad():
        out = net_fn(z)[0].double().numpy()
    pixels = np.clip(np.floor(out * 127.5 + 128.0), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return pixels[:, :, 0] if pixels.shape[2] == 1 else pixels


def _nets():
    from vendor.autogan.models import Generator as AutoGenerator
    from vendor.progan.models import Generator as ProGenerator
    from vendor.sngan.models import ResGenerator32

    torch.manual_seed(0)
    sngan, sngan_ema = ResGenerator32(8, ch=8, img_channels=1).eval(), ResGenerator32(8, ch=8, img_channels=1).eval()
    progan = ProGenerator(8, 8, 8, img_channels=3).eval()
    autogan = AutoGenerator("autogan_cifar10_b", 12, 8, 4, 3).eval()
    return {
        # vendor: (module name, [(file dict, network the PNGs must come from, its forward)], z_dim)
        "sngan": ("vendor.sngan.generate", [
            ({"net_G": sngan.state_dict(), "net_G_ema": sngan_ema.state_dict(), "z_dim": 8, "ch": 8,
              "img_channels": 1}, sngan_ema),                                                    # G_final.pt, EMA
            ({"G": sngan.state_dict(), "kind": "sparse", "method": "regan", "z_dim": 8}, sngan),  # G_sparse.pt
        ], 8),
        "progan": ("vendor.progan.generate", [
            ({"net_G": progan.state_dict(), "G_ema": None, "step": 3}, progan),                  # snapshot, no EMA
            ({"G": progan.state_dict(), "kind": "dense", "method": "rggan"}, progan),            # G_dense.pt
        ], 8),
        "autogan": ("vendor.autogan.generate", [
            ({"gen_model": "autogan_cifar10_b", "gen_state_dict": sngan.state_dict(),
              "avg_gen_state_dict": autogan.state_dict()}, autogan),                             # checkpoint
        ], 12),
    }


@pytest.mark.parametrize("vendor", ["sngan", "progan", "autogan"])
def test_pngs_per_seed_from_every_file_layout(tmp_path, vendor):
    import importlib

    module, files, z_dim = _nets()[vendor]
    generate = importlib.import_module(module)
    for i, (content, net) in enumerate(files):
        path = tmp_path / f"file{i}.pt"
        torch.save(content, path)
        out = tmp_path / f"out{i}"
        assert generate.main(["--network", str(path), "--seeds", "3,0-1", "--outdir", str(out), "--device", "cpu",
                              "--batch", "2"]) == 0
        assert sorted(p.name for p in out.iterdir()) == ["seed0000.png", "seed0001.png", "seed0003.png"]
        forward = (lambda z, net=net: net(z, -1, net.max_step)) if vendor == "progan" else net
        for seed in (0, 1, 3):
            got = np.asarray(Image.open(out / f"seed{seed:04d}.png"))
            assert np.array_equal(got, reference_png(forward, seed, z_dim)), (vendor, i, seed)


def test_refusals_name_the_problem_and_write_nothing(tmp_path, capsys):
    from vendor.progan.models import Generator as ProGenerator
    from vendor.sngan import generate

    cases = [
        ({"G": ProGenerator(8, 8, 8).state_dict()}, "0-1", "'G' is not an SNGAN ResNet generator"),
        ({"stats": torch.zeros(3)}, "0", "no generator in it (looked for net_G_ema, net_G, G"),
        ({"G": {"linear.weight": torch.zeros(128, 8), "output.2.weight": torch.zeros(1, 8, 3, 3)}}, "0",
         "'G' does not fit this tree's generator"),
        ({"G": {}}, "5-2", "--seeds: '5-2' is an empty range"),
    ]
    for content, seeds, message in cases:
        path = tmp_path / "g.pt"
        torch.save(content, path)
        with pytest.raises(SystemExit) as info:
            generate.main(["--network", str(path), "--seeds", seeds, "--outdir", str(tmp_path / "out"),
                           "--device", "cpu"])
        err = capsys.readouterr().err
        assert info.value.code == 2 and message in err and "Traceback" not in err, err
        assert not (tmp_path / "out").exists()
