"""StyleGAN2 generator and discriminator (the configuration used by StyleGAN2-ADA).

State-dict keys, shapes, defaults and the arithmetic follow the upstream NVlabs networks, so an
upstream checkpoint converted by key name produces the same images. Facts we rely on:
  - equalized learning rate: weights are stored as N(0, 1) / lr_multiplier and scaled at run time
    by lr_multiplier / sqrt(fan_in); biases by lr_multiplier; mapping lr_multiplier 0.01;
  - mapping: z (and the embedded label) normalised by their 2nd moment (eps 1e-8), lrelu layers,
    w_avg tracked with beta 0.995, truncation w_avg.lerp(w, psi) on the first `cutoff` ws;
  - synthesis: const 4x4 input; modulated 3x3 convs with styles = affine(w) (bias init 1),
    demodulation rsqrt(sum(w^2) + 1e-8); noise = N(0,1) [or noise_const] * noise_strength added
    after demodulation and before bias; lrelu gain sqrt(2) (times an extra gain sqrt(0.5) in resnet
    blocks), clamp conv_clamp * gain; upsampling convs run with flip_weight=False (true
    convolution) through a transposed conv + FIR [1,3,3,1] filter; ToRGB is a 1x1 modulated conv
    without demodulation whose styles are scaled by 1/sqrt(in_channels), then bias and clamp;
    'skip' accumulates upsampled ToRGB outputs;
  - discriminator: FromRGB 1x1 conv, blocks conv3x3 + conv3x3 with FIR downsampling, 'resnet'
    skip 1x1 (no bias) downsampled, both branches scaled by sqrt(0.5); epilogue with minibatch
    stddev (groups formed by striding over the batch), conv, fc, out; labels projected with a
    mapping network (cmap) and combined as sum(out * cmap) / sqrt(cmap_dim);
  - fp16 on the highest `num_fp16_res` resolutions (never below 8x8); we use fp16 only on CUDA.

Deliberate differences that do not change results: in-place adds are out-of-place; a network
converted with .double() runs in float64 where upstream would cast to float32 (float32 networks
behave exactly as upstream). Both modulated-conv paths compute the demodulation coefficients from the
materialised per-sample weights, exactly as upstream: regrouping that sum (styles^2 @ sum_k weight^2)
saves memory but changes float32 rounding enough (~2e-5 on 256x256 images) to break parity.
"""
import numpy as np
import torch

from torch_utils import misc
from torch_utils.ops import bias_act, conv2d_resample, fma, upfirdn2d


def _full_precision(param_dtype):
    """Upstream's 'fp32'. A network converted with .double() keeps float64 (used by the float64
    tests); float32/float16 parameters give float32, exactly as upstream."""
    return torch.promote_types(param_dtype, torch.float32)


def _block_dtype(use_fp16, force_fp32, device, param_dtype):
    # fp16 kernels are a CUDA speed optimisation; on the CPU they are slow or missing, so fp32.
    if use_fp16 and not force_fp32 and device.type == 'cuda':
        return torch.float16
    return _full_precision(param_dtype)


def normalize_2nd_moment(x, dim=1, eps=1e-8):
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def modulated_conv2d(
    x,                          # Activations [batch, in_channels, H, W].
    weight,                     # One kernel for the whole batch [out_channels, in_channels, kh, kw].
    styles,                     # Style: per-sample scale of each input channel [batch, in_channels].
    noise=None,                 # Added to the result when given (must broadcast to it).
    up=1,                       # Integer factor for upsampling.
    down=1,                     # Integer factor for downsampling.
    padding=0,
    resample_filter=None,       # FIR filter from upfirdn2d.setup_filter() for the resampling.
    demodulate=True,            # Normalise each output channel's effective weight to unit norm.
    flip_weight=True,           # False = true convolution (upstream uses it for up=2 layers).
    fused_modconv=True,         # True: one grouped conv with per-sample weights; False: the training path.
):
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    misc.assert_shape(weight, [out_channels, in_channels, kh, kw])
    misc.assert_shape(x, [None, in_channels, None, None])
    misc.assert_shape(styles, [batch_size, in_channels])

    # fp16 would overflow on the un-normalised products; demodulation makes this rescale exact.
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (1 / np.sqrt(in_channels * kh * kw) / weight.norm(float('inf'), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float('inf'), dim=1, keepdim=True)

    # Per-sample modulated weights [N, O, I, kh, kw] and demodulation coefficients [N, O]:
    # dcoefs = rsqrt(sum_{i,k} (weight[o,i,k] * styles[n,i])^2 + 1e-8).
    # The non-fused path needs the per-sample weights only for dcoefs, but builds them anyway: the
    # same reduction as upstream keeps converted checkpoints bit-for-bit equal in float32.
    w = None
    dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
    if demodulate and fused_modconv:
        w = w * dcoefs.reshape(batch_size, -1, 1, 1, 1)

    if not fused_modconv:
        # Training path: modulate the activations, convolve with the shared weight, demodulate the
        # output. Same result as the fused path; shares one weight across the batch.
        x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
        x = conv2d_resample.conv2d_resample(x=x, w=weight.to(x.dtype), f=resample_filter, up=up, down=down,
                                            padding=padding, flip_weight=flip_weight)
        if demodulate and noise is not None:
            x = fma.fma(x, dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1), noise.to(x.dtype))
        elif demodulate:
            x = x * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
        elif noise is not None:
            x = x + noise.to(x.dtype)
        return x

    # Fused path: fold the batch into channel groups and run one grouped convolution.
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = conv2d_resample.conv2d_resample(x=x, w=w.to(x.dtype), f=resample_filter, up=up, down=down,
                                        padding=padding, groups=batch_size, flip_weight=flip_weight)
    x = x.reshape(batch_size, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


class FullyConnectedLayer(torch.nn.Module):
    def __init__(self,
        in_features,                # Width of the input.
        out_features,               # Width of the output.
        bias=True,                  # Learn a bias, added just before the nonlinearity.
        activation='linear',        # Nonlinearity name as known to bias_act ('linear', 'lrelu', ...).
        lr_multiplier=1,            # Equalized-LR scale: effective lr = lr * this.
        bias_init=0,                # Starting value of the bias.
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = torch.nn.Parameter(torch.full([out_features], np.float32(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == 'linear' and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        x = x.matmul(w.t())
        return bias_act.bias_act(x, b, act=self.activation)

    def extra_repr(self):
        return f'in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}'


class Conv2dLayer(torch.nn.Module):
    def __init__(self,
        in_channels,                    # Channels coming in.
        out_channels,                   # Channels going out.
        kernel_size,                    # Square kernel side.
        bias=True,                      # Learn a bias, added just before the nonlinearity.
        activation='linear',            # Nonlinearity name as known to bias_act ('linear', 'lrelu', ...).
        up=1,                           # Upsample the input by this integer first.
        down=1,                         # Downsample the result by this integer.
        resample_filter=[1, 3, 3, 1],   # 1-D taps of the anti-aliasing FIR used around resampling.
        conv_clamp=None,                # Limit outputs to [-X, X] (fp16 safety); None = unbounded.
        channels_last=False,            # Store the weight channels-last.
        trainable=True,                 # False turns weight and bias into buffers (Freeze-D).
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size ** 2))
        self.act_gain = bias_act.activation_funcs[activation].def_gain

        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        bias = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = torch.nn.Parameter(weight)
            self.bias = torch.nn.Parameter(bias) if bias is not None else None
        else:
            self.register_buffer('weight', weight)
            if bias is not None:
                self.register_buffer('bias', bias)
            else:
                self.bias = None

    def forward(self, x, gain=1):
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        flip_weight = (self.up == 1)  # upstream's choice; matters for converted checkpoints
        x = conv2d_resample.conv2d_resample(x=x, w=w.to(x.dtype), f=self.resample_filter, up=self.up,
                                            down=self.down, padding=self.padding, flip_weight=flip_weight)
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act.bias_act(x, b, act=self.activation, gain=act_gain, clamp=act_clamp)

    def extra_repr(self):
        return (f'in_channels={self.in_channels}, out_channels={self.out_channels}, activation={self.activation}, '
                f'up={self.up}, down={self.down}')


class MappingNetwork(torch.nn.Module):
    def __init__(self,
        z_dim,                      # Size of z; 0 when only the label drives the mapping.
        c_dim,                      # Size of the label vector c; 0 = unconditional.
        w_dim,                      # Size of w.
        num_ws,                     # Copies of w to emit, one per synthesis input; None = a single w.
        num_layers=8,               # Depth of the MLP.
        embed_features=None,        # Width of the embedded label; None = w_dim.
        layer_features=None,        # Hidden width of the MLP; None = w_dim.
        activation='lrelu',         # Nonlinearity name as known to bias_act ('linear', 'lrelu', ...).
        lr_multiplier=0.01,         # The mapping MLP learns 100x slower by default.
        w_avg_beta=0.995,           # EMA decay of w_avg (used by truncation); None = no w_avg.
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta

        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features_list = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]

        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features_list[idx], features_list[idx + 1], activation=activation,
                                        lr_multiplier=lr_multiplier)
            setattr(self, f'fc{idx}', layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer('w_avg', torch.zeros([w_dim]))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, skip_w_avg_update=False, update_emas=None):
        """Map z (and label c) to ws [N, num_ws, w_dim] (or [N, w_dim] when num_ws is None).

        w_avg is updated as in StyleGAN2-ADA (in training mode unless skip_w_avg_update); passing
        update_emas (StyleGAN3-style keyword) overrides that decision explicitly."""
        x = None
        if self.z_dim > 0:
            misc.assert_shape(z, [None, self.z_dim])
            x = normalize_2nd_moment(z.to(_full_precision(z.dtype)))
        if self.c_dim > 0:
            misc.assert_shape(c, [None, self.c_dim])
            y = normalize_2nd_moment(self.embed(c.to(_full_precision(self.embed.weight.dtype))))
            x = torch.cat([x, y], dim=1) if x is not None else y

        for idx in range(self.num_layers):
            x = getattr(self, f'fc{idx}')(x)

        update = (self.training and not skip_w_avg_update) if update_emas is None else bool(update_emas)
        if self.w_avg_beta is not None and update:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])

        if truncation_psi != 1:
            if self.w_avg_beta is None:
                raise ValueError('truncation needs w_avg, but this mapping network has w_avg_beta=None')
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                # Out-of-place so autograd sees a fresh tensor (x may be needed by a caller's graph).
                head = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
                x = torch.cat([head, x[:, truncation_cutoff:]], dim=1)
        return x

    def extra_repr(self):
        return f'z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}'


class SynthesisLayer(torch.nn.Module):
    def __init__(self,
        in_channels,                    # Channels coming in.
        out_channels,                   # Channels going out.
        w_dim,                          # Size of w.
        resolution,                     # Output side length of this layer.
        kernel_size=3,                  # Square kernel side.
        up=1,                           # Upsample the input by this integer first.
        use_noise=True,                 # Add per-pixel noise with a learned strength.
        activation='lrelu',             # Nonlinearity name as known to bias_act ('linear', 'lrelu', ...).
        resample_filter=[1, 3, 3, 1],   # 1-D taps of the anti-aliasing FIR used around resampling.
        conv_clamp=None,                # Limit conv outputs to [-X, X] (fp16 safety); None = unbounded.
        channels_last=False,            # Store the weight channels-last.
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = bias_act.activation_funcs[activation].def_gain

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format))
        if use_noise:
            self.register_buffer('noise_const', torch.randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, w, noise_mode='random', fused_modconv=True, gain=1):
        if noise_mode not in ('random', 'const', 'none'):
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        in_resolution = self.resolution // self.up
        misc.assert_shape(x, [None, self.weight.shape[1], in_resolution, in_resolution])
        styles = self.affine(w)

        noise = None
        if self.use_noise and noise_mode == 'random':
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device) * self.noise_strength
        if self.use_noise and noise_mode == 'const':
            noise = self.noise_const * self.noise_strength

        flip_weight = (self.up == 1)  # upstream's choice; matters for converted checkpoints
        x = modulated_conv2d(x=x, weight=self.weight, styles=styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, flip_weight=flip_weight,
                             fused_modconv=fused_modconv)

        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act.bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=act_gain, clamp=act_clamp)

    def extra_repr(self):
        return (f'in_channels={self.in_channels}, out_channels={self.out_channels}, w_dim={self.w_dim}, '
                f'resolution={self.resolution}, up={self.up}, activation={self.activation}')


class ToRGBLayer(torch.nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, kernel_size=1, conv_clamp=None, channels_last=False):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        # No demodulation here, so the equalized-LR gain goes into the styles instead.
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size ** 2))

    def forward(self, x, w, fused_modconv=True):
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x=x, weight=self.weight, styles=styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)

    def extra_repr(self):
        return f'in_channels={self.in_channels}, out_channels={self.out_channels}, w_dim={self.w_dim}'


class SynthesisBlock(torch.nn.Module):
    def __init__(self,
        in_channels,                    # Channels coming in; 0 marks the first block.
        out_channels,                   # Channels going out.
        w_dim,                          # Size of w.
        resolution,                     # Side length this block works at.
        img_channels,                   # Image channels produced (1 or 3).
        is_last,                        # True for the highest-resolution block.
        architecture='skip',            # 'orig', 'skip' or 'resnet' wiring between blocks.
        resample_filter=[1, 3, 3, 1],   # 1-D taps of the anti-aliasing FIR used around resampling.
        conv_clamp=None,                # Limit conv outputs to [-X, X] (fp16 safety); None = unbounded.
        use_fp16=False,                 # Run this block in half precision (CUDA only).
        fp16_channels_last=False,       # Channels-last layout while in fp16.
        **layer_kwargs,                 # Passed on to both SynthesisLayers.
    ):
        if architecture not in ('orig', 'skip', 'resnet'):
            raise ValueError(f"architecture must be 'orig', 'skip' or 'resnet', got {architecture!r}")
        super().__init__()
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = (use_fp16 and fp16_channels_last)
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0

        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        if in_channels != 0:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim=w_dim, resolution=resolution, up=2,
                                        resample_filter=resample_filter, conv_clamp=conv_clamp,
                                        channels_last=self.channels_last, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim=w_dim, resolution=resolution,
                                    conv_clamp=conv_clamp, channels_last=self.channels_last, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == 'skip':
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp,
                                    channels_last=self.channels_last)
            self.num_torgb += 1
        if in_channels != 0 and architecture == 'resnet':
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter, channels_last=self.channels_last)

    def forward(self, x, img, ws, force_fp32=False, fused_modconv=None, **layer_kwargs):
        misc.assert_shape(ws, [None, self.num_conv + self.num_torgb, self.w_dim])
        w_iter = iter(ws.unbind(dim=1))
        dtype = _block_dtype(self.use_fp16, force_fp32, ws.device, self.conv1.weight.dtype)
        img_dtype = _full_precision(self.conv1.weight.dtype)
        memory_format = torch.channels_last if self.channels_last and dtype == torch.float16 else torch.contiguous_format
        if fused_modconv is None:
            # Grouped conv is fastest at inference; training uses the shared-weight path.
            with misc.suppress_tracer_warnings():
                fused_modconv = (not self.training) and (dtype == torch.float32 or int(ws.shape[0]) == 1)

        if self.in_channels == 0:
            x = self.const.to(dtype=dtype, memory_format=memory_format)
            x = x.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        else:
            misc.assert_shape(x, [None, self.in_channels, self.resolution // 2, self.resolution // 2])
            x = x.to(dtype=dtype, memory_format=memory_format)

        if self.in_channels == 0:
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
        elif self.architecture == 'resnet':
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, gain=np.sqrt(0.5), **layer_kwargs)
            x = y + x
        else:
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)

        if img is not None:
            misc.assert_shape(img, [None, self.img_channels, self.resolution // 2, self.resolution // 2])
            img = upfirdn2d.upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == 'skip':
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=img_dtype, memory_format=torch.contiguous_format)
            img = img + y if img is not None else y

        assert x.dtype == dtype
        assert img is None or img.dtype == img_dtype
        return x, img

    def extra_repr(self):
        return f'resolution={self.resolution}, architecture={self.architecture}'


class SynthesisNetwork(torch.nn.Module):
    def __init__(self,
        w_dim,                      # Size of w.
        img_resolution,             # Side length of the generated images.
        img_channels,               # Image channels (1 or 3).
        channel_base=32768,         # Channels at resolution r are channel_base // r, capped below.
        channel_max=512,            # Upper bound on any layer's channels.
        num_fp16_res=0,             # How many of the largest resolutions run in fp16 (CUDA only).
        **block_kwargs,             # Passed on to every SynthesisBlock.
    ):
        if not (isinstance(img_resolution, int) and img_resolution >= 4 and img_resolution & (img_resolution - 1) == 0):
            raise ValueError(f'img_resolution must be a power of two >= 4, got {img_resolution!r}')
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(2, self.img_resolution_log2 + 1)]
        channels_dict = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels_dict[res // 2] if res > 4 else 0
            out_channels = channels_dict[res]
            use_fp16 = (res >= fp16_resolution)
            is_last = (res == self.img_resolution)
            block = SynthesisBlock(in_channels, out_channels, w_dim=w_dim, resolution=res,
                                   img_channels=img_channels, is_last=is_last, use_fp16=use_fp16, **block_kwargs)
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f'b{res}', block)

    def forward(self, ws, **block_kwargs):
        """ws [N, num_ws, w_dim] -> images [N, img_channels, R, R] (float32). block_kwargs:
        noise_mode ('random' | 'const' | 'none'), force_fp32, fused_modconv (None = auto)."""
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(_full_precision(ws.dtype))
        # Each block takes its convs' ws plus the next w for its ToRGB (shared with the next block's first conv).
        block_ws = []
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f'b{res}')
            block_ws.append(ws.narrow(1, w_idx, block.num_conv + block.num_torgb))
            w_idx += block.num_conv

        x = img = None
        for res, cur_ws in zip(self.block_resolutions, block_ws):
            block = getattr(self, f'b{res}')
            x, img = block(x, img, cur_ws, **block_kwargs)
        return img

    def extra_repr(self):
        return f'w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}'


class Generator(torch.nn.Module):
    def __init__(self,
        z_dim,                      # Size of z.
        c_dim,                      # Size of the label vector c (0 = unconditional).
        w_dim,                      # Size of w.
        img_resolution,             # Side length of the generated images.
        img_channels,               # Image channels produced (1 or 3).
        mapping_kwargs={},          # Passed on to the MappingNetwork.
        synthesis_kwargs={},        # Passed on to the SynthesisNetwork.
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        # Construction order (synthesis, then mapping) fixes the state_dict key order upstream uses.
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, skip_w_avg_update=False, update_emas=None,
                **synthesis_kwargs):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          skip_w_avg_update=skip_w_avg_update, update_emas=update_emas)
        return self.synthesis(ws, **synthesis_kwargs)


class DiscriminatorBlock(torch.nn.Module):
    def __init__(self,
        in_channels,                    # Channels coming in; 0 marks the first block.
        tmp_channels,                   # Channels between the two convs.
        out_channels,                   # Channels going out.
        resolution,                     # Side length this block works at.
        img_channels,                   # Image channels of D's input (1 or 3).
        first_layer_idx,                # Global index of this block's first layer (Freeze-D counts these).
        architecture='resnet',          # 'orig', 'skip' or 'resnet' wiring between blocks.
        activation='lrelu',             # Nonlinearity name as known to bias_act ('linear', 'lrelu', ...).
        resample_filter=[1, 3, 3, 1],   # 1-D taps of the anti-aliasing FIR used around resampling.
        conv_clamp=None,                # Limit conv outputs to [-X, X] (fp16 safety); None = unbounded.
        use_fp16=False,                 # Run this block in half precision (CUDA only).
        fp16_channels_last=False,       # Channels-last layout while in fp16.
        freeze_layers=0,                # Layers with a lower global index stay fixed (Freeze-D).
    ):
        if in_channels not in (0, tmp_channels):
            raise ValueError(f'in_channels must be 0 or tmp_channels ({tmp_channels}), got {in_channels}')
        if architecture not in ('orig', 'skip', 'resnet'):
            raise ValueError(f"architecture must be 'orig', 'skip' or 'resnet', got {architecture!r}")
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = (use_fp16 and fp16_channels_last)
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))

        # Freeze-D: layers with a global index below freeze_layers store their weights as buffers.
        self.num_layers = 0

        def next_trainable():
            layer_idx = self.first_layer_idx + self.num_layers
            self.num_layers += 1
            return layer_idx >= freeze_layers

        if in_channels == 0 or architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, activation=activation,
                                       trainable=next_trainable(), conv_clamp=conv_clamp,
                                       channels_last=self.channels_last)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, activation=activation,
                                 trainable=next_trainable(), conv_clamp=conv_clamp, channels_last=self.channels_last)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, activation=activation, down=2,
                                 trainable=next_trainable(), resample_filter=resample_filter, conv_clamp=conv_clamp,
                                 channels_last=self.channels_last)
        if architecture == 'resnet':
            self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                                    trainable=next_trainable(), resample_filter=resample_filter,
                                    channels_last=self.channels_last)

    def forward(self, x, img, force_fp32=False):
        device = x.device if x is not None else img.device
        dtype = _block_dtype(self.use_fp16, force_fp32, device, self.conv0.weight.dtype)
        memory_format = torch.channels_last if self.channels_last and dtype == torch.float16 else torch.contiguous_format

        if x is not None:
            misc.assert_shape(x, [None, self.in_channels, self.resolution, self.resolution])
            x = x.to(dtype=dtype, memory_format=memory_format)

        if self.in_channels == 0 or self.architecture == 'skip':
            misc.assert_shape(img, [None, self.img_channels, self.resolution, self.resolution])
            img = img.to(dtype=dtype, memory_format=memory_format)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = upfirdn2d.downsample2d(img, self.resample_filter) if self.architecture == 'skip' else None

        if self.architecture == 'resnet':
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=np.sqrt(0.5))
            x = y + x
        else:
            x = self.conv0(x)
            x = self.conv1(x)

        assert x.dtype == dtype
        return x, img

    def extra_repr(self):
        return f'resolution={self.resolution}, architecture={self.architecture}'


class MinibatchStdLayer(torch.nn.Module):
    """Appends the average (over channels and pixels) stddev across a group of samples as extra
    feature maps. Group g holds samples g, g + n, g + 2n, ... (n = N / group_size): the batch is
    reshaped as [group_size, n, ...], which is what upstream does."""

    def __init__(self, group_size, num_channels=1):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x):
        N, C, H, W = x.shape
        with misc.suppress_tracer_warnings():
            G = min(int(self.group_size), int(N)) if self.group_size is not None else int(N)
        F = self.num_channels
        c = C // F
        if N % G != 0:
            raise ValueError(f'MinibatchStdLayer: batch size {N} is not divisible by the group size {G}')
        y = x.reshape(G, -1, F, c, H, W)    # [G, n, F, c, H, W]
        y = y - y.mean(dim=0)               # deviation from the group mean
        y = y.square().mean(dim=0)          # variance over the group [n, F, c, H, W]
        y = (y + 1e-8).sqrt()               # stddev
        y = y.mean(dim=[2, 3, 4])           # average over channels and pixels [n, F]
        y = y.reshape(-1, F, 1, 1)
        y = y.repeat(G, 1, H, W)            # back to [N, F, H, W], sample i gets group i % n
        return torch.cat([x, y], dim=1)

    def extra_repr(self):
        return f'group_size={self.group_size}, num_channels={self.num_channels}'


class DiscriminatorEpilogue(torch.nn.Module):
    def __init__(self,
        in_channels,                    # Channels coming in.
        cmap_dim,                       # Size of the projected label; 0 = unconditional.
        resolution,                     # Side length this block works at.
        img_channels,                   # Image channels of D's input (1 or 3).
        architecture='resnet',          # 'orig', 'skip' or 'resnet' wiring between blocks.
        mbstd_group_size=4,             # Samples per minibatch-stddev group; None = the whole batch.
        mbstd_num_channels=1,           # Stddev features appended; 0 = no minibatch-stddev layer.
        activation='lrelu',             # Nonlinearity name as known to bias_act ('linear', 'lrelu', ...).
        conv_clamp=None,                # Limit conv outputs to [-X, X] (fp16 safety); None = unbounded.
    ):
        if architecture not in ('orig', 'skip', 'resnet'):
            raise ValueError(f"architecture must be 'orig', 'skip' or 'resnet', got {architecture!r}")
        super().__init__()
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture

        if architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdLayer(group_size=mbstd_group_size, num_channels=mbstd_num_channels) \
            if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation,
                                conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * (resolution ** 2), in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x, img, cmap, force_fp32=False):
        misc.assert_shape(x, [None, self.in_channels, self.resolution, self.resolution])
        _ = force_fp32  # the epilogue always runs in fp32
        dtype = _full_precision(self.conv.weight.dtype)
        x = x.to(dtype=dtype, memory_format=torch.contiguous_format)
        if self.architecture == 'skip':
            misc.assert_shape(img, [None, self.img_channels, self.resolution, self.resolution])
            img = img.to(dtype=dtype, memory_format=torch.contiguous_format)
            x = x + self.fromrgb(img)

        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)

        if self.cmap_dim > 0:
            misc.assert_shape(cmap, [None, self.cmap_dim])
            # Projection discriminator: inner product with the mapped label, normalised by sqrt(dim).
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))

        assert x.dtype == dtype
        return x

    def extra_repr(self):
        return f'resolution={self.resolution}, architecture={self.architecture}'


class Discriminator(torch.nn.Module):
    def __init__(self,
        c_dim,                          # Size of the label vector c (0 = unconditional).
        img_resolution,                 # Side length of the images D sees.
        img_channels,                   # Image channels of D's input (1 or 3).
        architecture='resnet',          # 'orig', 'skip' or 'resnet' wiring between blocks.
        channel_base=32768,             # Channels at resolution r are channel_base // r, capped below.
        channel_max=512,                # Upper bound on any layer's channels.
        num_fp16_res=0,                 # How many of the largest resolutions run in fp16 (CUDA only).
        conv_clamp=None,                # Limit conv outputs to [-X, X] (fp16 safety); None = unbounded.
        cmap_dim=None,                  # Size of the projected label; None = chosen from the channels.
        block_kwargs={},                # Passed on to every DiscriminatorBlock.
        mapping_kwargs={},              # Passed on to the MappingNetwork.
        epilogue_kwargs={},             # Passed on to the DiscriminatorEpilogue.
    ):
        if not (isinstance(img_resolution, int) and img_resolution >= 4 and img_resolution & (img_resolution - 1) == 0):
            raise ValueError(f'img_resolution must be a power of two >= 4, got {img_resolution!r}')
        super().__init__()
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(self.img_resolution_log2, 2, -1)]
        channels_dict = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        if cmap_dim is None:
            cmap_dim = channels_dict[4]
        if c_dim == 0:
            cmap_dim = 0

        common_kwargs = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        cur_layer_idx = 0
        for res in self.block_resolutions:
            in_channels = channels_dict[res] if res < img_resolution else 0
            tmp_channels = channels_dict[res]
            out_channels = channels_dict[res // 2]
            use_fp16 = (res >= fp16_resolution)
            block = DiscriminatorBlock(in_channels, tmp_channels, out_channels, resolution=res,
                                       first_layer_idx=cur_layer_idx, use_fp16=use_fp16, **block_kwargs,
                                       **common_kwargs)
            setattr(self, f'b{res}', block)
            cur_layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None,
                                          **mapping_kwargs)
        self.b4 = DiscriminatorEpilogue(channels_dict[4], cmap_dim=cmap_dim, resolution=4, **epilogue_kwargs,
                                        **common_kwargs)

    def forward(self, img, c, update_emas=False, **block_kwargs):
        """img [N, img_channels, R, R], c [N, c_dim] -> logits [N, 1]. update_emas is accepted
        for StyleGAN3-style callers; the discriminator has no moving averages."""
        _ = update_emas
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f'b{res}')(x, img, **block_kwargs)
        cmap = None
        if self.c_dim > 0:
            cmap = self.mapping(None, c)
        return self.b4(x, img, cmap)

    def extra_repr(self):
        return f'c_dim={self.c_dim}, img_resolution={self.img_resolution}, img_channels={self.img_channels}'
