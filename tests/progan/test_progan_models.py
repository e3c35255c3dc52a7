"""vendor/progan networks: the official Re-GAN layout, equalised LR, fade-in and minibatch-std semantics."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vendor.progan.models import Discriminator, Generator, channels_at, minibatch_std
from upstream_facts import upstream_fact

LAYOUT = upstream_fact("progan_state_dict.json")


def test_layout_matches_the_official_regan_network():
    facts = json.loads(LAYOUT.read_text())["regan-progan-32"]
    for name, net in (("G", Generator(512, 512, 32)), ("D", Discriminator(512, 32))):
        shapes = {k: list(v.shape) for k, v in net.state_dict().items()}
        assert shapes == facts[name]["parameters"]
        assert not dict(net.named_buffers()) and not facts[name]["buffers"]
        assert sum(p.numel() for p in net.parameters()) == facts[name]["num_parameters"]


def test_widths_halve_above_32_like_karras():
    # fmap_base 8192, fmap_max 512: nf(res) = min(8192 / (res / 2) ... ) -> 512 up to 32, then 256, 128, ... 16
    assert [channels_at(r, 512) for r in (4, 8, 16, 32, 64, 128, 256, 512, 1024)] == \
        [512, 512, 512, 512, 256, 128, 64, 32, 16]
    G, D = Generator(8, 8, 128), Discriminator(8, 128)
    assert G.state_dict()["progression_128.conv.0.conv.weight_orig"].shape == (2, 4, 3, 3)
    assert G.state_dict()["to_rgb_64.conv.weight_orig"].shape == (3, 4, 1, 1)
    assert D.state_dict()["progression.0.conv.0.conv.weight_orig"].shape == (4, 2, 3, 3)  # 128 -> 64 block
    assert D.state_dict()["from_rgb.0.conv.weight_orig"].shape == (2, 3, 1, 1)
    for step in range(6):
        x = G(torch.randn(2, 8), 0.5, step)
        assert x.shape == (2, 3, 4 * 2 ** step, 4 * 2 ** step) and D(x, 0.5, step).shape == (2, 1)


def test_equalised_lr_scale_and_init():
    torch.manual_seed(0)
    G = Generator(6, 4, 8)
    conv = G.progression_8.conv[0].conv
    x = torch.randn(2, 4, 8, 8)
    want = F.conv2d(x, conv.weight_orig * math.sqrt(2 / (4 * 9)), conv.bias, padding=1)
    assert torch.allclose(conv(x), want, atol=1e-6)
    assert torch.count_nonzero(conv.bias) == 0
    # transposed input layer: upstream's fan_in is weight.size(1) * 16 = OUTPUT width * 16
    assert G.input_layer[0].conv.scale == pytest.approx(math.sqrt(2 / (4 * 16)))
    w = torch.cat([p.detach().flatten() for n, p in G.named_parameters() if n.endswith("weight_orig")])
    assert abs(float(w.mean())) < 0.1 and abs(float(w.std()) - 1) < 0.1  # N(0, 1)


def test_fade_in_blends_only_for_alpha_in_0_1_and_4x4_has_no_tanh():
    torch.manual_seed(1)
    G, D = Generator(8, 4, 8).eval(), Discriminator(4, 8)
    z = torch.randn(3, 8)
    with torch.no_grad():
        f4 = G.progression_4(G.input_layer(z.view(3, 8, 1, 1)))
        f8 = G.progression_8(F.interpolate(f4, scale_factor=2))
        old, new = F.interpolate(G.to_rgb_4(f4), scale_factor=2), G.to_rgb_8(f8)
        assert torch.allclose(G(z, 0.3, 1), torch.tanh(0.7 * old + 0.3 * new), atol=1e-6)
        assert torch.allclose(G(z, 1.0, 1), torch.tanh(new), atol=1e-6)
        assert torch.allclose(G(z, 1.25, 1), torch.tanh(new), atol=1e-6)   # upstream's last epoch: alpha > 1
        assert torch.allclose(G(z, -1, 1), torch.tanh(new), atol=1e-6)
        assert torch.allclose(G(z, 0.5, 0), G.to_rgb_4(f4))                # no tanh at step 0
        x = torch.randn(3, 3, 8, 8)
        top = F.avg_pool2d(D.progression[0](D.from_rgb[0](x)), 2)
        skip = D.from_rgb[1](F.avg_pool2d(x, 2))
        mixed = 0.25 * skip + 0.75 * top
        assert torch.allclose(D(x, 0.75, 1), D.linear(D.progression[1](minibatch_std(mixed)).flatten(1)), atol=1e-6)


def test_minibatch_std_is_one_scalar_over_the_whole_batch():
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    a = x.numpy()
    want = np.sqrt(a.var(axis=0) + 1e-8).mean()  # numpy var is the biased one
    out = minibatch_std(x)
    assert out.shape == (5, 4, 4, 4) and torch.equal(out[:, :3], x)
    assert np.allclose(out[:, 3].numpy(), want)
