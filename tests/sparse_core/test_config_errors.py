"""Bad arguments raise one clear error that names the argument."""
import pytest
import torch
from torch import nn

import sparse_core as sc
from sc_nets import make


@pytest.mark.parametrize("kwargs, word", [
    (dict(sparsity=1.0), "sparsity"), (dict(sparsity=-0.1), "sparsity"), (dict(sparsity="0.3"), "sparsity"),
    (dict(interval=0), "interval"), (dict(interval=-5), "interval"), (dict(interval=2.5), "interval"),
    (dict(warmup=-1), "warmup"), (dict(target="generator"), "target"), (dict(regrow="ones"), "regrow"),
    (dict(dense_lr_scale=0), "dense_lr_scale"), (dict(scope="biases"), "scope"), (dict(exclude="torgb"), "exclude"),
])
def test_regan_config_errors(kwargs, word):
    with pytest.raises(sc.ConfigError, match=word):
        sc.ReGANConfig(**kwargs)


@pytest.mark.parametrize("kwargs, word", [
    (dict(lam=-1.0), "lam"), (dict(reset_density=1.5), "reset_density"), (dict(target="x"), "target"),
    (dict(scope="all"), "scope"),
])
def test_rggan_config_errors(kwargs, word):
    with pytest.raises(sc.ConfigError, match=word):
        sc.RGGANConfig(**kwargs)


def test_nothing_to_mask():
    with pytest.raises(sc.ConfigError, match="nothing to mask"):
        sc.prepare(sc.ReGANConfig(), G=nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)))
    G, D = make()
    with pytest.raises(sc.ConfigError, match="nothing to mask"):
        sc.prepare(sc.ReGANConfig(include=["no_such_layer"]), G=G, D=D)


def test_target_needs_the_network_and_objects_are_checked():
    G, _ = make()
    with pytest.raises(sc.ConfigError, match="target 'both' needs network D"):
        sc.prepare(sc.ReGANConfig(target="both"), G=G)
    with pytest.raises(sc.ConfigError, match="config must be"):
        sc.prepare({"sparsity": 0.3}, G=G)
    ctrl = sc.prepare(sc.ReGANConfig(), G=G)
    with pytest.raises(sc.ConfigError, match="G_ema has no parameter"):
        ctrl.bind(G_ema=nn.Linear(2, 2))
    with pytest.raises(ValueError, match="real_images"):
        ctrl.advance(-1)
