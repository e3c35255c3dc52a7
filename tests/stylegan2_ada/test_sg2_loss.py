"""StyleGAN2Loss phases, APA and DiffAugment wiring, and the training loop's small formulas (ADA
step, EMA decay, lazy-regularisation optimizer settings), each against a hand-written float64
reference."""
import math
import os
import sys

import pytest
import torch
import torch.nn.functional as F

SG2_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', 'vendor', 'stylegan2_ada'))
if SG2_ROOT not in sys.path:
    sys.path.insert(0, SG2_ROOT)

from training import training_loop  # noqa: E402
from training.loss import AdaptivePseudoAugment, StyleGAN2Loss  # noqa: E402

torch.set_num_threads(2)
DT = torch.float64
NUM_WS, W_DIM, Z_DIM, RES = 4, 6, 5, 4


class FakeMapping(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(Z_DIM, W_DIM).to(DT)
        self.calls = []

    def forward(self, z, c, skip_w_avg_update=False):
        self.calls.append(skip_w_avg_update)
        return torch.tanh(self.fc(z)).unsqueeze(1).repeat(1, NUM_WS, 1)


class FakeSynthesis(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(NUM_WS * W_DIM, 3 * RES * RES).to(DT)

    def forward(self, ws):
        return torch.tanh(self.fc(ws.flatten(1))).reshape(-1, 3, RES, RES)


class FakeD(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(3 * RES * RES, 7).to(DT)
        self.fc2 = torch.nn.Linear(7, 1).to(DT)

    def forward(self, img, c):
        return self.fc2(F.softplus(self.fc1(img.flatten(1))))


def make(seed=0, **kwargs):
    torch.manual_seed(seed)
    mapping, synthesis, D = FakeMapping(), FakeSynthesis(), FakeD()
    kwargs.setdefault('style_mixing_prob', 0)
    loss = StyleGAN2Loss('cpu', mapping, synthesis, D, **kwargs)
    z = torch.randn(6, Z_DIM, dtype=DT)
    real = torch.rand(6, 3, RES, RES, dtype=DT) * 2 - 1
    c = torch.zeros(6, 0, dtype=DT)
    return loss, mapping, synthesis, D, z, real, c


def grads(module):
    return [None if p.grad is None else p.grad.clone() for p in module.parameters()]


def manual_grads(module, value):
    module.zero_grad()
    value.backward()
    return grads(module)


def assert_grads_close(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        # `logits * 0` terms (kept so every parameter joins the graph) give zeros instead of None.
        x = torch.zeros(1, dtype=DT) if x is None else x
        y = torch.zeros(1, dtype=DT) if y is None else y
        assert torch.allclose(x, y, rtol=1e-9, atol=1e-12)


def test_gmain_is_nonsaturating_logistic():
    loss, mapping, synthesis, D, z, real, c = make()
    loss.accumulate_gradients('Gmain', real, c, z, c, sync=True, gain=3)
    got = grads(synthesis)
    expected = manual_grads(synthesis, 3 * F.softplus(-D(synthesis(mapping(z, c)), c)).mean())
    assert_grads_close(got, expected)


def test_dmain_is_logistic_on_fakes_and_reals():
    loss, mapping, synthesis, D, z, real, c = make()
    loss.accumulate_gradients('Dmain', real, c, z, c, sync=True, gain=1)
    got = grads(D)
    fake = synthesis(mapping(z, c)).detach()
    expected = manual_grads(D, F.softplus(D(fake, c)).mean() + F.softplus(-D(real, c)).mean())
    assert_grads_close(got, expected)


def test_dreg_is_r1_with_gamma_over_two_times_gain():
    gamma, gain = 10.0, 16
    loss, mapping, synthesis, D, z, real, c = make(r1_gamma=gamma)
    loss.accumulate_gradients('Dreg', real, c, z, c, sync=True, gain=gain)
    got = grads(D)
    x = real.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(D(x, c).sum(), x, create_graph=True)
    expected = manual_grads(D, gain * (gamma / 2) * g.square().sum(dim=[1, 2, 3]).mean())
    assert_grads_close(got, expected)


def test_greg_path_length_penalty_and_pl_mean():
    loss, mapping, synthesis, D, z, real, c = make(pl_weight=2, pl_decay=0.01, pl_batch_shrink=2)
    torch.manual_seed(123)
    loss.accumulate_gradients('Greg', real, c, z, c, sync=True, gain=4)
    got = grads(synthesis)
    pl_mean_after = float(loss.pl_mean)

    # float64 reference: |J^T y| over the w's (mean over layers of squared norms), y ~ N(0, 1/(H*W)).
    zs = z[:3]
    ws = mapping(zs, c[:3])
    img = synthesis(ws)
    torch.manual_seed(123)
    noise = torch.randn_like(img) / math.sqrt(RES * RES)
    (jt,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
    lengths = jt.square().sum(2).mean(1).sqrt()
    # pl_mean_new = lerp(pl_mean_old = 0, mean length, 0.01); as upstream it stays in the graph.
    mean_ref = 0.0 + 0.01 * (lengths.mean() - 0.0)
    assert pl_mean_after == pytest.approx(mean_ref.item(), rel=1e-6)
    expected = manual_grads(synthesis, 4 * (2 * (lengths - mean_ref) ** 2).mean())
    assert_grads_close(got, expected)


def test_dboth_and_gboth_combine_main_and_regularisation():
    loss, mapping, synthesis, D, z, real, c = make(r1_gamma=1.0)
    loss.accumulate_gradients('Dboth', real, c, z, c, sync=True, gain=1)
    both = grads(D)
    loss2, _, _, D2, _, _, _ = make(r1_gamma=1.0)
    loss2.accumulate_gradients('Dmain', real, c, z, c, sync=True, gain=1)
    loss2.accumulate_gradients('Dreg', real, c, z, c, sync=True, gain=1)
    assert_grads_close(both, grads(D2))


def test_style_mixing_uses_second_latent_after_cutoff():
    loss, mapping, synthesis, D, z, real, c = make(style_mixing_prob=1.0)
    torch.manual_seed(5)
    _, ws = loss.run_G(z, c)
    assert mapping.calls == [False, True]  # second call must not update w_avg
    first = mapping(z, c)
    mixed_layers = [(ws[:, i] - first[:, i]).abs().max().item() > 1e-12 for i in range(NUM_WS)]
    cutoff = mixed_layers.index(True)
    assert 1 <= cutoff < NUM_WS and all(mixed_layers[cutoff:]) and not any(mixed_layers[:cutoff])


def test_apa_replaces_reals_with_detached_fakes_with_probability_p():
    apa = AdaptivePseudoAugment()
    real = torch.zeros(4000, 1, 2, 2)
    fake = torch.ones(4000, 1, 2, 2, requires_grad=True)
    apa.remember(fake * 1)
    assert torch.equal(apa(real), real)  # p = 0 initially
    apa.p.fill_(1.0)
    out = apa(real)
    assert torch.equal(out, torch.ones_like(real)) and not out.requires_grad
    apa.p.fill_(0.3)
    torch.manual_seed(0)
    out = apa(real)
    per_sample = out.flatten(1)
    assert ((per_sample == 0).all(1) | (per_sample == 1).all(1)).all()
    assert abs(per_sample[:, 0].mean().item() - 0.3) < 0.03
    assert list(apa.state_dict()) == ['p']


def test_apa_r1_is_taken_on_the_mixed_batch():
    apa = AdaptivePseudoAugment().to(DT)
    loss, mapping, synthesis, D, z, real, c = make(r1_gamma=2.0, apa=apa)
    loss.accumulate_gradients('Gmain', real, c, z, c, sync=True, gain=1)  # remembers its fakes
    apa.p.fill_(1.0)
    D.zero_grad()
    loss.accumulate_gradients('Dreg', real, c, z, c, sync=True, gain=1)
    got = grads(D)
    x = synthesis(mapping(z, c)).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(D(x, c).sum(), x, create_graph=True)
    assert_grads_close(got, manual_grads(D, (2.0 / 2) * g.square().sum(dim=[1, 2, 3]).mean()))


def test_diffaugment_applied_before_every_d_call():
    from vendor.common.diffaug import DiffAugment
    loss, mapping, synthesis, D, z, real, c = make(diffaug_policy='color,translation,cutout')
    torch.manual_seed(9)
    got = loss.run_D(real, c)
    torch.manual_seed(9)
    expected = D(DiffAugment(real, policy='color,translation,cutout'), c)
    assert torch.allclose(got, expected)
    assert not torch.allclose(got, D(real, c))


def test_unknown_phase_is_rejected():
    loss, mapping, synthesis, D, z, real, c = make()
    with pytest.raises(ValueError, match='phase'):
        loss.accumulate_gradients('Gfoo', real, c, z, c, sync=True, gain=1)


# -- training-loop formulas -----------------------------------------------------------------------

def test_ada_adjust_on_a_scripted_sign_sequence():
    # batch 64, interval 4, ada_kimg 500: each adjustment moves p by 64*4/500000 = 0.000512.
    step = 0.000512
    signs = [0.9, 0.9, 0.3, 0.6, 0.7, float('nan'), -1.0, -1.0, -1.0, 1.0]
    expected = [step, 2 * step, step, step, 2 * step, 2 * step, step, 0.0, 0.0, step]
    p = 0.0
    for s, e in zip(signs, expected):
        p = training_loop.ada_adjust(p, s, 0.6, 64, 4, 500)
        assert p == pytest.approx(e, abs=1e-15)


def test_ema_beta_half_life_and_rampup():
    assert training_loop.ema_beta(64, 10**6, 10, None) == pytest.approx(0.5 ** (64 / 10000))
    assert training_loop.ema_beta(64, 1000, 10, 0.05) == pytest.approx(0.5 ** (64 / 50))
    assert training_loop.ema_beta(64, 10**7, 10, 0.05) == pytest.approx(0.5 ** (64 / 10000))
    assert training_loop.ema_beta(64, 0, 10, 0.05) == 0.0  # first step: G_ema := G


def test_lazy_regularisation_optimizer_settings():
    out = training_loop.lazy_reg_optimizer_kwargs(dict(lr=0.0025, betas=[0, 0.99], eps=1e-8), 16)
    assert out['lr'] == pytest.approx(0.0025 * 16 / 17)
    assert out['betas'][0] == 0 and out['betas'][1] == pytest.approx(0.99 ** (16 / 17))
    assert out['eps'] == 1e-8
    out = training_loop.lazy_reg_optimizer_kwargs(dict(lr=0.002, betas=[0, 0.99], eps=1e-8), 4)
    assert out['lr'] == pytest.approx(0.002 * 0.8) and out['betas'][1] == pytest.approx(0.99 ** 0.8)
