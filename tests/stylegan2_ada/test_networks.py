"""StyleGAN2 networks of the StyleGAN2-ADA tree.

Layouts are compared with the upstream facts in shared/upstream (tests/upstream_facts.py finds them); the arithmetic of each layer is compared with float64 formulas
written out here from the upstream facts (equalized-LR gains, demodulation eps, noise, gains,
the w indices each block consumes, minibatch-std grouping, label projection)."""
import copy
import json
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

SG2_ROOT = os.path.join(os.path.dirname(__file__), '..', '..', 'vendor', 'stylegan2_ada')
if os.path.abspath(SG2_ROOT) not in sys.path:
    sys.path.insert(0, os.path.abspath(SG2_ROOT))

from torch_utils import misc  # noqa: E402
from upstream_facts import upstream_fact  # noqa: E402
from torch_utils.ops import conv2d_resample, upfirdn2d  # noqa: E402
from training import networks  # noqa: E402

torch.set_num_threads(2)
SQRT2 = np.sqrt(2)


def _find_upstream_json():
    return str(upstream_fact('stylegan2_ada_state_dict.json'))


# How each upstream config is built (shared/upstream/README.md): channel_base = fmaps * 32768,
# channel_max 512, num_fp16_res 4, conv_clamp 256, z = w = 512, c_dim 0, RGB.
UPSTREAM_CONFIGS = {
    'cifar-32': dict(res=32, fmaps=1, map=2, d_arch='orig', mbstd=32),
    'auto-64': dict(res=64, fmaps=0.5, map=2, d_arch='resnet', mbstd=4),
    'auto-256': dict(res=256, fmaps=0.5, map=2, d_arch='resnet', mbstd=4),
}


def build_upstream_config(cfg):
    common = dict(channel_base=int(cfg['fmaps'] * 32768), channel_max=512, num_fp16_res=4, conv_clamp=256)
    G = networks.Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=cfg['res'], img_channels=3,
                           mapping_kwargs=dict(num_layers=cfg['map']), synthesis_kwargs=dict(common))
    D = networks.Discriminator(c_dim=0, img_resolution=cfg['res'], img_channels=3, architecture=cfg['d_arch'],
                               block_kwargs={}, mapping_kwargs={},
                               epilogue_kwargs=dict(mbstd_group_size=cfg['mbstd']), **common)
    return G, D


@pytest.mark.parametrize('config', sorted(UPSTREAM_CONFIGS))
def test_state_dict_layout_matches_upstream(config):
    with open(_find_upstream_json()) as f:
        upstream = json.load(f)[config]
    G, D = build_upstream_config(UPSTREAM_CONFIGS[config])
    for net_name, net in (('G', G), ('D', D)):
        ref = upstream[net_name]
        params = [(k, list(v.shape)) for k, v in net.named_parameters()]
        buffers = [(k, list(v.shape)) for k, v in net.named_buffers()]
        assert params == [(k, list(v)) for k, v in ref['parameters'].items()], f'{config} {net_name} parameters'
        assert buffers == [(k, list(v)) for k, v in ref['buffers'].items()], f'{config} {net_name} buffers'
        assert sum(p.numel() for p in net.parameters()) == ref['num_parameters']


# ----------------------------------------------------------------------------
# Small float64 networks for the arithmetic checks.

def small_G(res=16, arch='skip', c_dim=0, **synthesis_kwargs):
    torch.manual_seed(0)
    kwargs = dict(channel_base=128, channel_max=16, architecture=arch)
    kwargs.update(synthesis_kwargs)
    G = networks.Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=res, img_channels=3,
                           mapping_kwargs=dict(num_layers=2), synthesis_kwargs=kwargs).double()
    # Non-zero noise strengths and w_avg so that noise and truncation have visible effects.
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith('noise_strength'):
                p.fill_(0.3)
        G.mapping.w_avg.copy_(torch.randn(8, dtype=torch.float64))
    return G


def small_D(res=16, arch='resnet', c_dim=0, mbstd_group_size=2, **kwargs):
    torch.manual_seed(1)
    sizes = dict(channel_base=128, channel_max=16)
    sizes.update(kwargs)
    return networks.Discriminator(c_dim=c_dim, img_resolution=res, img_channels=3, architecture=arch,
                                  epilogue_kwargs=dict(mbstd_group_size=mbstd_group_size), **sizes).double()


def ref_fc(layer, x, act):
    w = layer.weight.detach() * (layer.weight_gain)
    y = x @ w.T
    if layer.bias is not None:
        y = y + layer.bias.detach() * layer.bias_gain
    if act == 'lrelu':
        y = F.leaky_relu(y, 0.2) * SQRT2
    return y


def test_fully_connected_equalized_lr():
    torch.manual_seed(2)
    layer = networks.FullyConnectedLayer(6, 5, activation='lrelu', lr_multiplier=0.01, bias_init=0.5).double()
    # Stored weights are N(0,1)/lr; the runtime scale is lr/sqrt(fan_in); the bias is scaled by lr.
    assert np.isclose(layer.weight_gain, 0.01 / np.sqrt(6)) and layer.bias_gain == 0.01
    assert torch.all(layer.bias == 0.5)
    x = torch.randn(4, 6, dtype=torch.float64)
    w_eff = layer.weight.detach() * 0.01 / np.sqrt(6)
    want = F.leaky_relu(x @ w_eff.T + 0.005, 0.2) * SQRT2
    torch.testing.assert_close(layer(x), want, rtol=1e-12, atol=1e-12)
    linear = networks.FullyConnectedLayer(6, 5).double()
    torch.testing.assert_close(linear(x), x @ (linear.weight.detach() / np.sqrt(6)).T, rtol=1e-12, atol=1e-12)


def test_conv2d_layer_down_gain_clamp():
    torch.manual_seed(3)
    layer = networks.Conv2dLayer(4, 5, kernel_size=3, activation='lrelu', down=2, conv_clamp=0.7).double()
    with torch.no_grad():
        layer.bias.copy_(torch.randn(5))
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    f = upfirdn2d.setup_filter([1, 3, 3, 1]).double()
    # Downsampling = filter [1,3,3,1] (normalised), then a stride-2 correlation with w / sqrt(fan_in).
    xf = upfirdn2d.upfirdn2d(x, f, padding=2)
    y = F.conv2d(xf, layer.weight.detach() / np.sqrt(4 * 9), stride=2) + layer.bias.detach().reshape(1, -1, 1, 1)
    gain = np.sqrt(0.5)
    want = (F.leaky_relu(y, 0.2) * SQRT2 * gain).clamp(-0.7 * gain, 0.7 * gain)
    torch.testing.assert_close(layer(x, gain=gain), want, rtol=1e-12, atol=1e-12)


def ref_synthesis_layer(layer, x, w, noise_const=True, gain=1.0):
    """Per-sample float64 reference: modulate, demodulate (eps 1e-8), resampled conv, noise, bias, lrelu."""
    styles = w @ (layer.affine.weight.detach() / np.sqrt(w.shape[1])).T + layer.affine.bias.detach()
    f = layer.resample_filter
    outs = []
    for i in range(x.shape[0]):
        wi = layer.weight.detach() * styles[i].reshape(1, -1, 1, 1)
        wi = wi / torch.sqrt((wi ** 2).sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
        # Upstream runs the upsampling conv with flip_weight=False (a true convolution).
        outs.append(conv2d_resample._conv2d_resample_reference(x[i:i + 1], wi, f=f, up=layer.up, padding=1,
                                                               flip_weight=(layer.up == 1)))
    y = torch.cat(outs)
    if noise_const:
        y = y + layer.noise_const * layer.noise_strength.detach()
    y = y + layer.bias.detach().reshape(1, -1, 1, 1)
    y = F.leaky_relu(y, 0.2) * SQRT2 * gain
    if layer.conv_clamp is not None:
        y = y.clamp(-layer.conv_clamp * gain, layer.conv_clamp * gain)
    return y


@pytest.mark.parametrize('up', [1, 2])
@pytest.mark.parametrize('fused', [True, False])
def test_synthesis_layer_matches_formula(up, fused):
    torch.manual_seed(4)
    layer = networks.SynthesisLayer(4, 5, w_dim=6, resolution=8, up=up, conv_clamp=1.5).double()
    with torch.no_grad():
        layer.noise_strength.fill_(0.4)
        layer.bias.copy_(torch.randn(5))
    assert torch.all(layer.affine.bias == 1)  # styles start around 1
    x = torch.randn(3, 4, 8 // up, 8 // up, dtype=torch.float64)
    w = torch.randn(3, 6, dtype=torch.float64)
    got = layer(x, w, noise_mode='const', fused_modconv=fused, gain=np.sqrt(0.5))
    want = ref_synthesis_layer(layer, x, w, gain=np.sqrt(0.5))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_torgb_layer_matches_formula():
    torch.manual_seed(5)
    layer = networks.ToRGBLayer(6, 3, w_dim=4, conv_clamp=0.8).double()
    with torch.no_grad():
        layer.bias.copy_(torch.randn(3))
    x = torch.randn(2, 6, 5, 5, dtype=torch.float64)
    w = torch.randn(2, 4, dtype=torch.float64)
    styles = (w @ (layer.affine.weight.detach() / 2).T + layer.affine.bias.detach()) / np.sqrt(6)
    y = torch.einsum('oc,nc,nchw->nohw', layer.weight.detach()[:, :, 0, 0], styles, x)  # no demodulation
    want = (y + layer.bias.detach().reshape(1, -1, 1, 1)).clamp(-0.8, 0.8)
    for fused in (True, False):
        torch.testing.assert_close(layer(x, w, fused_modconv=fused), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('demodulate', [True, False])
def test_modulated_conv2d_fused_equals_training_path(demodulate):
    torch.manual_seed(6)
    x = torch.randn(3, 4, 8, 8, dtype=torch.float64)
    weight = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    styles = torch.randn(3, 4, dtype=torch.float64)
    noise = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    f = upfirdn2d.setup_filter([1, 3, 3, 1]).double()
    kwargs = dict(noise=noise, down=2, padding=1, resample_filter=f, demodulate=demodulate)
    a = networks.modulated_conv2d(x, weight, styles, fused_modconv=True, **kwargs)
    b = networks.modulated_conv2d(x, weight, styles, fused_modconv=False, **kwargs)
    torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)


def test_mapping_network_formula_and_w_avg_update():
    torch.manual_seed(7)
    mapping = networks.MappingNetwork(z_dim=6, c_dim=0, w_dim=5, num_ws=3, num_layers=2).double()
    z = torch.randn(4, 6, dtype=torch.float64)
    x = z / torch.sqrt((z ** 2).mean(dim=1, keepdim=True) + 1e-8)
    for layer in (mapping.fc0, mapping.fc1):
        assert np.isclose(layer.weight_gain, 0.01 / np.sqrt(layer.in_features))  # lr multiplier 0.01
        x = ref_fc(layer, x, 'lrelu')
    old_avg = torch.randn(5, dtype=torch.float64)
    mapping.w_avg.copy_(old_avg)

    mapping.train()
    ws = mapping(z, None)
    assert ws.shape == (4, 3, 5)
    torch.testing.assert_close(ws, x.unsqueeze(1).repeat(1, 3, 1), rtol=1e-12, atol=1e-12)
    # w_avg <- mean(w) + beta * (w_avg - mean(w)), beta 0.995.
    torch.testing.assert_close(mapping.w_avg, x.mean(0) + 0.995 * (old_avg - x.mean(0)), rtol=1e-12, atol=1e-12)

    frozen = mapping.w_avg.clone()
    mapping(z, None, skip_w_avg_update=True)
    mapping(z, None, update_emas=False)
    mapping.eval()
    mapping(z, None)
    torch.testing.assert_close(mapping.w_avg, frozen, rtol=0, atol=0)
    mapping(z, None, update_emas=True)  # explicit request updates even in eval mode
    assert not torch.equal(mapping.w_avg, frozen)


def test_truncation_and_cutoff():
    G = small_G().eval()
    z = torch.randn(3, 8, dtype=torch.float64)
    w_avg = G.mapping.w_avg
    ws = G.mapping(z, None)
    ws_half = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(ws_half[:, :2], w_avg + 0.5 * (ws[:, :2] - w_avg), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ws_half[:, 2:], ws[:, 2:], rtol=0, atol=0)
    # psi = 0: every sample becomes the w_avg image.
    img = G(z, None, truncation_psi=0, noise_mode='const')
    ref = G.synthesis(w_avg.reshape(1, 1, -1).repeat(1, G.num_ws, 1), noise_mode='const')
    torch.testing.assert_close(img, ref.expand_as(img), rtol=1e-10, atol=1e-10)


def test_noise_modes():
    G = small_G().eval()
    z = torch.randn(2, 8, dtype=torch.float64)
    const_a = G(z, None, noise_mode='const')
    const_b = G(z, None, noise_mode='const')
    torch.testing.assert_close(const_a, const_b, rtol=0, atol=0)
    none_a = G(z, None, noise_mode='none')
    torch.testing.assert_close(none_a, G(z, None, noise_mode='none'), rtol=0, atol=0)
    assert not torch.allclose(const_a, none_a)
    rand_a = G(z, None, noise_mode='random')
    rand_b = G(z, None, noise_mode='random')
    assert not torch.allclose(rand_a, rand_b)
    with pytest.raises(ValueError, match='noise_mode'):
        G(z, None, noise_mode='fixed')


def test_style_mixing_path_like_the_loss():
    G = small_G().train()
    z1, z2 = torch.randn(2, 4, 8, dtype=torch.float64)
    ws = G.mapping(z1, None)
    avg_after_first = G.mapping.w_avg.clone()
    cutoff = 2
    ws[:, cutoff:] = G.mapping(z2, None, skip_w_avg_update=True)[:, cutoff:]
    torch.testing.assert_close(G.mapping.w_avg, avg_after_first, rtol=0, atol=0)
    img = G.synthesis(ws, noise_mode='const')
    assert img.shape == (4, 3, 16, 16) and img.dtype == torch.float64
    # Only the layers after the cutoff see z2: changing z2 changes the image.
    ws2 = ws.clone()
    ws2[:, cutoff:] = G.mapping(torch.randn_like(z2), None, skip_w_avg_update=True)[:, cutoff:]
    assert not torch.allclose(img, G.synthesis(ws2, noise_mode='const'))


@pytest.mark.parametrize('arch', ['orig', 'skip', 'resnet'])
def test_generator_fused_equals_nonfused(arch):
    G = small_G(arch=arch).eval()
    ws = torch.randn(2, G.num_ws, 8, dtype=torch.float64)
    a = G.synthesis(ws, noise_mode='const', fused_modconv=True)
    b = G.synthesis(ws, noise_mode='const', fused_modconv=False)
    assert a.shape == (2, 3, 16, 16)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_skip_generator_w_indices_and_image_accumulation():
    G = small_G(res=8, arch='skip').eval()
    assert G.num_ws == 4  # b4: conv1 + torgb, b8: conv0, conv1, torgb; ToRGB shares the next conv's w
    ws = torch.randn(2, 4, 8, dtype=torch.float64)
    b4, b8 = G.synthesis.b4, G.synthesis.b8
    kw = dict(fused_modconv=False)
    x = b4.const.unsqueeze(0).repeat(2, 1, 1, 1)
    x = b4.conv1(x, ws[:, 0], noise_mode='const', **kw)
    img = b4.torgb(x, ws[:, 1], **kw)
    x = b8.conv0(x, ws[:, 1], noise_mode='const', **kw)
    x = b8.conv1(x, ws[:, 2], noise_mode='const', **kw)
    img = upfirdn2d.upsample2d(img, b8.resample_filter) + b8.torgb(x, ws[:, 3], **kw)
    torch.testing.assert_close(G.synthesis(ws, noise_mode='const'), img, rtol=1e-10, atol=1e-10)


def test_resnet_generator_block_gains():
    G = small_G(res=8, arch='resnet').eval()
    assert G.num_ws == 4 and not hasattr(G.synthesis.b4, 'torgb') and hasattr(G.synthesis.b8, 'skip')
    block = G.synthesis.b8
    x = torch.randn(2, block.in_channels, 4, 4, dtype=torch.float64)
    ws = torch.randn(2, 3, 8, dtype=torch.float64)
    # Both branches get gain sqrt(0.5); lrelu * gain is positively homogeneous, so this is exact.
    main = block.conv1(block.conv0(x, ws[:, 0], noise_mode='none'), ws[:, 1], noise_mode='none')
    want = np.sqrt(0.5) * (block.skip(x) + main)
    got_x, got_img = block(x, None, ws, noise_mode='none')
    torch.testing.assert_close(got_x, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got_img, block.torgb(got_x, ws[:, 2]), rtol=1e-12, atol=1e-12)


def test_orig_generator_has_single_torgb():
    G = small_G(res=16, arch='orig')
    torgbs = [name for name, _ in G.named_modules() if name.endswith('torgb')]
    assert torgbs == ['synthesis.b16.torgb'] and G.num_ws == 1 + 2 + 2 + 1


def test_fp16_blocks_run_in_fp32_on_cpu():
    G = small_G(res=16, num_fp16_res=4).float()
    assert all(getattr(G.synthesis, f'b{r}').use_fp16 for r in (8, 16)) and not G.synthesis.b4.use_fp16
    img = G(torch.randn(2, 8), None)
    assert img.dtype == torch.float32 and torch.isfinite(img).all()
    D = small_D(num_fp16_res=4).float()
    assert D(img, None).dtype == torch.float32


def test_modulated_conv2d_fp16_prenormalisation():
    # With fp16 inputs the weights and styles are rescaled before modulation (exact under
    # demodulation), so large magnitudes neither overflow nor change the result.
    torch.manual_seed(9)
    x = torch.randn(2, 8, 8, 8)
    weight = torch.randn(6, 8, 3, 3) * 100
    styles = torch.randn(2, 8) * 50
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    for fused in (True, False):
        ref = networks.modulated_conv2d(x.double(), weight.double(), styles.double(), up=2, padding=1,
                                        resample_filter=f.double(), flip_weight=False, fused_modconv=fused)
        half = networks.modulated_conv2d(x.half(), weight, styles, up=2, padding=1, resample_filter=f,
                                         flip_weight=False, fused_modconv=fused)
        assert half.dtype == torch.float16 and torch.isfinite(half).all()
        torch.testing.assert_close(half.double(), ref, rtol=0, atol=2e-2)


def test_fp16_blocks_dataflow(monkeypatch):
    # Run the fp16 code path (normally CUDA only) on the CPU and compare with force_fp32.
    def cpu_fp16(use_fp16, force_fp32, device, param_dtype):
        return torch.float16 if use_fp16 and not force_fp32 else networks._full_precision(param_dtype)
    monkeypatch.setattr(networks, '_block_dtype', cpu_fp16)
    G = small_G(res=16, num_fp16_res=2, conv_clamp=256).float().eval()
    D = small_D(res=16, num_fp16_res=2, conv_clamp=256).float()
    z = torch.randn(2, 8)
    dtypes = []
    G.synthesis.b16.conv1.register_forward_hook(lambda mod, inp, out: dtypes.append(out.dtype))
    with torch.no_grad():
        img16 = G(z, None, noise_mode='const')
        img32 = G(z, None, noise_mode='const', force_fp32=True)
        logits16, logits32 = D(img32, None), D(img32, None, force_fp32=True)
    assert dtypes == [torch.float16, torch.float32]
    assert img16.dtype == torch.float32 and img16.shape == (2, 3, 16, 16)
    assert not torch.equal(img16, img32)
    torch.testing.assert_close(img16, img32, rtol=0, atol=5e-2 * float(img32.abs().max()))
    assert logits16.dtype == torch.float32
    torch.testing.assert_close(logits16, logits32, rtol=0, atol=5e-2 * float(logits32.abs().max()))


def test_minibatch_std_grouping():
    torch.manual_seed(8)
    layer = networks.MinibatchStdLayer(group_size=2, num_channels=2)
    x = torch.randn(6, 4, 3, 3, dtype=torch.float64)
    y = layer(x)
    assert y.shape == (6, 6, 3, 3)
    torch.testing.assert_close(y[:, :4], x, rtol=0, atol=0)
    n = 6 // 2
    for i in range(6):
        members = [j for j in range(6) if j % n == i % n]  # groups are strided over the batch
        for ch in range(2):
            part = x[members][:, ch * 2:(ch + 1) * 2]
            std = torch.sqrt(part.var(dim=0, unbiased=False) + 1e-8).mean()
            torch.testing.assert_close(y[i, 4 + ch], std.expand(3, 3), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match='divisible'):
        networks.MinibatchStdLayer(group_size=4)(torch.randn(6, 2, 2, 2))


@pytest.mark.parametrize('arch', ['orig', 'skip', 'resnet'])
def test_discriminator_shapes_and_layout(arch):
    D = small_D(arch=arch)
    img = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    logits = D(img, None)
    assert logits.shape == (4, 1) and logits.dtype == torch.float64
    fromrgb = sorted(name for name, _ in D.named_modules() if name.endswith('fromrgb'))
    expected = {'orig': ['b16.fromrgb'], 'resnet': ['b16.fromrgb'],
                'skip': ['b16.fromrgb', 'b4.fromrgb', 'b8.fromrgb']}[arch]
    assert fromrgb == expected
    assert hasattr(D.b8, 'skip') == (arch == 'resnet')


def test_discriminator_resnet_block_formula():
    D = small_D(arch='resnet')
    block = D.b8
    x = torch.randn(2, block.in_channels, 8, 8, dtype=torch.float64)
    got, _ = block(x, None)
    want = np.sqrt(0.5) * (block.skip(x) + block.conv1(block.conv0(x)))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_conditional_generator_and_discriminator():
    G = small_G(c_dim=3)
    assert G.mapping.embed.weight.shape == (8, 3) and G.mapping.fc0.weight.shape == (8, 16)
    D = small_D(c_dim=3)
    assert D.mapping.embed.weight.shape == (D.b4.cmap_dim, 3) and D.b4.out.weight.shape[0] == D.b4.cmap_dim
    z = torch.randn(4, 8, dtype=torch.float64)
    c = torch.eye(3, dtype=torch.float64)[[0, 1, 2, 0]]
    img = G(z, c, noise_mode='const')
    assert not torch.allclose(img[0], G(z, c[[1, 1, 2, 0]], noise_mode='const')[0])

    # Projection: logits = sum(out(x) * cmap) / sqrt(cmap_dim).
    captured = {}
    D.b4.out.register_forward_hook(lambda mod, inp, out: captured.__setitem__('out', out))
    logits = D(img, c)
    cmap = D.mapping(None, c)
    want = (captured['out'] * cmap).sum(dim=1, keepdim=True) / np.sqrt(D.b4.cmap_dim)
    assert logits.shape == (4, 1)
    torch.testing.assert_close(logits, want, rtol=1e-12, atol=1e-12)


def test_second_order_gradients_through_D_and_G():
    # R1 (grad of D wrt the image) and path length (grad of G wrt ws) both need double backward.
    D = small_D(res=8, channel_max=4, mbstd_group_size=2)
    img = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda i: D(i, None), (img,), fast_mode=True)

    G = small_G(res=8, channel_max=4).eval()
    ws = torch.randn(1, G.num_ws, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda w: G.synthesis(w, noise_mode='const', fused_modconv=False),
                                        (ws,), fast_mode=True)


def test_copy_to_g_ema_reproduces_outputs():
    G = small_G().eval()
    G_ema = small_G().eval()
    with torch.no_grad():
        for p in G_ema.parameters():
            p.add_(1.0)
    misc.copy_params_and_buffers(G, G_ema, require_all=True)
    z = torch.randn(2, 8, dtype=torch.float64)
    torch.testing.assert_close(G_ema(z, None, noise_mode='const'), G(z, None, noise_mode='const'), rtol=0, atol=0)
    clone = copy.deepcopy(G)
    torch.testing.assert_close(clone(z, None, noise_mode='const'), G(z, None, noise_mode='const'), rtol=0, atol=0)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match='architecture'):
        small_G(arch='dense')
    with pytest.raises(ValueError, match='img_resolution'):
        networks.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=48, img_channels=3)
    with pytest.raises(ValueError, match='img_resolution'):
        networks.Discriminator(c_dim=0, img_resolution=20, img_channels=3)
