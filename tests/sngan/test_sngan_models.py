"""SNGAN networks: the exact upstream checkpoint layout, upstream initialisation, forward/backward,
and the hinge loss against hand-computed values."""
import json
import math

import pytest
import torch

from vendor.sngan.losses import hinge_loss_D, hinge_loss_G
from vendor.sngan.models import ResDiscriminator32, ResGenerator32
from upstream_facts import upstream_fact

UPSTREAM = upstream_fact("sngan_state_dict.json")


@pytest.fixture(scope="module")
def upstream_layout():
    with open(UPSTREAM) as handle:
        return json.load(handle)["sngan-res32"]


@pytest.mark.parametrize("which", ["G", "D"])
def test_state_dict_equals_upstream_layout(upstream_layout, which):
    torch.manual_seed(0)
    net = ResGenerator32(z_dim=128) if which == "G" else ResDiscriminator32()
    reference = upstream_layout[which]
    params = {name: list(p.shape) for name, p in net.named_parameters()}
    buffers = {name: list(b.shape) for name, b in net.named_buffers()}
    assert params == reference["parameters"]
    assert buffers == reference["buffers"]
    assert set(net.state_dict()) == set(reference["parameters"]) | set(reference["buffers"])
    assert sum(p.numel() for p in net.parameters()) == reference["num_parameters"]
    assert reference["num_parameters"] == (4276739 if which == "G" else 1053824)


def test_upstream_state_dict_loads_by_name(upstream_layout):
    # a checkpoint built only from the upstream key/shape list loads with strict=True
    fake = {k: torch.zeros(v) for k, v in upstream_layout["D"]["parameters"].items()}
    fake.update({k: torch.ones(v) for k, v in upstream_layout["D"]["buffers"].items()})
    net = ResDiscriminator32()
    net.load_state_dict(fake, strict=True)
    assert net.linear.weight_orig.abs().sum() == 0


def _xavier_bound(weight, gain):
    fan_in = weight.shape[1] * weight[0][0].numel()
    fan_out = weight.shape[0] * weight[0][0].numel()
    return gain * math.sqrt(6.0 / (fan_in + fan_out))


def test_initialisation_like_upstream():
    torch.manual_seed(1)
    G, D = ResGenerator32(z_dim=16, ch=32), ResDiscriminator32(ch=16)
    checked = 0
    for net in (G, D):
        for name, module in net.named_modules():
            if not isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                continue
            weight = module.weight_orig if hasattr(module, "weight_orig") else module.weight
            gain = math.sqrt(2) if ("residual" in name and isinstance(module, torch.nn.Conv2d)) else 1.0
            bound = _xavier_bound(weight, gain)
            # xavier-uniform: all inside the bound, and the extremes close to it
            assert weight.abs().max() <= bound + 1e-7, name
            assert weight.abs().max() >= 0.8 * bound, name
            if module.bias is not None:
                assert module.bias.abs().sum() == 0, name
            checked += 1
    # G: linear, 3 blocks x 3 convs, output conv; D: 3 + 3 + 2 + 2 convs, linear
    assert checked == (1 + 3 * 3 + 1) + (3 + 3 + 2 + 2 + 1)
    assert hasattr(D.linear, "weight_u") and D.linear.bias is None


def test_forward_backward_small_width():
    torch.manual_seed(2)
    G, D = ResGenerator32(z_dim=8, ch=16), ResDiscriminator32(ch=8)
    z = torch.randn(3, 8)
    images = G(z)
    assert images.shape == (3, 3, 32, 32)
    assert images.abs().max() <= 1.0  # tanh output
    logits = D(images)
    assert logits.shape == (3, 1)
    hinge_loss_G(logits).backward()
    for name, p in list(G.named_parameters()) + list(D.named_parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in G.parameters())


def test_greyscale_variant():
    G, D = ResGenerator32(z_dim=4, ch=8, img_channels=1), ResDiscriminator32(ch=4, img_channels=1)
    assert D(G(torch.randn(2, 4))).shape == (2, 1)


def test_hinge_losses_hand_values():
    real = torch.tensor([[2.0], [0.5], [-1.0]])
    fake = torch.tensor([[-2.0], [0.0], [1.5]])
    # D: mean(relu(1 - real)) = (0 + 0.5 + 2) / 3; mean(relu(1 + fake)) = (0 + 1 + 2.5) / 3
    assert hinge_loss_D(real, fake).item() == pytest.approx(2.5 / 3 + 3.5 / 3)
    # G: -mean(fake) = -(-2 + 0 + 1.5) / 3
    assert hinge_loss_G(fake).item() == pytest.approx(0.5 / 3)
    fake.requires_grad_(True)
    hinge_loss_D(real, fake).backward()
    # d/dfake relu(1 + fake)/3 is 1/3 where 1 + fake > 0, else 0
    assert torch.allclose(fake.grad, torch.tensor([[0.0], [1 / 3], [1 / 3]]))
