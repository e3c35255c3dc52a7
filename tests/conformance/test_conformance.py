"""The conformance suite: every method on every network idiom (tests/conformance/conformance_idioms.py).

References are independent of sparse_core's own bookkeeping: the weights the forward's convolutions and
matrix products actually receive (captured at the ATen level), the parameters before and after an optimizer
step, a second network restored from files. Promises checked for regan, rggan, ticket, static, set, rigl, stugan
(and none; adapt needs D and the loop's real batches):
the forward's zeros equal the reported sparsity (as the next forward sees it), pruned entries stay pruned through
Adam with β1 > 0 and weight decay, RG-GAN thresholds get gradient from the loss, export equals the masked forward,
save → load continues bit-exactly, deepcopy / pickle / state_dict / torch.save + torch.load(weights_only=True).
"""
import copy
import io
import pickle

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import sparse_core as sc
import conformance_idioms as I

aten = torch.ops.aten
METHODS = ("regan", "rggan", "ticket", "none", "static", "set", "rigl", "stugan")
# RG-GAN refuses torch.nn.utils.parametrize weights by name (test_rggan_refuses_parametrize_by_name).
CASES = [(i, m) for i in I.IDIOMS for m in METHODS if not (m == "rggan" and i == "parametrize")]
# torch cannot deepcopy or pickle a module holding an old-API weight_norm (its derived weight is a non-leaf
# tensor from construction on); with or without sparse_core: that idiom is checked through state_dict only.
COPYABLE = [c for c in CASES if c[0] != "old_weight_norm"]


class WeightCapture(TorchDispatchMode):
    """The weight operand of every convolution / matrix product a forward runs."""

    def __init__(self):
        super().__init__()
        self.weights = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        packet = getattr(func, "overloadpacket", None)
        if packet is aten.convolution:
            self.weights.append(args[1].detach().clone())
        elif packet is aten.addmm:
            self.weights.append(args[2].detach().clone())
        elif packet is aten.mm:
            self.weights.append(args[1].detach().clone())
        return func(*args, **(kwargs or {}))


def forward_zero_fraction(net, x):
    with torch.no_grad(), WeightCapture() as cap:
        net(x)
    assert cap.weights
    return sum(int((w == 0).sum()) for w in cap.weights) / sum(w.numel() for w in cap.weights)


def config(method, lam=1.0):
    if method == "regan":
        return sc.ReGANConfig(sparsity=0.5, interval=1000, warmup=0, target="G")
    if method == "rggan":
        return sc.RGGANConfig(lam=lam, target="G")
    if method == "ticket":
        return sc.TicketConfig(target="G")
    if method == "static":
        return sc.StaticConfig(target="G", density_g=0.5)
    if method in ("set", "rigl", "stugan"):
        # masks change in the 7th step (due at iteration 6): trained() crosses an update, the 3 + 3 steps of the
        # Adam check do not, save (after 4) -> load -> 3 steps does
        cls = {"set": sc.SETConfig, "rigl": sc.RigLConfig, "stugan": sc.STUGANConfig}[method]
        return cls(target="G", density_g=0.5, update_frequency=6, update_end=100)
    return sc.NoneConfig()


def ticket_masks(net):
    """Half of every masked tensor pruned, at random (a fixed ticket)."""
    probe = sc.prepare(sc.TicketConfig(target="G"), G=net)     # before the real prepare: same sites
    g = torch.Generator().manual_seed(1)
    return {"G": {s.name: (torch.rand(s.param(probe.nets["G"]).shape, generator=g) > 0.5).to(
        s.param(probe.nets["G"]).dtype) for s in probe.sites["G"]}}


def build(idiom, method, seed=0, lam=1.0):
    make, inp = I.IDIOMS[idiom]
    torch.manual_seed(seed)
    kwargs = {"masks": ticket_masks(make())} if method == "ticket" else {}
    torch.manual_seed(seed)
    net = make()
    x = inp()
    ctrl = sc.prepare(config(method, lam), G=net, **kwargs)
    eps = 1e-3 if idiom == "fp16" else 1e-8    # Adam's default eps underflows in float16
    opt = torch.optim.Adam(net.parameters(), lr=2e-2, betas=(0.9, 0.99), eps=eps, weight_decay=0.1)
    ctrl.bind(opt_G=opt)
    return net, x, ctrl, opt


def step(net, x, ctrl, opt):
    out = net(x).float()
    target = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
    loss = (out - target).square().mean() + ctrl.regularizer("G")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    ctrl.optimizer_step("G", opt)
    ctrl.advance(1)


def trained(idiom, method, steps=8, seed=0):
    net, x, ctrl, opt = build(idiom, method, seed)
    for _ in range(steps):
        step(net, x, ctrl, opt)
    return net, x, ctrl, opt


@pytest.mark.parametrize("idiom, method", CASES)
def test_forward_zeros_equal_reported_sparsity(idiom, method):
    net, x, ctrl, opt = trained(idiom, method)
    reported = ctrl.sparsity("G")          # before the forward that is compared: reports are of the next forward
    if method != "none":
        assert reported > 0.05, "the method pruned something"
    assert forward_zero_fraction(net, x) == pytest.approx(reported, abs=1e-6)   # one entry in <= 4096 is 2.4e-4


def _export_zeros(ctrl):
    return {k: (v == 0) for k, v in ctrl.export("G", sparse=True).state_dict().items() if v.is_floating_point()}


@pytest.mark.parametrize("idiom, method", [c for c in CASES if c[1] != "none"])
def test_pruned_entries_stay_pruned_through_adam(idiom, method):
    net, x, ctrl, opt = trained(idiom, method, steps=3)
    net.eval()    # spectral norm: σ without a power iteration, as the exported model computes it
    for _ in range(3):
        pruned = _export_zeros(ctrl)
        before = {k: v.detach().clone() for k, v in net.state_dict().items()}
        step(net, x, ctrl, opt)
        after = net.state_dict()
        n = 0
        masked = {s.name for s in ctrl.sites["G"]}   # the masked tensors (weight_g of weight norm is not)
        for k, z in pruned.items():
            if not z.any() or k not in masked:
                continue
            n += int(z.sum())
            if method == "rggan":   # frozen: the optimizer moves nothing the forward did not use
                assert torch.equal(after[k][z], before[k][z]), k
            else:                   # masks: pruned entries are exactly zero
                assert torch.all(after[k][z] == 0), k
        assert n > 0


@pytest.mark.parametrize("idiom", [i for i in I.IDIOMS if i != "parametrize"])
def test_rggan_thresholds_get_gradient_from_the_loss(idiom):
    net, x, ctrl, opt = build(idiom, "rggan", lam=0.0)
    net(x).float().square().mean().backward()
    ts = [(k, p) for k, p in net.named_parameters() if k.endswith("_threshold")]
    assert ts
    for k, p in ts:
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), f"{k}: no gradient from the loss"


def test_rggan_refuses_parametrize_by_name():
    make, _ = I.IDIOMS["parametrize"]
    with pytest.raises(sc.ConfigError, match=r"layer 'conv'.*exclude"):
        sc.prepare(sc.RGGANConfig(target="G"), G=make())


@pytest.mark.parametrize("idiom, method", CASES)
def test_export_equals_masked_forward(idiom, method):
    net, x, ctrl, opt = trained(idiom, method)
    net.eval()
    exported = ctrl.export("G", sparse=True).eval()
    assert not any(k.endswith(("_mask", "_threshold")) for k in exported.state_dict())
    with torch.no_grad():
        want, got = net(x), exported(x)
    tol = 1e-2 if want.dtype in (torch.float16, torch.bfloat16) else 1e-5
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)


def _roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("idiom, method", CASES)
def test_save_load_continues_bit_exactly(idiom, method):
    net, x, ctrl, opt = trained(idiom, method, steps=4)
    snap = _roundtrip({"net": net.state_dict(), "opt": opt.state_dict(), "sparse": ctrl.state_dict()})
    torch.manual_seed(7)
    for _ in range(3):
        step(net, x, ctrl, opt)
    net2, _, ctrl2, opt2 = build(idiom, method, seed=5)
    net2.load_state_dict(snap["net"])
    opt2.load_state_dict(snap["opt"])
    ctrl2.load_state_dict(snap["sparse"])
    torch.manual_seed(7)
    for _ in range(3):
        step(net2, x, ctrl2, opt2)
    a, b = net.state_dict(), net2.state_dict()
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert ctrl2.sparsity("G") == ctrl.sparsity("G")


@pytest.mark.parametrize("idiom, method", COPYABLE)
def test_deepcopy_pickle_state_dict_and_files(idiom, method):
    net, x, ctrl, opt = build(idiom, method)
    ema = copy.deepcopy(net)                     # the README's G_ema step, right after prepare
    ctrl.bind(G_ema=ema)
    for _ in range(3):
        step(net, x, ctrl, opt)
    ema.load_state_dict(net.state_dict())
    copies = [ema]
    if idiom != "parametrize":                   # torch pickles parametrized modules through state_dict only
        revived = pickle.loads(pickle.dumps(ema))    # snapshot style: the whole module pickled
        revived.load_state_dict(net.state_dict())
        copies.append(revived)
    files = copy.deepcopy(ema)
    files.load_state_dict(_roundtrip(net.state_dict()))
    copies.append(files)
    for m in [net] + copies:
        m.eval()
    with torch.no_grad():
        want = net(x)
        for other in copies:
            assert torch.equal(other(x), want)
