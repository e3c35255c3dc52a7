"""No silent dense layers: for every layer type the vendors use, the reported sparsity equals the fraction
of zeros in the weight each layer's forward actually reads (captured by a forward pre-hook that runs after
every norm / sparse_core hook), per masked tensor and per network."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations as P
from torch.nn.utils import parametrize, spectral_norm, weight_norm

import sparse_core as sc
from sparse_core.methods import rggan

ROOT = Path(__file__).resolve().parents[2]


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def sngan_nets():
    m = _load("sc_fw_sngan_models", ROOT / "vendor" / "sngan" / "models.py")
    G, D = m.ResGenerator32(16, ch=8, img_channels=3), m.ResDiscriminator32(ch=8, img_channels=3)
    return G, D, (lambda: G(torch.randn(2, 16))), (lambda: D(torch.randn(2, 3, 32, 32)))


def sg2_nets():
    sys.path.insert(0, str(ROOT / "vendor" / "stylegan2_ada"))
    from training import networks
    G = networks.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3,
                           mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=128, channel_max=16))
    D = networks.Discriminator(c_dim=0, img_resolution=8, img_channels=3, channel_base=128, channel_max=16,
                               epilogue_kwargs=dict(mbstd_group_size=2))
    c = torch.zeros(2, 0)
    return G, D, (lambda: G(torch.randn(2, 8), c)), (lambda: D(torch.randn(2, 3, 8, 8), c))


class FastGANStyle(nn.Module):
    """FastGAN's blocks: spectral-norm (old API) transposed conv / conv, BatchNorm, GLU."""

    def __init__(self):
        super().__init__()
        self.init = nn.Sequential(spectral_norm(nn.ConvTranspose2d(8, 16, 4, 1, 0, bias=False)), nn.BatchNorm2d(16),
                                  nn.GLU(dim=1))
        self.up = nn.Sequential(nn.Upsample(scale_factor=2), spectral_norm(nn.Conv2d(8, 8, 3, 1, 1, bias=False)),
                                nn.BatchNorm2d(8), nn.GLU(dim=1))
        self.out = spectral_norm(nn.Conv2d(4, 3, 1))

    def forward(self, z):
        return torch.tanh(self.out(self.up(self.init(z.view(-1, 8, 1, 1)))))


class NormZoo(nn.Module):
    """parametrizations.spectral_norm / weight_norm (current API) and old-API weight_norm."""

    def __init__(self):
        super().__init__()
        self.a = P.spectral_norm(nn.Conv2d(3, 8, 3, 1, 1))
        self.b = P.weight_norm(nn.Conv2d(8, 8, 3, 1, 1))
        self.c = weight_norm(nn.Conv2d(8, 8, 3, 1, 1))
        self.d = nn.Linear(8 * 16, 1)

    def forward(self, x):
        x = torch.relu(self.c(torch.relu(self.b(torch.relu(self.a(x))))))
        return self.d(x.flatten(1))


def fastgan_nets():
    G, D = FastGANStyle(), NormZoo()
    return G, D, (lambda: G(torch.randn(2, 8))), (lambda: D(torch.randn(2, 3, 4, 4)))


NETS = {"sngan": sngan_nets, "stylegan2_ada": sg2_nets, "fastgan_and_parametrized": fastgan_nets}
CFGS = {
    "regan-weights": sc.ReGANConfig(sparsity=0.3, interval=10, warmup=0, target="both"),
    "regan-all": sc.ReGANConfig(sparsity=0.3, interval=10, warmup=0, target="both", scope="all"),
    "rggan": sc.RGGANConfig(),
}


def _reader(site, module):
    if site.kind in ("sn", "wn"):
        return lambda: module.__dict__["weight"]
    if site.kind == "param":
        tname = site.module_name.rsplit(".", 1)[1]
        return lambda: getattr(module, tname)
    return lambda: module._parameters[site.attr]


@pytest.mark.parametrize("cfg_name", list(CFGS))
@pytest.mark.parametrize("nets", list(NETS))
def test_reported_sparsity_is_the_forward_weights_zero_fraction(nets, cfg_name):
    torch.manual_seed(0)
    G, D, run_G, run_D = NETS[nets]()
    with torch.no_grad():   # no exact zeros before masking (zero-initialised biases would blur the count)
        for net in (G, D):
            for p in net.parameters():
                p.add_(torch.rand_like(p) * 0.01 + 0.001)
    G.eval(), D.eval()
    cfg = CFGS[cfg_name]
    if cfg_name == "rggan" and nets == "fastgan_and_parametrized":
        with pytest.raises(sc.ConfigError, match="layer 'a'"):
            sc.prepare(cfg, G=G, D=D)
        cfg = sc.RGGANConfig(exclude=["^a\\.", "^b\\."])
    ctrl = sc.prepare(cfg, G=G, D=D)
    runs = {"G": run_G, "D": run_D}
    if cfg.method == "rggan":
        with torch.no_grad():
            run_G(), run_D()      # derived (normalised) weights exist after one forward
            for n in ("G", "D"):
                for s in ctrl.sites[n]:
                    m = s.module(ctrl.nets[n])
                    w = rggan.effective_weight(m, s.attr, s.derived)
                    m._parameters[s.threshold_attr].fill_(float(torch.quantile(w.abs().flatten().float(), 0.3)))
    kinds = set()
    for n in ("G", "D"):
        net = ctrl.nets[n]
        seen, hooks = {}, []
        for s in ctrl.sites[n]:
            layer = net.get_submodule(s.layer) if s.layer else net
            read = _reader(s, layer)
            hooks.append(layer.register_forward_pre_hook(
                lambda mod, args, s=s, read=read: seen.__setitem__(s.name, read().detach().clone())))
            kinds.add(s.kind)
        with torch.no_grad():
            runs[n]()
        for h in hooks:
            h.remove()
        assert set(seen) == {s.name for s in ctrl.sites[n]}, "every masked tensor is read by a forward"
        dens = ctrl.layer_density(n)
        zeros = total = 0
        for s in ctrl.sites[n]:
            w = seen[s.name]
            z = int((w == 0).sum())
            assert 1 - dens[s.name] == pytest.approx(z / w.numel(), abs=1e-6), (n, s.name, s.kind)
            zeros, total = zeros + z, total + w.numel()
        assert ctrl.sparsity(n) == pytest.approx(zeros / total, abs=1e-6)
        assert ctrl.sparsity(n) > 0.1
    if nets == "fastgan_and_parametrized":
        assert kinds >= ({"sn", "wn", "param"} if cfg.method == "regan" else {"sn", "wn"})


class Doubling(nn.Module):
    def forward(self, w):
        return w * 2 + 1          # not zero-preserving: masking the original would not mask the forward


def test_unknown_parametrization_is_refused_naming_the_layer():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3))
    parametrize.register_parametrization(net[1], "weight", Doubling())
    with pytest.raises(sc.ConfigError, match=r"layer '1'.*Doubling"):
        sc.prepare(sc.ReGANConfig(), G=net)
    sc.prepare(sc.ReGANConfig(exclude=["^1\\."]), G=net)       # excluded: fine
