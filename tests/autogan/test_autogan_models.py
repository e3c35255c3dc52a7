"""vendor/autogan networks: the recorded upstream layouts (A, B, C, STL-10 A), the cells decoded from the recorded
search vectors, upstream's in-place skip addition against an independent float64 reference, the discriminator
against vendor/sngan's (the same network under other names), and upstream's initialisation."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from vendor.autogan.models import ARCHS, Discriminator, Generator, weights_init
from vendor.sngan.models import ResDiscriminator32
from upstream_facts import upstream_fact

UPSTREAM = upstream_fact("autogan_state_dict.json")
# shared/upstream/README.md "AutoGAN": per cell conv (0 post / 1 pre), norm (0 none / 1 bn / 2 in),
# up (0 bilinear / 1 nearest / 2 deconv), shortcut, then (cells 2 and 3) a skip-input bitmask over earlier cells.
SEARCH_VECTORS = {"autogan_cifar10_a": [1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 0, 1, 0, 3],
                  "autogan_cifar10_b": [1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 3],
                  "autogan_cifar10_c": [1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 1, 0, 3]}


@pytest.fixture(scope="module")
def layouts():
    with open(UPSTREAM) as handle:
        return json.load(handle)


def shapes(named):
    return {name: list(t.shape) for name, t in named}


@pytest.mark.parametrize("key,arch,bottom", [("autogan-a-cifar10", "autogan_cifar10_a", 4),
                                              ("autogan-b-cifar10", "autogan_cifar10_b", 4),
                                              ("autogan-c-cifar10", "autogan_cifar10_c", 4),
                                              ("autogan-a-stl10", "autogan_cifar10_a", 6)])
def test_layout_equals_upstream(layouts, key, arch, bottom):
    for which, net in (("G", Generator(arch, bottom_width=bottom)), ("D", Discriminator())):
        ref = layouts[key][which]
        params, buffers = shapes(net.named_parameters()), shapes(net.named_buffers())
        assert list(params.items()) == list(ref["parameters"].items())   # names, order and shapes
        assert list(buffers.items()) == list(ref["buffers"].items())
        assert sum(p.numel() for p in net.parameters()) == ref["num_parameters"]
        net.load_state_dict({k: torch.zeros(v) for k, v in {**ref["parameters"], **ref["buffers"]}.items()})


def decode(vector):
    cells, i = [], 0
    for index in range(3):
        conv, norm, up, short_cut = vector[i:i + 4]
        i += 4
        skips = 0
        if index:
            skips, i = bin(vector[i]).count("1"), i + 1
        assert conv == 1  # all three searched cells are pre-activation
        cells.append(({0: "bilinear", 1: "nearest"}[up], bool(short_cut), skips, {0: None, 1: "bn", 2: "in"}[norm]))
    return cells


@pytest.mark.parametrize("arch", sorted(SEARCH_VECTORS))
def test_cells_match_recorded_search_vectors(arch):
    assert [tuple(spec) for spec in ARCHS[arch]] == decode(SEARCH_VECTORS[arch])


def reference_forward(G, z, skip_includes_received=True):
    """G's forward in float64, written from the recorded description, with plain out-of-place tensor maths."""
    def norm(module, x):
        return F.batch_norm(x, module.running_mean, module.running_var, module.weight, module.bias, False, 0.0,
                            module.eps)

    def conv(module, x):
        return F.conv2d(x, module.weight, module.bias, padding=module.padding)

    h = F.linear(z, G.l1.weight, G.l1.bias).view(len(z), G.ch, G.bottom_width, G.bottom_width)
    skips = []
    for cell, spec in zip((G.cell1, G.cell2, G.cell3), ARCHS[G.arch]):
        x = h
        a = norm(cell.n1, x) if spec.norm else x
        a = conv(cell.c1, F.interpolate(F.relu(a), scale_factor=2, mode=spec.up_mode))
        received = sum((conv(op, F.interpolate(s, size=a.shape[-2:], mode=spec.up_mode))
                        for op, s in zip(cell.skip_in_ops or [], skips)), torch.zeros_like(a))
        b = a + received
        skips.append(b if skip_includes_received else a)
        b = norm(cell.n2, b) if spec.norm else b
        h = conv(cell.c2, F.relu(b))
        if spec.short_cut:
            h = h + conv(cell.c_sc, F.interpolate(x, scale_factor=2, mode=spec.up_mode))
    out = norm(G.to_rgb[0], h)
    return torch.tanh(conv(G.to_rgb[2], F.relu(out)))


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_in_place_skip_addition_as_recorded(arch):
    torch.manual_seed(3)
    G = Generator(arch, latent_dim=16, gf_dim=8).double().eval()
    weights_init(G)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a wrong norm placement shows too
        for m in G.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        z = torch.randn(3, 16, dtype=torch.float64)
        out = G(z)
        assert torch.allclose(out, reference_forward(G, z), atol=1e-12, rtol=0)
        # the check has teeth: had the cell cloned its skip output before adding, cell3 would see other values
        assert (out - reference_forward(G, z, skip_includes_received=False)).abs().max() > 1e-4


def test_discriminator_is_sngans_network_under_upstream_names():
    torch.manual_seed(4)
    ours, sngan = Discriminator(df_dim=16), ResDiscriminator32(ch=16)
    rename = {"block1.c1": "model.0.residual.0", "block1.c2": "model.0.residual.2", "block1.c_sc": "model.0.shortcut.1",
              "block2.c1": "model.1.residual.1", "block2.c2": "model.1.residual.3", "block2.c_sc": "model.1.shortcut.0",
              "block3.c1": "model.2.residual.1", "block3.c2": "model.2.residual.3",
              "block4.c1": "model.3.residual.1", "block4.c2": "model.3.residual.3", "l5": "linear"}
    state = {}
    for key, value in ours.state_dict().items():
        module, leaf = key.rsplit(".", 1)
        state[f"{rename[module]}.{leaf}"] = value.clone()
    sngan.load_state_dict(state, strict=True)
    ours.eval(), sngan.eval()  # spectral norm without a power iteration: same u, v, same sigma
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours(x), sngan(x), atol=1e-5, rtol=1e-5)


def test_initialisation_like_upstream():
    torch.manual_seed(5)
    G, D = Generator("autogan_cifar10_c", latent_dim=16, gf_dim=32), Discriminator(df_dim=32)
    for net in (G, D):
        weights_init(net, "xavier_uniform")
    convs = 0
    for net in (G, D):
        for name, m in net.named_modules():
            if isinstance(m, torch.nn.Conv2d):
                w = m.weight_orig if hasattr(m, "weight_orig") else m.weight
                fan_in, fan_out = w.shape[1] * w[0, 0].numel(), w.shape[0] * w[0, 0].numel()
                bound = math.sqrt(6.0 / (fan_in + fan_out))  # xavier-uniform, gain 1
                assert 0.8 * bound <= w.abs().max() <= bound + 1e-7, name
                assert m.bias.abs().sum() > 0, name  # conv biases keep PyTorch's default (non-zero) init
                convs += 1
    # G: 3 cells x (c1, c2) + 2 shortcuts + 3 skip-ins + to_rgb; D: 3 + 3 + 2 + 2
    assert convs == (6 + 2 + 3 + 1) + 10
    gammas = torch.cat([m.weight.detach() for m in G.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    assert abs(float(gammas.mean()) - 1.0) < 0.01 and 0.01 < float(gammas.std()) < 0.03   # N(1, 0.02)
    assert all(m.bias.abs().sum() == 0 for m in G.modules() if isinstance(m, torch.nn.BatchNorm2d))
    # linears keep PyTorch's default: kaiming-uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert G.l1.weight.abs().max() <= 1 / math.sqrt(16) and D.l5.bias is None


def test_forward_shapes_and_bad_names():
    G, D = Generator("autogan_cifar10_b", latent_dim=8, gf_dim=8), Discriminator(df_dim=8, d_spectral_norm=False)
    images = G(torch.randn(2, 8))
    assert images.shape == (2, 3, 32, 32) and images.abs().max() <= 1
    assert D(images).shape == (2, 1) and not hasattr(D.l5, "weight_orig")
    with pytest.raises(ValueError, match="unknown generator"):
        Generator("autogan_cifar10_x")
