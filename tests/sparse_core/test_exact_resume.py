"""Resume is exact: N steps straight == N/2, save, rebuild everything, load, N/2 more, bit for bit on the CPU,
across the next phase boundaries (Re-GAN prune / regrow, RG-GAN mode switches)."""
import copy
import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sparse_core as sc
from sc_nets import Z, TinyD


class EqLinear(nn.Module):
    """Equalised learning rate (StyleGAN / ProGAN style): N(0, 1) weights scaled at runtime, no reset_parameters,
    so Re-GAN-RI regrows it from the initializer statistics recorded at prepare()."""

    def __init__(self, fan_in, fan_out):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fan_out, fan_in))
        self.bias = nn.Parameter(torch.zeros(fan_out))
        self.scale = 1 / math.sqrt(fan_in)

    def forward(self, x):
        return F.linear(x, self.weight * self.scale, self.bias)


class EqG(nn.Module):
    def __init__(self, ch=8):
        super().__init__()
        self.fc = EqLinear(Z, ch * 16)
        self.up = nn.ConvTranspose2d(ch, ch, 4, 2, 1)
        self.bn = nn.BatchNorm2d(ch)
        self.conv = nn.Conv2d(ch, 3, 3, 1, 1)
        self.ch = ch

    def forward(self, z):
        x = self.fc(z).view(-1, self.ch, 4, 4)
        return torch.tanh(self.conv(torch.relu(self.bn(self.up(x)))))


def metric_at(it):   # scripted "FID": improves, then worsens (RG-GAN goes dense), then improves again
    return [10, 9, 8, 7, 6, 7, 8, 9, 5, 4, 3, 2, 1, 0.5, 0.4, 0.3][it % 16] + 0.01 * it


class Run:
    def __init__(self, cfg, seed, snap=None):
        torch.manual_seed(seed)
        self.G, self.D = EqG(), TinyD()
        if snap is not None and cfg.method == "regan":
            # StyleGAN2-ADA's order: networks resumed by name BEFORE prepare(), which then sees trained weights,
            # and again after it (for the tensors prepare() added)
            self.G.load_state_dict(snap["G"], strict=False)
            self.D.load_state_dict(snap["D"], strict=False)
        self.ctrl = sc.prepare(cfg, G=self.G, D=self.D)
        if snap is not None:
            # SNGAN's order: prepare() first (thresholds are parameters in the state_dicts), then resume
            self.G.load_state_dict(snap["G"])
            self.D.load_state_dict(snap["D"])
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False)
        if snap is not None:
            self.G_ema.load_state_dict(snap["G_ema"])
        self.opt_G = torch.optim.Adam(self.G.parameters(), 2e-3, betas=(0.5, 0.99), weight_decay=1e-3)
        self.opt_D = torch.optim.Adam(self.D.parameters(), 2e-3, betas=(0.5, 0.99))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt_G, lambda k: 1 - k / 100)
        if snap is not None:   # the controller's state before bind(): the order must not matter
            self.ctrl.load_state_dict(snap["ctrl"])
            self.opt_G.load_state_dict(snap["opt_G"])
        self.ctrl.bind(G_ema=self.G_ema, opt_G=self.opt_G, opt_D=self.opt_D, sched_G=[self.sched])
        if snap is not None:
            self.opt_D.load_state_dict(snap["opt_D"])
            self.sched.load_state_dict(snap["sched"])
            torch.set_rng_state(snap["rng"])

    def step(self):
        G, D, ctrl = self.G, self.D, self.ctrl
        real = torch.rand(4, 3, 8, 8) * 2 - 1
        loss_D = torch.relu(1 - D(real)).mean() + torch.relu(1 + D(G(torch.randn(4, Z)).detach())).mean()
        loss_D = loss_D + ctrl.regularizer("D")
        self.opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        ctrl.optimizer_step("D", self.opt_D)
        loss_G = -D(G(torch.randn(4, Z))).mean() + ctrl.regularizer("G")
        self.opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        ctrl.optimizer_step("G", self.opt_G)
        self.sched.step()
        with torch.no_grad():
            for pe, p in zip(self.G_ema.parameters(), G.parameters()):
                pe.lerp_(p, 0.1)
        ctrl.after_ema()
        ctrl.advance(4)
        if ctrl.iteration % 2 == 0:
            ctrl.feed_metric(metric_at(ctrl.iteration // 2), higher_is_better=False)
        return float(loss_D.detach()), float(loss_G.detach()), ctrl.current_phase()

    def snapshot(self):
        snap = {"G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
                "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(), "sched": self.sched.state_dict(),
                "ctrl": self.ctrl.state_dict(), "rng": torch.get_rng_state()}
        buf = io.BytesIO()
        torch.save(snap, buf)
        return torch.load(io.BytesIO(buf.getvalue()), weights_only=True)

    def observe(self):
        return {"G": {k: v.clone() for k, v in self.G.state_dict().items()},
                "D": {k: v.clone() for k, v in self.D.state_dict().items()},
                "G_ema": {k: v.clone() for k, v in self.G_ema.state_dict().items()},
                "lr": [g["lr"] for o in (self.opt_G, self.opt_D) for g in o.param_groups],
                "stats": self.ctrl.stats()}


CASES = {
    "regan-zero": (sc.ReGANConfig(sparsity=0.4, interval=3, warmup=2, regrow="zero", scope="all"), 7, 14),
    "regan-random": (sc.ReGANConfig(sparsity=0.4, interval=3, warmup=2, regrow="random", target="both"), 7, 14),
    "rggan-sparse": (sc.RGGANConfig(lam=1e-2), 6, 14),
    "rggan-dense": (sc.RGGANConfig(lam=1e-2), 12, 22),
}


@pytest.mark.parametrize("case", list(CASES))
def test_n_steps_equal_half_save_rebuild_load_half(case):
    cfg, half, n = CASES[case]
    a = Run(cfg, seed=0)
    straight = [a.step() for _ in range(n)]
    want = a.observe()

    b = Run(cfg, seed=0)
    first = [b.step() for _ in range(half)]
    saved_phase = b.ctrl.current_phase()
    snap = b.snapshot()
    c = Run(cfg, seed=99, snap=snap)       # other initial values: nothing may come from the construction
    rest = [c.step() for _ in range(n - half)]
    got = c.observe()

    phases = [p for _, _, p in straight]
    if case.startswith("rggan"):
        assert saved_phase == case.split("-")[1]
        assert {"sparse", "dense"} <= set(phases[half:]) or len(set(phases)) > 1
    else:
        assert len(set(phases[half:])) == 2      # the resumed half crosses prune and regrow boundaries
    assert first + rest == straight
    for net in ("G", "D", "G_ema"):
        assert set(got[net]) == set(want[net])
        for k in want[net]:
            assert torch.equal(got[net][k], want[net][k]), (net, k)
    assert got["lr"] == want["lr"]
    assert got["stats"] == want["stats"]
