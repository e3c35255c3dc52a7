"""vendor/fastgan/models.py against upstream's layout (shared/upstream/fastgan_state_dict.json) and behaviour."""
import json

import pytest
import torch

from vendor.fastgan.models import Discriminator, Generator, weights_init
from upstream_facts import upstream_fact

LAYOUT = upstream_fact("fastgan_state_dict.json")


@pytest.mark.parametrize("size", [256, 1024])
def test_state_dict_equals_upstream(size):
    want = json.loads(LAYOUT.read_text())[f"fastgan-{size}"]
    for name, net in (("G", Generator(ngf=64, nz=256, im_size=size)), ("D", Discriminator(ndf=64, im_size=size))):
        params = [(k, list(v.shape)) for k, v in net.named_parameters()]
        buffers = [(k, list(v.shape)) for k, v in net.named_buffers()]
        assert params == list(want[name]["parameters"].items()), name  # keys, order and shapes
        assert buffers == list(want[name]["buffers"].items()), name
        assert sum(p.numel() for _, p in net.named_parameters()) == want[name]["num_parameters"]
        assert not any(k.startswith("module.") for k in net.state_dict())


def test_init_and_shapes_at_512():
    torch.manual_seed(0)
    G, D = Generator(ngf=16, nz=32, im_size=512), Discriminator(ndf=16, im_size=512)
    G.apply(weights_init)
    D.apply(weights_init)
    convs = [m for m in G.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    w = torch.cat([m.weight_orig.flatten() for m in convs])
    assert w.mean().abs() < 1e-3 and abs(w.std().item() - 0.02) < 1e-3   # N(0, 0.02) lands in weight_orig
    bn = [m for m in D.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in bn)
    assert abs(torch.cat([m.weight for m in bn]).mean().item() - 1) < 0.01
    noise = [p for n, p in G.named_parameters() if n.endswith(("2.weight", "6.weight")) and p.numel() == 1]
    assert len(noise) == 8 and all(p.item() == 0 for p in noise)           # 4 UpBlockComp x 2 injections
    big, small = G(torch.randn(2, 32))
    assert big.shape == (2, 3, 512, 512) and small.shape == (2, 3, 128, 128)
    logits, recs = D([big, small], "real", part=3)
    assert logits.shape == (2 * 2 * 25,)                                   # two heads, 5x5 each per image
    assert [tuple(r.shape) for r in recs] == [(2, 3, 128, 128)] * 3
    assert D(big, "fake").shape == (100,)                                  # one batch: resized inside D


def test_tanh_only_at_1024_unless_asked():
    torch.manual_seed(0)
    plain = Generator(ngf=8, nz=16, im_size=256)
    squashed = Generator(ngf=8, nz=16, im_size=256, tanh_all=True)
    squashed.load_state_dict(plain.state_dict())
    z = torch.randn(2, 16)
    raw, bounded = plain(z), squashed(z)   # noise-injection weights are 0: both runs are deterministic
    for r, b in zip(raw, bounded):
        assert torch.allclose(torch.tanh(r), b, atol=1e-6) and not torch.allclose(r, b, atol=1e-3)
    G = Generator(ngf=8, nz=16, im_size=1024)
    assert G(torch.randn(2, 16))[0].abs().max() <= 1


def test_unsupported_size_is_refused():
    with pytest.raises(ValueError, match="256, 512, 1024"):
        Generator(im_size=128)
